"""The PostgreSQL database of the chat scenario: one given by the user, or a private cluster.

``--database "name=...;user=...;host=...;port=..."`` (or BENCH_DATABASE)
names an existing database, the format the test suite's DJANGO_WS_POSTGRES
uses. Without it the runner starts a throw-away cluster of its own with the
PostgreSQL server binaries (initdb, pg_ctl) on this machine, on a free port,
and removes it afterwards. Both sides of the benchmark use the same database
and the same table, emptied before each run.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from django_ws.testing.server import free_port

from .procs import cpu_seconds, process_tree


def server_binaries() -> str | None:
    """The directory of initdb and pg_ctl: on PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    if shutil.which("initdb") and shutil.which("pg_ctl"):
        return str(Path(shutil.which("initdb")).resolve().parent)  # Debian links a few of them from elsewhere
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: [int(x) for x in Path(p).parent.parent.name.split(".") if x.isdigit()])
    return str(Path(found[-1]).parent) if found else None


def parse_dsn(dsn: str) -> dict[str, str]:
    try:
        params = dict(part.split("=", 1) for part in dsn.split(";") if part)
    except ValueError:
        raise SystemExit(f"--database: expected 'name=...;user=...;host=...;port=...', got {dsn!r}") from None
    missing = {"name", "user", "host", "port"} - params.keys()
    if missing:
        raise SystemExit(f"--database: {', '.join(sorted(missing))} missing from {dsn!r}")
    return params


class Database:
    """Where the chat's messages are saved; ``dsn`` goes to both servers as BENCH_DATABASE."""

    def __init__(self, dsn: str, cluster: PrivateCluster | None = None):
        self.dsn = dsn
        self.params = parse_dsn(dsn)
        self.cluster = cluster

    def connect(self):
        import psycopg

        p = self.params
        return psycopg.connect(host=p["host"], port=p["port"], user=p["user"], dbname=p["name"],
                               password=p.get("password"), autocommit=True)

    def migrate(self, servers: Path, repo: Path) -> None:
        """Create the chat's table through Django's migrations (the django-ws project's settings)."""
        env = dict(os.environ, BENCH_DATABASE=self.dsn, DJANGO_SETTINGS_MODULE="djws_project.settings",
                   PYTHONPATH=os.pathsep.join([str(servers), str(repo)]))
        done = subprocess.run([sys.executable, "-m", "django", "migrate", "-v0"], env=env, cwd=servers,
                              capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"migrate failed: {done.stderr.strip()[-800:]}")

    def empty(self) -> None:
        with self.connect() as conn:
            conn.execute("TRUNCATE chat_message")

    def count(self) -> int:
        with self.connect() as conn:
            return conn.execute("SELECT count(*) FROM chat_message").fetchone()[0]

    def cpu_seconds(self) -> float | None:
        """CPU time of the private cluster's processes so far (None for a database given by URL)."""
        if self.cluster is None or self.cluster.pid is None:
            return None
        return sum(cpu_seconds(pid) for pid in process_tree([self.cluster.pid]))

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()


class PrivateCluster:
    """A PostgreSQL cluster in a temporary directory, as the CI starts one.

    PostgreSQL refuses to run as root, so as root the cluster belongs to the
    ``postgres`` user. synchronous_commit is off: a commit then does not
    wait for the disk's fsync, whose latency differs most between machines
    and is the same for both sides; everything else is PostgreSQL's default.
    """

    def __init__(self, bindir: str):
        self.bindir = bindir
        self.port = free_port()
        self.datadir = tempfile.mkdtemp(prefix="django-ws-bench-pg.")
        self.user = None
        if os.geteuid() == 0:
            self.user = "postgres"
            pw = pwd.getpwnam(self.user)
            os.chown(self.datadir, pw.pw_uid, pw.pw_gid)
        self.pid: int | None = None

    def _run(self, *args: str) -> None:
        command = [f"{self.bindir}/{args[0]}", *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd="/")
        if done.returncode:
            log = Path(self.datadir, "server.log")
            detail = done.stderr[-800:] or (log.read_text()[-800:] if log.exists() else "")
            raise RuntimeError(f"{args[0]} failed: {detail.strip()}")

    def start(self) -> Database:
        try:
            self._run("initdb", "-D", self.datadir, "-A", "trust", "-U", "postgres")
            options = (f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 -c max_connections=300 "
                       "-c synchronous_commit=off")
            self._run("pg_ctl", "-D", self.datadir, "-l", f"{self.datadir}/server.log", "-o", options, "-w", "start")
            with open(f"{self.datadir}/postmaster.pid") as f:
                self.pid = int(f.readline())
            self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "bench")
        except BaseException:
            self.stop()  # a half-made cluster must not outlive the run
            raise
        return Database(f"name=bench;user=postgres;host=127.0.0.1;port={self.port}", cluster=self)

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._run("pg_ctl", "-D", self.datadir, "-m", "fast", "-w", "stop")
        shutil.rmtree(self.datadir, ignore_errors=True)


def open_database(dsn: str | None) -> Database:
    """The database of --database/BENCH_DATABASE, else a private cluster; RuntimeError if neither can be had."""
    if dsn:
        return Database(dsn)
    bindir = server_binaries()
    if bindir is None:
        raise RuntimeError("no PostgreSQL: pass --database 'name=...;user=...;host=...;port=...' "
                           "(or BENCH_DATABASE), or install the server (apt-get install postgresql)")
    return PrivateCluster(bindir).start()
