"""A throwaway PostgreSQL server for self-tests, CI and benchmarks (no pytest here).

``initdb`` into a fresh directory under /tmp, ``postgres`` listening on a unix socket in
that directory only (``listen_addresses=''``: no TCP port, nothing to clash with), fsync
off (the data is disposable). PostgreSQL refuses to run as root, so under root the server
runs as the ``postgres`` system user (created by the Debian package) and the directory is
chowned to it. Stopped by its own pid (SIGINT = fast shutdown), directory removed.

    with PostgresServer() as pg:
        store = HistoryStore(pg.url)
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import BinaryIO


class PostgresUnavailable(RuntimeError):
    """The server binaries are not installed (the caller skips), or no user can run them."""


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<v>/bin`` with ``postgres`` and ``initdb``, else from PATH."""
    def version(path: str) -> tuple[int, ...]:
        m = re.search(r"/postgresql/([\d.]+)/", path)
        return tuple(int(x) for x in m.group(1).split(".")) if m else (0,)

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    for c in candidates:
        if os.access(os.path.join(c, "postgres"), os.X_OK) and os.access(os.path.join(c, "initdb"), os.X_OK):
            return Path(c)
    postgres = shutil.which("postgres")
    if postgres and shutil.which("initdb"):
        return Path(postgres).parent
    return None


class PostgresServer:
    """One disposable server: ``start()`` returns self, ``url`` is a SQLAlchemy psycopg 3 URL."""

    def __init__(self, *, bin_dir: str | os.PathLike[str] | None = None, database: str = "vdpalab",
                 run_as: str | None = None, max_connections: int = 100) -> None:
        found = Path(bin_dir) if bin_dir else find_bin_dir()
        if found is None:
            raise PostgresUnavailable("PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin "
                                      "and PATH); install the 'postgresql' package")
        self.bin_dir = found
        self.database = database
        self.max_connections = max_connections
        if run_as is None and os.geteuid() == 0:
            run_as = "postgres"
        self.run_as = run_as
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None

    # --------------------------------------------------------------- helpers

    def _ids(self) -> tuple[int, int] | None:
        if self.run_as is None:
            return None
        try:
            pw = pwd.getpwnam(self.run_as)
        except KeyError:
            raise PostgresUnavailable(f"running as root, but there is no {self.run_as!r} user to run PostgreSQL "
                                      "(it refuses to run as root)")
        return pw.pw_uid, pw.pw_gid

    def _popen_kwargs(self) -> dict:
        ids = self._ids()
        env = {"PATH": f"{self.bin_dir}:/usr/bin:/bin", "LC_ALL": "C", "LANG": "C"}
        kwargs: dict = {"env": env, "cwd": str(self.dir)}
        if ids is not None:
            kwargs.update(user=ids[0], group=ids[1], extra_groups=[])
            env["HOME"] = str(self.dir)
        return kwargs

    @property
    def socket_dir(self) -> Path:
        assert self.dir is not None
        return self.dir

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@/{self.database}?host={self.socket_dir}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def log_tail(self, lines: int = 30) -> str:
        if self.dir is None or not (self.dir / "postgres.log").exists():
            return ""
        return "\n".join((self.dir / "postgres.log").read_text(errors="replace").splitlines()[-lines:])

    # --------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 60.0) -> PostgresServer:
        self.dir = Path(tempfile.mkdtemp(prefix="vdpalab-pg-", dir="/tmp"))
        ids = self._ids()
        if ids is not None:
            os.chown(self.dir, *ids)
        data = self.dir / "data"
        init = subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
             "--no-sync", "--no-instructions"],
            capture_output=True, text=True, timeout=timeout, **self._popen_kwargs(),
        )
        if init.returncode != 0:
            out = (init.stderr or init.stdout).strip()[-2000:]
            self._cleanup()
            raise RuntimeError(f"initdb failed (rc={init.returncode}): {out}")
        self._log = open(self.dir / "postgres.log", "wb")  # noqa: SIM115 - closed in stop()
        if ids is not None:
            os.chown(self.dir / "postgres.log", *ids)
        self.proc = subprocess.Popen(
            [str(self.bin_dir / "postgres"), "-D", str(data), "-k", str(self.dir),
             "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", f"max_connections={self.max_connections}",
             "-c", "shared_buffers=32MB", "-c", "log_min_messages=warning"],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, **self._popen_kwargs(),
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with rc={self.proc.returncode}:\n{self.log_tail()}")
            try:
                with psycopg.connect(host=str(self.dir), dbname="postgres", user="postgres", autocommit=True,
                                     connect_timeout=2) as conn:
                    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{self.database}"')
                return
            except psycopg.OperationalError as exc:
                last = exc
                time.sleep(0.1)
        raise RuntimeError(f"postgres did not accept connections within {timeout:g} s: {last}\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        """Fast shutdown of *our* server by its pid, then remove its directory."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
                try:
                    os.kill(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._log is not None:
            self._log.close()
            self._log = None
        self._cleanup()

    def _cleanup(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["PostgresServer", "PostgresUnavailable", "find_bin_dir"]
