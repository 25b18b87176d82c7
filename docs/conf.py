"""Sphinx configuration for django-ws's documentation: ``python -m sphinx -W docs out``.

The pages are plain reStructuredText that also read well on their own, as
GitHub shows them; api.rst adds the reference, generated with autodoc from
the docstrings and type hints of the package. The package is the installed
one when there is no source tree beside this directory (an unpacked sdist
under tests/run.sh has its django_ws/ removed).
"""

import sys
from pathlib import Path

import django
from django.conf import settings

root = Path(__file__).resolve().parent.parent
if (root / "django_ws" / "__init__.py").exists():
    sys.path.insert(0, str(root))

# Autodoc imports the handlers and the testing helpers, which need Django set up.
settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions", "django_ws"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
)
django.setup()

import django_ws  # noqa: E402

project = "django-ws"
author = "django-ws contributors"
copyright = "django-ws contributors"
release = version = django_ws.__version__

root_doc = master_doc = "index"
extensions = ["sphinx.ext.autodoc"]
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
exclude_patterns = ["_build", "out"]
highlight_language = "text"  # literal (::) blocks are diagrams and output
html_theme = "alabaster"
html_title = f"django-ws {release}"
