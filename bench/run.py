#!/usr/bin/env python3
"""Benchmark django-ws against Django Channels 4 and plain Tornado: ``python bench/run.py --help``."""

import sys
from pathlib import Path

# Run as a script: the repository root holds both django_ws and this package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
