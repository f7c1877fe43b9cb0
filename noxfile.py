"""Every supported Python: ``make test-matrix`` runs these sessions (nox).

``tests-3.11``/``3.12``/``3.13`` install the package with the dev extra into a
fresh virtualenv per interpreter and run the whole suite; ``unit-*`` runs the
unit and fuzz suites only (what CI runs per version). Interpreters are found
on ``PATH``; the Makefile puts pyenv's 3.11, 3.12 and 3.13 there. Arguments
after ``--`` go to pytest: ``nox -s tests-3.12 -- -k websocket``.
"""

from __future__ import annotations

import nox

#: The versions ``requires-python`` (>=3.11) promises, all tested.
PYTHONS = ["3.11", "3.12", "3.13"]

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.posargs)


@nox.session(python=PYTHONS)
def unit(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit",
                "tests/fuzz", *session.posargs)
