"""The documentation builds without a warning, and the API reference covers the public surface.

The public surface is what the ``__all__`` of ``django_ws``,
``django_ws.routing``, ``django_ws.handlers`` and ``django_ws.testing``
name. Each of its classes and functions has a docstring and type hints, and
docs/api.rst documents it, so that a new public name cannot land undocumented.
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, clean_env, require

PUBLIC_MODULES = ("django_ws", "django_ws.routing", "django_ws.handlers", "django_ws.testing")
API_PAGE = Path(ROOT) / "docs" / "api.rst"


def public_objects():
    """(qualified name, object) for every name exported by the public modules and defined by django-ws."""
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if getattr(obj, "__module__", "").startswith("django_ws"):
                yield f"{module_name}.{name}", obj


def undocumented(qualname: str, function) -> list[str]:
    """What ``function`` lacks: a docstring, an annotation for a parameter, a return annotation."""
    problems = [] if inspect.getdoc(function) else [f"{qualname}: no docstring"]
    signature = inspect.signature(function)
    for name, parameter in signature.parameters.items():
        if name not in ("self", "cls") and parameter.annotation is inspect.Parameter.empty:
            problems.append(f"{qualname}: parameter {name!r} has no type hint")
    if function.__name__ != "__init__" and signature.return_annotation is inspect.Signature.empty:
        problems.append(f"{qualname}: no return type hint")
    return problems


def test_every_public_class_and_function_has_a_docstring_and_type_hints():
    problems = []
    for qualname, obj in public_objects():
        if not inspect.isclass(obj):
            problems += undocumented(qualname, obj)
            continue
        if not inspect.getdoc(obj):
            problems.append(f"{qualname}: no docstring")
        if issubclass(obj, (enum.Enum, BaseException)):
            continue
        for name, member in vars(obj).items():
            if name.startswith("_") and name != "__init__":
                continue
            if isinstance(member, (classmethod, staticmethod)):
                member = member.__func__
            if inspect.isfunction(member) and member.__module__.startswith("django_ws"):  # not typing's own
                problems += undocumented(f"{qualname}.{name}", member)
            elif isinstance(member, property) and not inspect.getdoc(member):
                problems.append(f"{qualname}.{name}: a property with no docstring")
    assert not problems, "the public API is not fully documented:\n" + "\n".join(sorted(set(problems)))


def test_the_api_page_documents_every_public_name():
    page = API_PAGE.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\.\. auto(?:class|function|exception|data)::\s*(\S+)", page, re.M))
    short = {name.rsplit(".", 1)[1] for name in documented}
    missing = [qualname for qualname, _ in public_objects() if qualname.rsplit(".", 1)[1] not in short]
    assert not missing, f"docs/api.rst has no autodoc directive for {missing}"


def test_the_docs_build_without_warnings(tmp_path):
    try:
        import sphinx  # noqa: F401
    except ImportError:
        require(False, "Sphinx is not installed (it is in the [test] extra)")
    result = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                             str(Path(ROOT) / "docs"), str(tmp_path / "html")],
                            env=clean_env(), capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"sphinx-build -W failed:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("name", ["WebSocketHandler", "send_to_group", "ws_path"])
def test_the_api_page_shows_signatures(name, tmp_path_factory):
    """autodoc rendered the signature with its type hints, not an empty entry."""
    require(importlib.util.find_spec("sphinx") is not None, "Sphinx is not installed (it is in the [test] extra)")
    out = tmp_path_factory.getbasetemp() / "docs-text"
    if not (out / "api.txt").exists():
        subprocess.run([sys.executable, "-m", "sphinx", "-q", "-b", "text", str(Path(ROOT) / "docs"), str(out)],
                       env=clean_env(), capture_output=True, check=True)
    text = (out / "api.txt").read_text(encoding="utf-8")
    expected = {"WebSocketHandler": "send(data: str | bytes) -> None",
                "send_to_group": "send_to_group(group: str, data: str | bytes",
                "ws_path": "ws_path(route: str, handler:"}[name]
    assert expected in text, f"api.txt lacks {expected!r}"


def test_the_settings_page_gives_each_setting_its_real_default():
    """docs/settings.rst's ``Default:`` line of every setting is conf.DEFAULTS' value."""
    import ast

    from django_ws.conf import DEFAULTS

    page = (Path(ROOT) / "docs" / "settings.rst").read_text(encoding="utf-8")
    wrong = []
    for name, value in DEFAULTS.items():
        entry = re.search(rf"^``{name}``\n    Default: (None\b|``(.+?)``)", page, re.MULTILINE)
        if entry is None:
            wrong.append(f"{name}: no 'Default:' line right under its name")
            continue
        documented = None if entry[1] == "None" else ast.literal_eval(entry[2])
        if documented != value:
            wrong.append(f"{name}: the page says {documented!r}, conf.py has {value!r}")
    assert not wrong, "docs/settings.rst and django_ws/conf.py disagree:\n" + "\n".join(wrong)
