"""The package's layers, as pyproject.toml's [tool.importlinter] contracts state them.

No import circle anywhere in django_ws/ (imports inside functions count);
the leaves (codes, wire, conf, exceptions) import nothing above them; the
edge core imports no transport, no Tornado, no ZeroMQ, no asyncio; handlers
never reach into the worker. Checked on the package as imported (the
installed one under tests/run.sh).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, require


def test_the_import_contracts_hold():
    lint = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or shutil.which("lint-imports")
    require(lint is not None, "import-linter is not installed (it is in the [test] extra)")
    config = Path(ROOT) / "pyproject.toml"
    result = subprocess.run([lint, "--no-cache", str(config)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"an import contract is broken:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    assert "4 kept, 0 broken" in result.stdout, result.stdout[-2000:]
