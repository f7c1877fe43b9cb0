"""Static files under a URL prefix: confinement and answers come from ``zzz.static``."""

from __future__ import annotations

import os

from zzz.context import Context
from zzz.static import file_response, resolve

#: Methods a static file answers; others go on down the chain.
STATIC_METHODS = frozenset({"GET", "HEAD"})


class StaticFiles:
    """Serve the files of ``directory`` at ``prefix`` (``/static/app.js``).

    A request under ``prefix`` that names no servable file (missing, refused
    as a traversal attempt, a directory without ``index``) goes on down the
    chain, so routes and the router's 404 answer it; nothing outside the
    directory is ever served (see ``zzz/static.py`` for the rules). A
    directory is answered with its ``index`` file when one is set (requests
    without the trailing slash are redirected to it, so relative links work).
    """

    __slots__ = ("directory", "dotfiles", "index", "max_age", "prefix")

    def __init__(
        self,
        directory: str | os.PathLike[str],
        prefix: str = "/static",
        max_age: int | None = 3600,
        index: str | None = "index.html",
        dotfiles: bool = False,
    ) -> None:
        root = os.path.realpath(os.fspath(directory))
        if not os.path.isdir(root):
            raise ValueError(f"static_files: directory {os.fspath(directory)!r} is not a directory")
        if not prefix.startswith("/"):
            raise ValueError(f"static_files: prefix must start with '/': {prefix!r}")
        if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int)
                                    or max_age < 0):
            raise ValueError(f"static_files: max_age must be an int >= 0 or None, got {max_age!r}")
        if index is not None and ("/" in index or index in ("", ".", "..")):
            raise ValueError(f"static_files: index must be a plain file name, got {index!r}")
        self.directory = root
        self.prefix = prefix.rstrip("/")
        self.max_age = max_age
        self.index = index
        self.dotfiles = dotfiles

    def _answer(self, ctx: Context) -> bool:
        request = ctx.request
        if request.method not in STATIC_METHODS:
            return False
        raw = request.raw_path
        prefix = self.prefix
        if raw == prefix and prefix:
            sub = None  # the directory itself, without its slash
        elif raw.startswith(prefix + "/"):
            sub = raw[len(prefix) + 1 :]
        else:
            return False
        directory_wanted = sub is None or sub == "" or sub.endswith("/")
        wanted = (sub or "").rstrip("/") if directory_wanted else (sub or "")
        path = resolve(self.directory, wanted, dotfiles=self.dotfiles)
        if path is None:
            return False
        if os.path.isdir(path):
            if self.index is None:
                return False
            if not directory_wanted or sub is None:
                query = f"?{request.query_string}" if request.query_string else ""
                ctx.redirect(f"{raw}/{query}", 301)
                return True
            path = os.path.join(path, self.index)
        elif directory_wanted:
            return False
        response = file_response(request, path, max_age=self.max_age,
                                 headers=ctx.response_headers)
        if response.status == 404:
            return False
        ctx.set_response(response)
        return True

    def __call__(self, ctx: Context) -> None:
        if not self._answer(ctx):
            ctx.next()

    async def acall(self, ctx: Context) -> None:
        if not self._answer(ctx):
            await ctx.next()


def static_files(
    directory: str | os.PathLike[str],
    prefix: str = "/static",
    max_age: int | None = 3600,
    index: str | None = "index.html",
    *,
    dotfiles: bool = False,
) -> StaticFiles:
    """Middleware serving ``directory`` under ``prefix`` (see :class:`StaticFiles`)."""
    return StaticFiles(directory, prefix, max_age, index, dotfiles)
