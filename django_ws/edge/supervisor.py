"""Starts the worker processes of run_wsserver and replaces the ones that die."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import typing

logger = logging.getLogger("django_ws.edge")


def worker_command(mode: str, push: str, sub: str, extra: list[str]) -> list[str]:
    """``python -m django_ws.worker ...`` with this process's interpreter and flags."""
    return [sys.executable, *(f"-W{o}" for o in sys.warnoptions), "-m", "django_ws.worker",
            f"--{mode}", "--push-socket", push, "--sub-socket", sub, *extra]


class Supervisor:
    """Keeps ``count`` worker processes running until ``stop()``.

    Workers are separate interpreters (not forks of this process, whose
    ZeroMQ context and IOLoop threads must not be shared with children). They
    find the project as this process did: same settings module, same
    ``sys.path[0]`` (the directory of manage.py) on PYTHONPATH.
    """

    restart_delay = 0.5

    def __init__(self, command: list[str], count: int, report):
        self.command = command
        self.count = count
        self.report = report
        self.processes: list[subprocess.Popen] = []
        self.stopping = False
        self.env = dict(os.environ)
        project_dir = sys.path[0] or os.getcwd()
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (project_dir, os.environ.get("PYTHONPATH")) if p)
        self.env["DJANGO_WS_SUPERVISOR_PID"] = str(os.getpid())
        self._restarting: asyncio.Future | None = None
        self._again = False

    def start(self) -> None:
        for _ in range(self.count):
            self._spawn()
        self._task = asyncio.ensure_future(self._watch())

    def _spawn(self) -> subprocess.Popen:
        process = subprocess.Popen(self.command, env=self.env)
        self.processes.append(process)
        self.report(f"Worker process {process.pid} started")
        return process

    async def _watch(self) -> None:
        while not self.stopping:
            await asyncio.sleep(self.restart_delay)
            for process in list(self.processes):
                code = process.poll()
                if code is not None and not self.stopping:
                    self.processes.remove(process)
                    how = f"signal {-code}" if code < 0 else f"code {code}"
                    self.report(f"Worker process {process.pid} exited ({how}); starting a replacement")
                    self._spawn()

    def request_restart(self, joined: typing.Callable[[], int], timeout: float) -> None:
        """restart(), or, while one is under way, one more once it is done.

        Its new workers may have loaded the code before the change that asks
        now (an editor saving several files, SIGHUP twice): one more restart
        serves the newest code; more requests meanwhile fold into that one.
        """
        if self._restarting is not None and not self._restarting.done():
            self._again = True
            return
        self._restarting = asyncio.ensure_future(self._restarts(joined, timeout))

    async def _restarts(self, joined: typing.Callable[[], int], timeout: float) -> None:
        self._again = True
        while self._again and not self.stopping:
            self._again = False
            await self.restart(joined, timeout)

    async def restart(self, joined: typing.Callable[[], int], timeout: float) -> None:
        """Replace every worker (new handler code) while the edge keeps its clients.

        New workers start first; once they have joined the edge, the old ones
        get SIGTERM, so new connections always find a worker. The old workers'
        clients are closed with 1012 (service restart) and may reconnect.
        """
        old, self.processes = self.processes, []
        before = joined()
        for _ in range(self.count):
            self._spawn()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while joined() < before + self.count and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await self._terminate(old, timeout)
        self.report(f"Restarted {self.count} worker(s)")

    async def stop(self, timeout: float) -> None:
        """SIGTERM every worker, wait up to ``timeout``, then SIGKILL what is left."""
        self.stopping = True
        await self._terminate(self.processes, timeout)

    async def _terminate(self, processes: list, timeout: float) -> None:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for process in processes:
            while process.poll() is None and loop.time() < deadline:
                await asyncio.sleep(0.05)
            if process.poll() is None:
                logger.warning("worker %d did not stop in %.1fs; killing it", process.pid, timeout)
                process.kill()
                process.wait()
