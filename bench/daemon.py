"""`portal-monitor run` as a subprocess, with the moments the benchmark times taken from it.

The daemon logs JSON lines (structlog); a reader thread stamps each line with the harness's
`time.perf_counter()` as it arrives through the pipe, so "monitor running" (store connected,
migrations applied, consumer started and the group join requested) and "partitions assigned"
(the broker's join done) are timed without touching the daemon. `/readyz` is polled for the
first 200.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

from detectors.registry import detector_ids


def daemon_environment(
    *, bootstrap: str, topic: str, group: str, dsn: str, http_port: int, session_timeout: float, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """Environment for the daemon: every registered detector on, the PostgreSQL sink on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_MONITOR_")}
    env.update(
        PORTAL_MONITOR_KAFKA__BOOTSTRAP_SERVERS=bootstrap,
        PORTAL_MONITOR_KAFKA__IDEMPOTENT_PRODUCER="false",  # tansu has no InitProducerId
        PORTAL_MONITOR_SOURCE__TOPIC=topic,
        PORTAL_MONITOR_SOURCE__GROUP_ID=group,
        PORTAL_MONITOR_SOURCE__SESSION_TIMEOUT=f"{session_timeout}s",
        PORTAL_MONITOR_POSTGRES__DSN=dsn,
        PORTAL_MONITOR_SINKS__POSTGRES__ENABLED="true",
        PORTAL_MONITOR_HTTP__PORT=str(http_port),
        PORTAL_MONITOR_LOGGING__FORMAT="json",
    )
    for detector in detector_ids():
        env[f"PORTAL_MONITOR_DETECTORS__{detector.upper()}__ENABLED"] = "true"
    env.update(extra or {})
    return env


class Daemon:
    """One `portal-monitor run` process and the arrival times of its log lines."""

    def __init__(self, env: dict[str, str], http_port: int, profile: str | None = None) -> None:
        self.env = env
        self.http_port = http_port
        self.profile = profile  # py-spy raw output file: sample the daemon from start to exit
        self.process: subprocess.Popen | None = None
        self.profiler: subprocess.Popen | None = None
        self.spawned = 0.0
        self.lines: list[tuple[float, str, str]] = []  # (perf_counter, event, raw line)
        self._changed = threading.Condition()
        self._reader: threading.Thread | None = None

    def start(self) -> "Daemon":
        self.spawned = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run"], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if self.profile:
            self.profiler = subprocess.Popen(
                [py_spy(), "record", "--pid", str(self.process.pid), "--format", "raw", "--rate", "250",
                 "--output", self.profile, "--nonblocking", "--idle"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        return self

    def _read(self) -> None:
        assert self.process and self.process.stdout
        for raw in self.process.stdout:
            at = time.perf_counter()
            text = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                event = json.loads(text).get("event", "")
            except ValueError:
                event = ""
            with self._changed:
                self.lines.append((at, event, text))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_log(self, event: str, timeout: float = 60.0) -> float:
        """perf_counter at which a log line with this `event` arrived (waiting for it)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for at, name, _ in self.lines:
                    if name == event:
                        return at
                if self.process and self.process.poll() is not None and (not self._reader or not self._reader.is_alive()):
                    raise RuntimeError(f"daemon exited before logging {event!r}:\n{self.output()[-3000:]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"daemon did not log {event!r} in {timeout} s:\n{self.output()[-3000:]}")
                self._changed.wait(min(left, 0.5))

    def wait_ready(self, timeout: float = 60.0, poll: float = 0.01) -> float:
        """perf_counter of the first `/readyz` answer 200."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.http_port}/readyz"
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return time.perf_counter()
            except OSError:
                pass
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"daemon exited before ready:\n{self.output()[-3000:]}")
            time.sleep(poll)
        raise TimeoutError(f"daemon not ready in {timeout} s:\n{self.output()[-3000:]}")

    def output(self) -> str:
        with self._changed:
            return "\n".join(text for _, _, text in self.lines)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (drain, commit, exit 0); kill after `timeout`. The exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._reader:
            self._reader.join(5)
        if self.profiler is not None:
            try:
                self.profiler.wait(30)  # py-spy writes its file when the process it samples exits
            except subprocess.TimeoutExpired:
                self.profiler.kill()
        return self.process.returncode


def py_spy() -> str:
    """The py-spy next to this interpreter (pip install py-spy), else the one on PATH."""
    candidate = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return candidate if os.path.exists(candidate) else "py-spy"
