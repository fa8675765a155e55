"""The public API type-checks in a user's strict project (issue 15, item 3).

``tests/typed_app/`` is a small app written with full annotations: an action
with inputs, action, connection and chat middleware, an initializer, a custom
server and a test module using :mod:`ahtwist.testing`.  ``mypy --strict`` runs
on it as a user's CI would: from the app's folder, with its own ``mypy.ini``,
ahtwist imported as the installed package (its ``py.typed``).  A copy with
deliberate mistakes must fail, so the check can fail.
"""

import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

APP = REPO / "tests" / "typed_app"
MYPY = Path(sys.executable).with_name("mypy")

MISTAKES = '''\
from ahtwist import Action, ActionData, Input, Server


class Wrong(Action):
    name = "wrong"
    inputs = {"id": Input(required="yes")}

    def run(self, data: ActionData) -> None:
        data.response["id"] = data.params["id"]


class WrongServer(Server):
    type = 3


def untyped(value):
    return value
'''


def mypy_strict(folder: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MYPY), "--strict", "--config-file", "mypy.ini", "--cache-dir", str(cache), "."],
        cwd=folder, capture_output=True, text=True, timeout=300,
    )


def test_the_typed_app_passes_mypy_strict(tmp_path):
    result = mypy_strict(APP, tmp_path / "cache")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "Success: no issues found in 4 source files"


def test_a_mistake_in_the_app_fails_the_check(tmp_path):
    app = tmp_path / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("__pycache__", ".mypy_cache"))
    (app / "actions" / "wrong.py").write_text(MISTAKES)
    result = mypy_strict(app, tmp_path / "cache")
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert all(line.startswith("actions/wrong.py:") for line in errors), errors
    assert [line.split(":")[1] for line in errors] == ["6", "13", "16"], errors
    assert '"Input" has incompatible type "str"; expected "bool"' in errors[0]
    assert 'expression has type "int", base class "Server" defined the type as "str"' in errors[1]
    assert "Function is missing a type annotation" in errors[2]
