"""Each fuzz target (fuzz/) runs a few seconds from its seed corpus, as ``python -m fuzz`` runs it.

A crash fails the test with the fuzzer's report (the input, in base64, and
the traceback); the fix comes with a regression test next to the parser's
own tests. DJANGO_WS_FUZZ_SECONDS sets the time per target (default 5: about
a minute for all). Longer runs: ``python -m fuzz <target> --seconds N``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from fuzz import TARGETS
from tests.conftest import require

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECONDS = int(os.environ.get("DJANGO_WS_FUZZ_SECONDS", "5"))


@pytest.mark.timeout(SECONDS * 4 + 60)
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz_target(target, tmp_path):
    try:
        import atheris  # noqa: F401
    except ImportError:
        require(False, "atheris is not installed (pip install 'django-ws-edge[test]')")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-m", "fuzz", target, "--seconds", str(SECONDS),
                             "--workdir", str(tmp_path)], check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=SECONDS * 4 + 45)
    report = result.stdout + result.stderr
    assert result.returncode == 0, f"fuzz target {target} failed (exit {result.returncode}):\n{report[-6000:]}"
    executed = re.search(r"stat::number_of_executed_units: (\d+)", report)
    assert executed and int(executed.group(1)) > 0, f"fuzz target {target} ran nothing:\n{report[-3000:]}"
