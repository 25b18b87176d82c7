"""django-ws is built from pyproject.toml; this file keeps ``python setup.py ...`` and old tools working.

The metadata, the dependencies and the extras live in pyproject.toml, and the
version in ``django_ws/__init__.py`` (``__version__``): each is written once.
"""

from setuptools import setup

setup()
