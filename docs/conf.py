"""Sphinx configuration for django-ws's documentation: ``sphinx-build docs out``.

Plain reStructuredText, no extensions, no theme to install: the pages also
read well on their own, as GitHub shows them.
"""

import re
from pathlib import Path

project = "django-ws"
author = "django-ws contributors"
copyright = "django-ws contributors"
# The version, read from the package without importing it (or Django).
release = re.search(r'__version__ = "([^"]+)"',
                    (Path(__file__).resolve().parent.parent / "django_ws" / "__init__.py").read_text())[1]
version = release

root_doc = master_doc = "index"
extensions = []
exclude_patterns = ["_build", "out"]
highlight_language = "text"  # literal (::) blocks are diagrams and output
html_theme = "alabaster"
html_title = f"django-ws {release}"
