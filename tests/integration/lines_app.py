"""Apps for test_observability_lines.py: the recommended stack in front of ``GET /n/:id``.

``app`` logs nothing itself (the server's ``--access-log`` writes the line);
``text_app`` and ``json_app`` write one ``structured_logger`` line per request at INFO.
"""

from __future__ import annotations

import zzz


def _stack(level: str, log_format: str) -> zzz.Router:
    router = zzz.Router(middleware=[
        zzz.health("/healthz"),
        zzz.request_id(),
        zzz.metrics("/route-metrics"),
        zzz.structured_logger(level, format=log_format),
    ])

    @router.get("/n/:id")
    def numbered(ctx: zzz.Context) -> None:
        ctx.text(200, ctx.path_param("id"))

    return router


app = _stack("debug", "text")
text_app = _stack("info", "text")
json_app = _stack("info", "json")
