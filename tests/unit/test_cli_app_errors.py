"""``zzz run`` when the application itself fails: at import or at start-up (issue 8 §2, §3).

Each case runs the real CLI in a subprocess: one line on stderr naming the
exception and the user's file and line, exit status 2; ``--debug`` or
``ZZZ_DEBUG=1`` prints the whole traceback before that line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import zzz.backends

#: Bound on one CLI run (they all fail before serving, or serve nothing).
SUBPROCESS_TIMEOUT_S = 30
#: The package whose import fails, written into a temporary directory per test.
PACKAGE = {
    "__init__.py": "from shop import settings, db\nimport zzz\napp = zzz.Router()\n",
    "settings.py": "import os\n\nDEBUG = True\nDATABASE_URL = os.environ['SHOP_DATABASE_URL']\n",
    "db.py": "import json\n\nimport shop_missing_driver  # deep inside the package\n",
}
STARTUP_APP = """
import zzz

app = zzz.Router()


@app.on_startup
async def connect_database():
    raise ConnectionRefusedError("database at db:5432 refused the connection")
"""


def run_zzz(cwd: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ZZZ_", "SHOP_"))}
    root = str(Path(__file__).resolve().parents[2])  # this checkout's zzz, first
    clean["PYTHONPATH"] = os.pathsep.join(filter(None, [root, clean.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "zzz", "run", *argv, "--port", "0"],
        cwd=cwd, env={**clean, **(env or {})}, capture_output=True, text=True,
        timeout=SUBPROCESS_TIMEOUT_S, check=False,
    )


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    package = tmp_path / "shop"
    package.mkdir()
    for name, source in PACKAGE.items():
        (package / name).write_text(source)
    return tmp_path


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_missing_environment_variable_names_key_file_and_line(shop: Path) -> None:
    line = one_line(run_zzz(shop, "shop:app"))
    assert line == (
        "zzz: error: app: cannot import 'shop': KeyError: 'SHOP_DATABASE_URL' "
        f"({os.path.join('shop', 'settings.py')}, line 4)"
    )


def test_import_error_deep_inside_the_package(shop: Path) -> None:
    line = one_line(run_zzz(shop, "shop:app", env={"SHOP_DATABASE_URL": "x"}))
    assert line == (
        "zzz: error: app: cannot import 'shop': ModuleNotFoundError: No module named "
        f"'shop_missing_driver' ({os.path.join('shop', 'db.py')}, line 3)"
    )


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import zzz\n\napp = zzz.Router()\nx = 1 +\n")
    line = one_line(run_zzz(tmp_path, "broken:app"))
    assert line == "zzz: error: app: cannot import 'broken': SyntaxError: invalid syntax " \
        "(broken.py, line 4)"


def test_error_at_module_level_of_the_app_itself(tmp_path: Path) -> None:
    (tmp_path / "appmod.py").write_text("import zzz\napp = zzz.Router()\nlimits = {}\n"
                                        "MAX = limits['max']\n")
    line = one_line(run_zzz(tmp_path, "appmod:app"))
    assert line == "zzz: error: app: cannot import 'appmod': KeyError: 'max' (appmod.py, line 4)"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_prints_the_whole_traceback_then_the_line(shop: Path, how: str) -> None:
    if how == "flag":
        result = run_zzz(shop, "shop:app", "--debug")
    else:
        result = run_zzz(shop, "shop:app", env={"ZZZ_DEBUG": "1"})
    assert result.returncode == 2
    err = result.stderr
    assert err.startswith("Traceback (most recent call last):"), err
    assert 'settings.py", line 4, in <module>' in err
    assert "os.environ['SHOP_DATABASE_URL']" in err
    assert err.splitlines()[-1].startswith("zzz: error: app: cannot import 'shop': KeyError")


def test_bad_debug_env_value_is_a_usage_error(shop: Path) -> None:
    line = one_line(run_zzz(shop, "shop:app", env={"ZZZ_DEBUG": "maybe"}))
    assert line.startswith("zzz: error: debug: must be a boolean")
    assert "ZZZ_DEBUG" in line


@pytest.mark.parametrize("backend", sorted(zzz.backends.BACKENDS))
def test_failed_startup_exits_2_with_the_apps_message(tmp_path: Path, backend: str) -> None:
    (tmp_path / "startup_app.py").write_text(STARTUP_APP)
    result = run_zzz(tmp_path, "startup_app:app", "--backend", backend)
    line = one_line(result)
    assert line == (
        "zzz: error: startup hook startup_app.connect_database failed: "
        "ConnectionRefusedError: database at db:5432 refused the connection"
    )
    debug = run_zzz(tmp_path, "startup_app:app", "--backend", backend, "--debug")
    assert debug.returncode == 2
    assert "Traceback (most recent call last):" in debug.stderr
    assert 'startup_app.py", line 9, in connect_database' in debug.stderr
    assert debug.stderr.splitlines()[-1] == line
