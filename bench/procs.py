"""Processes of the servers under test, and what /proc says about them."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    return children


def process_tree(roots: list[int]) -> list[int]:
    """``roots`` and all their descendants (processes, not threads)."""
    children = children_map()
    pids, i = list(roots), 0
    while i < len(pids):
        pids.extend(children.get(pids[i], ()))
        i += 1
    return pids


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def context_switches(pid: int) -> dict[str, tuple[int, int]]:
    """Per thread of ``pid`` (by thread name and id): (voluntary, involuntary) context switches.

    A voluntary switch is a thread going to sleep (waiting on a lock, a
    futex, poll): each one is later paid for by a wake-up. Involuntary ones
    are preemptions, the price of more runnable threads than cores.
    """
    switches = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return switches
    for tid in tids:
        name, vol, invol = "?", 0, 0
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("Name:"):
                        name = line.split(":", 1)[1].strip()
                    elif line.startswith("voluntary_ctxt_switches:"):
                        vol = int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        invol = int(line.split()[1])
        except (OSError, ValueError):
            continue
        switches[f"{name}/{tid}"] = (vol, invol)
    return switches


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def listen_overflows() -> int | None:
    """The kernel's count of connections dropped because a listen queue was full (all sockets)."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:]))
            return int(table["ListenOverflows"]) if "ListenOverflows" in table else None
    return None


def load_average() -> str:
    """/proc/loadavg's three averages: how busy the machine was besides the benchmark."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"server did not listen on 127.0.0.1:{port} within {timeout}s")


def kill_group(process: subprocess.Popen | None, timeout: float = 15.0) -> None:
    """SIGTERM a process group started with start_new_session, then SIGKILL what is left."""
    if process is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


class Subprocess:
    """A helper process in its own session, with its output in a temporary file."""

    def __init__(self, command: list[str], env: dict | None = None, cwd: Path | None = None):
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)

    def output(self, lines: int = 30) -> str:
        self.log.seek(0)
        return "".join(self.log.readlines()[-lines:])

    def stop(self) -> None:
        try:
            kill_group(self.process)
        finally:
            self.log.close()


def raise_nofile(needed: int) -> int:
    """Raise this process's (and so its children's) open-file limit as far as allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if want > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < needed:
        print(f"warning: open-file limit is {soft}, below the {needed} the hold scenario needs; "
              "raise the hard limit (ulimit -Hn) or use --quick", flush=True)
    return soft
