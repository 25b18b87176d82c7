"""What a type checker sees of django_ws: mypy on the package, and on typical user code.

Both run with the project's own configuration (pyproject.toml, [tool.mypy]):
django_ws/ must pass it, and so must tests/fixtures/typing_user_code.py, whose
``reveal_type`` calls show the types of the main public names: none may be
``Any``, the fate of names that are only imported lazily (module
``__getattr__``), which type checkers do not run.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import django_ws
from tests.conftest import ROOT

USER_CODE = Path(ROOT) / "tests" / "fixtures" / "typing_user_code.py"

#: The line of each reveal_type() in the user code -> what mypy must say it is.
EXPECTED = {
    "reveal_type(self.request)": "django_ws.handlers.request.WebSocketRequest",
    "reveal_type(self.request.user)":
        "django.contrib.auth.base_user.AbstractBaseUser | django.contrib.auth.models.AnonymousUser",
    "reveal_type(self.send)": "def (data: str | bytes)",
    "reveal_type(closed)": "django_ws.sending.SendResult",
    "reveal_type(closed.delivered)": "int | None",
    "reveal_type(django_ws.WebSocketHandler)":
        "def (connection: django_ws.handlers.connection.HandlerConnection) -> django_ws.handlers.base.WebSocketHandler",
    "reveal_type(send_to_group)":
        "def (group: str, data: str | bytes, *, exclude: str | None =, timeout: float | None =, "
        "key: str | None =) -> django_ws.sending.SendResult",
    "reveal_type(reverse_ws)":
        "def (viewname: str, args: typing.Sequence[Any] | None =, kwargs: dict[str, Any] | None =, *, "
        "base_url: str | None =, request: django.http.request.HttpRequest | None =, **kw: Any) -> str",
    "reveal_type(ws_path)":
        "def (route: str, handler: type[django_ws.handlers.base.WebSocketHandler] | str | typing.Sequence[Any], "
        "kwargs: dict[str, Any] | None =, name: str | None =) -> "
        "django_ws.routing.patterns.WebSocketRoute | django.urls.resolvers.URLResolver",
}


def mypy(cache: Path, cwd: Path, *targets: str) -> str:
    """mypy with the project's configuration on ``targets``; its output, which must hold no error."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "MYPYPATH")}
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(Path(ROOT) / "pyproject.toml"), "--cache-dir", str(cache),
         "--no-error-summary", "--show-error-codes", *targets],
        capture_output=True, text=True, timeout=600, cwd=str(cwd), env=env, check=False)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert result.returncode == 0 and not errors, (
        f"mypy {' '.join(targets)} reports errors:\n" + "\n".join(errors or [result.stdout, result.stderr]))
    return result.stdout


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory) -> str:
    """mypy on the package, then on the user code (quick: the cache is warm).

    On a copy of the package this process imports (the checkout's, or the
    installed one under tests/run.sh): mypy silences every report about a
    package it finds in site-packages, even one named with ``-p``.
    """
    cache = tmp_path_factory.mktemp("mypy-cache")
    copy = tmp_path_factory.mktemp("mypy-src")
    shutil.copytree(Path(django_ws.__file__).parent, copy / "django_ws",
                    ignore=shutil.ignore_patterns("__pycache__", "static"))
    # The user code beside it, so that its django_ws is that copy (not a checkout above the file).
    shutil.copy(USER_CODE, copy / USER_CODE.name)
    mypy(cache, copy, "-p", "django_ws")
    return mypy(cache, copy, USER_CODE.name)


def test_the_package_and_typical_user_code_pass_mypy_strict(mypy_output):
    # The fixture fails on any error; here, that mypy did check the package and the user code.
    assert "Revealed type" in mypy_output, mypy_output


def test_the_main_public_names_have_their_real_types(mypy_output):
    lines = USER_CODE.read_text(encoding="utf-8").splitlines()
    revealed = {}
    for match in re.finditer(r"typing_user_code\.py:(\d+): note: Revealed type is \"(.*)\"$", mypy_output, re.M):
        revealed[lines[int(match[1]) - 1].strip()] = match[2]
    assert set(revealed) == set(EXPECTED), f"reveal_type() calls and expectations differ: {sorted(revealed)}"
    wrong = {call: (revealed[call], expected) for call, expected in EXPECTED.items() if revealed[call] != expected}
    assert not wrong, "mypy sees other types (seen, expected):\n" + "\n".join(f"{k}: {v}" for k, v in wrong.items())
    assert not [t for t in revealed.values() if t == "Any"], "a public name is Any to a type checker"


def test_every_lazy_public_name_is_imported_for_type_checkers():
    tree = ast.parse(Path(django_ws.__file__).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            imported = {alias.asname or alias.name for stmt in ast.walk(node)
                        if isinstance(stmt, ast.ImportFrom) for alias in stmt.names}
            break
    else:
        raise AssertionError("django_ws/__init__.py has no `if typing.TYPE_CHECKING:` block")
    lazy = set(django_ws._LAZY)
    assert imported == lazy, f"TYPE_CHECKING imports and _LAZY differ: {sorted(imported ^ lazy)}"
    assert set(django_ws.__all__) == lazy, f"__all__ and _LAZY differ: {sorted(set(django_ws.__all__) ^ lazy)}"
    for name in lazy:  # and each resolves at run time to the object the checker was told about
        module = django_ws._LAZY[name]
        assert getattr(django_ws, name) is getattr(__import__(module, fromlist=[name]), name)
