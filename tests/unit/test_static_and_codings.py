"""Pure pieces of static files and compression: path confinement, Range, Accept-Encoding."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zzz.middleware.compress import choose_coding
from zzz.static import RangeNotSatisfiable, parse_range, resolve

OFFERED = ("br", "zstd", "gzip")


@pytest.fixture
def root(tmp_path: Path) -> str:
    (tmp_path / "site" / "a").mkdir(parents=True)
    (tmp_path / "site" / "a" / "f.txt").write_text("x")
    (tmp_path / "outside.txt").write_text("secret")
    (tmp_path / "site" / "out").symlink_to(tmp_path / "outside.txt")
    (tmp_path / "site" / "in").symlink_to(tmp_path / "site" / "a" / "f.txt")
    return os.path.realpath(tmp_path / "site")


@pytest.mark.parametrize("sub", [
    "..", "../outside.txt", "a/../../outside.txt", "%2e%2e/outside.txt", "a%2f..%2f..",
    "..%5coutside.txt", "a\\..\\..", "%00", "a/%00f.txt", "out", "a//f.txt", ".hidden",
    "%ff%fe", "a/./f.txt",
])
def test_resolve_refuses(root: str, sub: str) -> None:
    assert resolve(root, sub) is None


def test_resolve_accepts_inside_paths(root: str) -> None:
    assert resolve(root, "a/f.txt") == os.path.join(root, "a", "f.txt")
    assert resolve(root, "a/f%2etxt") == os.path.join(root, "a", "f.txt")
    assert resolve(root, "in") == os.path.join(root, "a", "f.txt")  # symlink inside: fine
    assert resolve(root, "") == root
    assert resolve(root, ".well-known", dotfiles=True) == os.path.join(root, ".well-known")


@pytest.mark.parametrize("value,expected", [
    ("bytes=0-0", (0, 1)), ("bytes=0-", (0, 100)), ("bytes=-10", (90, 10)),
    ("bytes=-1000", (0, 100)), ("bytes=50-1000", (50, 50)), ("bytes = 1-2", (1, 2)),
    ("bytes=0-1,4-5", None), ("items=0-1", None), ("bytes=5-1", None), ("bytes=-", None),
    ("bytes=abc", None), ("bytes=" + "1" * 2000 + "-", None),
])
def test_parse_range(value: str, expected: tuple[int, int] | None) -> None:
    assert parse_range(value, 100) == expected


@pytest.mark.parametrize("value,size", [("bytes=100-", 100), ("bytes=-0", 100),
                                        ("bytes=0-", 0), ("bytes=200-300", 100)])
def test_parse_range_unsatisfiable(value: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(value, size)


@pytest.mark.parametrize("header,expected", [
    (None, None), ("", None), ("gzip", "gzip"), ("gzip, br", "br"), ("gzip;q=1, br;q=0.5", "gzip"),
    ("br;q=0", None), ("*", "br"), ("*;q=0", None), ("*, br;q=0", "zstd"),
    ("GZIP", "gzip"), ("gzip;q=abc", None), ("gzip;q=2", None), ("identity", None),
    ("zstd;q=0.9, gzip;q=0.9", "zstd"), ("x-gzip", "gzip"), ("a" * 5000, None),
])
def test_choose_coding(header: str | None, expected: str | None) -> None:
    assert choose_coding(header, OFFERED) == expected


def test_choose_coding_only_offered() -> None:
    assert choose_coding("br, zstd", ("gzip",)) is None
    assert choose_coding("br, gzip;q=0.1", ("gzip",)) == "gzip"
