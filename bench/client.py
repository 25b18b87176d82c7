"""The load client: bench/loadgen.js under Node.js, one run per process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .procs import kill_group

LOADGEN = Path(__file__).resolve().parent / "loadgen.js"


class Client:
    """How to start the load client: the command, and the environment that finds the ``ws`` package."""

    def __init__(self, command: list[str], env: dict[str, str]):
        self.command, self.env = command, env

    def describe(self) -> str:
        where = self.env.get("NODE_PATH")
        return " ".join(self.command) + (f" (NODE_PATH={where})" if where else "")


def find_client(path: str | None, node_path: str | None) -> Client:
    """bench/loadgen.js, or the client given by --client/WSLOAD (same arguments, same JSON)."""
    if shutil.which("node") is None:
        raise SystemExit("the load client needs Node.js: node is not on PATH")
    env = dict(os.environ)
    node_path = node_path or os.environ.get("BENCH_NODE_PATH") or os.environ.get("DJANGO_WS_TEST_NODE_PATH")
    if node_path:
        env["NODE_PATH"] = os.pathsep.join(p for p in (node_path, os.environ.get("NODE_PATH", "")) if p)
    client = path or os.environ.get("WSLOAD")
    if client:
        if not (os.path.isfile(client) and os.access(client, os.X_OK)):
            raise SystemExit(f"--client/WSLOAD: {client} is not an executable file")
        return Client([client], env)
    found = subprocess.run(["node", "-e", "require('ws')"], env=env, capture_output=True, check=False)
    if found.returncode:
        raise SystemExit(
            "bench/loadgen.js needs the ws package (npm) and Node cannot find it. Install it and say where:\n"
            "    npm install --prefix /tmp/bench-node ws@8\n"
            "    python bench/run.py --node-path /tmp/bench-node/node_modules   (or BENCH_NODE_PATH=...)")
    return Client(["node", str(LOADGEN)], env)


class ClientRun:
    """One client run in its own process group; ``finish()`` returns its JSON."""

    def __init__(self, client: Client, scenario: str, url: str, params: dict, timeout: float):
        args = [*client.command, scenario, "--url", url]
        for key, value in params.items():
            args += [f"--{key}", str(value)]
        self.timeout = timeout
        self.out = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed by finish()
        self.err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed by finish()
        self.started = time.monotonic()
        self.process = subprocess.Popen(args, stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL,
                                        env=client.env, start_new_session=True)
        self.rusage = None
        self.returncode = None

    def running(self) -> bool:
        if self.returncode is not None:
            return False
        pid, status, rusage = os.wait4(self.process.pid, os.WNOHANG)
        if pid == 0:
            return True
        self.returncode, self.rusage = os.waitstatus_to_exitcode(status), rusage
        self.process.returncode = self.returncode
        return False

    def finish(self) -> dict:
        try:
            while self.running():
                if time.monotonic() - self.started > self.timeout:
                    kill_group(self.process, timeout=2)
                    raise RuntimeError(f"the client did not finish within {self.timeout:.0f}s")
                time.sleep(0.05)
            wall = time.monotonic() - self.started
            self.out.seek(0)
            self.err.seek(0)
            stdout, stderr = self.out.read(), self.err.read()
            lines = [line for line in stdout.splitlines() if line.strip()]
            if self.returncode != 0 or not lines:
                raise RuntimeError(f"the client failed (exit {self.returncode}): {stderr.strip()[-500:]}")
            result = json.loads(lines[-1])
            result["client_cpu_s"] = round(self.rusage.ru_utime + self.rusage.ru_stime, 2)
            result["client_wall_s"] = round(wall, 2)
            return result
        finally:
            if self.returncode is None:
                kill_group(self.process, timeout=2)
            self.out.close()
            self.err.close()
