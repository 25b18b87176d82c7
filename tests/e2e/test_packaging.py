"""What ``pip install django-ws-edge`` gets: the built wheel and sdist hold the whole project.

The rest of the suite imports django_ws from wherever it finds it; under
tests/run.sh that is a virtualenv's site-packages, and
``test_django_ws_comes_from_site_packages`` proves it. The tests here look
inside the artifacts themselves, against the files that git tracks, so that a
module or a data file left out of the build (a missing ``__init__.py``, a
package-data glob that misses a new file) fails with its name.
"""

from __future__ import annotations

import email
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, clean_env, require

#: Files of the checkout that have no place in the sdist.
NOT_IN_SDIST = re.compile(r"^(\.ci/|\.gitignore$|\.gitattributes$)")


def git_files(under: str = "") -> list[str]:
    """The files git tracks in the checkout, relative to its root."""
    source = os.environ.get("DJANGO_WS_SOURCE", ROOT)
    require(os.path.isdir(os.path.join(source, ".git")) or os.path.isfile(os.path.join(source, ".git")),
            f"{source} is not a git checkout (set DJANGO_WS_SOURCE to one)")
    out = subprocess.run(["git", "-C", source, "ls-files", "-z", "--", under or "."],
                         capture_output=True, check=True).stdout.decode()
    # A file deleted in the work tree but not yet in git is not part of any build.
    return sorted(f for f in out.split("\0") if f and os.path.exists(os.path.join(source, f)))


def source_version() -> str:
    source = os.environ.get("DJANGO_WS_SOURCE", ROOT)
    init = Path(source, "django_ws", "__init__.py").read_text(encoding="utf-8")
    return re.search(r'^__version__ = "([^"]+)"$', init, re.M)[1]


def test_the_wheel_holds_every_file_of_the_package(dist):
    names = set(zipfile.ZipFile(dist.wheel).namelist())
    package = [f for f in git_files("django_ws") if "__pycache__" not in f]
    assert package, "git lists no file under django_ws/"
    missing = [f for f in package if f not in names]
    assert not missing, f"{dist.wheel.name} lacks these files of django_ws/ that git tracks: {missing}"
    assert "django_ws/py.typed" in names, "the wheel has no py.typed marker"
    assert "django_ws/edge/__init__.py" in names and "django_ws/static/django_ws/django-ws.js" in names


def test_every_folder_of_modules_is_a_package():
    """A folder of modules without ``__init__.py`` is left out by package discovery, or shipped half-way as data."""
    files = set(git_files("django_ws"))
    folders = {os.path.dirname(f) for f in files if f.endswith(".py")}
    missing = sorted(f"{folder}/__init__.py" for folder in folders if f"{folder}/__init__.py" not in files)
    assert not missing, f"these folders hold modules but git tracks no __init__.py for them: {missing}"


def test_the_sdist_holds_every_tracked_file_but_ci(dist):
    with tarfile.open(dist.sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert top == f"django_ws_edge-{source_version()}", f"the sdist unpacks into {top!r}"
    missing = [f for f in git_files() if not NOT_IN_SDIST.match(f) and f not in names]
    assert not missing, f"{dist.sdist.name} lacks these tracked files: {missing}"
    assert {"LICENSE", "README.rst", "docs/index.rst", "tests/conftest.py"} <= names


def test_the_metadata_says_what_the_source_says(dist):
    version = source_version()
    assert dist.wheel.name == f"django_ws_edge-{version}-py3-none-any.whl", "the wheel's name carries another version"
    with zipfile.ZipFile(dist.wheel) as whl:
        info = f"django_ws_edge-{version}.dist-info"
        metadata = email.message_from_bytes(whl.read(f"{info}/METADATA"))
        assert f"{info}/licenses/LICENSE" in whl.namelist(), "the wheel does not carry the LICENSE file"
    assert metadata["Version"] == version
    assert metadata["License-Expression"] == "BSD-3-Clause"
    assert metadata["Requires-Python"] == ">=3.11"
    assert metadata["Name"] == "django-ws-edge", "the distribution's name (django-ws on PyPI is another project)"
    requires = metadata.get_all("Requires-Dist")
    django = [r for r in requires if r.lower().startswith("django") and "extra" not in r]
    # No upper bound on Django, on purpose (pyproject.toml says why).
    assert django == ["Django>=4.2"], django
    classifiers = metadata.get_all("Classifier")
    for version in ("4.2", "5.2", "6.0", "6.1"):
        assert f"Framework :: Django :: {version}" in classifiers, f"no classifier for Django {version}"
    for version in ("3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in classifiers, f"no classifier for Python {version}"
    assert "django-ws" in metadata.get_payload(), "the README is not the long description"


def test_django_ws_comes_from_site_packages():
    """Under tests/run.sh, the tests and the servers they start import the installed package."""
    require(bool(os.environ.get("DJANGO_WS_INSTALLED")),
            "the suite runs from the source tree (tests/run.sh runs it against the installed wheel)")
    import django_ws

    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    here = Path(django_ws.__file__).resolve()
    assert site in here.parents, f"django_ws was imported from {here}, not from {site}"
    assert Path(ROOT).resolve() not in here.parents, f"django_ws was imported from the test tree: {here}"
    # A server gets the same interpreter, path and working directory as the tests give it.
    out = subprocess.run([sys.executable, "-c", "import django_ws; print(django_ws.__file__)"], cwd=ROOT,
                         env=clean_env(PYTHONPATH=ROOT), capture_output=True, text=True, check=True).stdout.strip()
    assert Path(out).resolve() == here, f"a server started from {ROOT} would import {out}"


@pytest.mark.parametrize("module", ["django_ws.edge.app", "django_ws.edge.supervisor", "django_ws.worker.main",
                                    "django_ws.management.commands.run_wsserver"])
def test_the_modules_that_serve_a_connection_import(module):
    """The parts a served connection goes through import on their own (the lost edge/ package did not)."""
    result = subprocess.run([sys.executable, "-c", f"import django; from django.conf import settings; "
                             f"settings.configure(); django.setup(); import {module}"],
                            env=clean_env(PYTHONPATH=ROOT), cwd="/", capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"import {module} failed:\n{result.stderr}"


#: ``pip install`` (or ``python -m pip install``), options, then the old name, bare or with extras.
OLD_NAME_INSTALL = re.compile(r"pip\s+install\s+(?:-\S+\s+)*['\"]?django-ws(?![\w-])")


def test_no_doc_installs_the_old_name():
    """``pip install django-ws`` installs another project (PyPI's django-ws): no page, message or script says it."""
    offenders = []
    for path in Path(ROOT).rglob("*"):
        if path.suffix not in (".rst", ".py", ".sh", ".txt", ".html", ".toml", ".md") or not path.is_file():
            continue
        if any(part in ("dist", "build", ".git", "node_modules") or part.startswith(".") for part in path.parts):
            continue
        for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OLD_NAME_INSTALL.search(line) and path.name != "test_packaging.py":
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not offenders, "these lines install the wrong project (the distribution is django-ws-edge):\n" + "\n".join(offenders)


def test_the_old_name_pattern_catches_what_it_must():
    for line in ("pip install django-ws", "python -m pip install -q 'django-ws[redis]'", "pip install -U django-ws"):
        assert OLD_NAME_INSTALL.search(line), line
    for line in ("pip install django-ws-edge", "pip install 'django-ws-edge[redis]'", "pip install django-wsx"):
        assert not OLD_NAME_INSTALL.search(line), line
