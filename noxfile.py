"""Every supported Python: ``make test-matrix`` and ``make test-versions`` run these sessions (nox).

``tests-3.11``/``3.12``/``3.13`` install the package with the dev extra into a
virtualenv per interpreter and run the whole suite; ``unit-*`` installs only the
``unit`` extra (the unit and fuzz suites' dependencies: half the install time of
``dev``) and runs those two suites. ``make test`` runs ``unit-3.12`` and
``unit-3.13`` beside the main suite's 3.11 (``make test-versions``), which is how
CI covers every version on each run.

Interpreters are found on ``PATH``; the Makefile puts pyenv's 3.11, 3.12 and 3.13
there. Virtualenvs live under ``.nox/`` and are reused; the install step is skipped
while ``pyproject.toml`` is unchanged since the last install into that virtualenv
(a stamp file holds its hash), so a second run costs only the tests. Arguments
after ``--`` go to pytest: ``nox -s tests-3.12 -- -k websocket``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import nox

#: The versions ``requires-python`` (>=3.11) promises, all tested.
PYTHONS = ["3.11", "3.12", "3.13"]
#: Written into a session's virtualenv after a successful install: the hash of the
#: pyproject.toml it installed (a changed dependency list installs again).
STAMP = ".zzz-installed"
PYPROJECT = Path(__file__).parent / "pyproject.toml"

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]


def _install(session: nox.Session, extra: str) -> None:
    """``pip install -e .[extra]`` unless this virtualenv already has it."""
    digest = hashlib.sha256(PYPROJECT.read_bytes() + extra.encode()).hexdigest()
    stamp = Path(session.virtualenv.location) / STAMP
    if stamp.exists() and stamp.read_text() == digest:
        session.log(f"dependencies up to date ({extra}); install skipped")
        return
    session.install("-q", "-e", f".[{extra}]")
    stamp.write_text(digest)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    _install(session, "dev")
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.posargs)


@nox.session(python=PYTHONS)
def unit(session: nox.Session) -> None:
    _install(session, "unit")
    session.run("python", "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests/unit",
                "tests/fuzz", *session.posargs)
