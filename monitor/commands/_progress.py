"""Progress of long work on stderr: redrawn on one line at most twice a second on a terminal,
and one closing line in any case (so a log or a CI job sees what was done and how fast)."""

from __future__ import annotations

import asyncio
import sys
import time
from contextlib import asynccontextmanager
from typing import Callable


def _seconds(value: float) -> str:
    if value >= 3600:
        return f"{value // 3600:.0f} h {value % 3600 / 60:02.0f} min"
    if value >= 60:
        return f"{value // 60:.0f} min {value % 60:02.0f} s"
    return f"{value:.0f} s"


class Progress:
    """`update(done, total)` while working, `finish()` at the end. `unit` names what is counted."""

    def __init__(self, what: str, unit: str, enabled: bool = True, stream=None) -> None:
        self.what = what
        self.unit = unit
        self.stream = stream or sys.stderr
        self.live = enabled and getattr(self.stream, "isatty", lambda: False)()
        self.started = time.perf_counter()
        self._last = 0.0
        self._drawn = False
        self.done = 0

    def line(self, done: int, total: float | None = None, share: float | None = None, extra: str = "") -> str:
        """`what: 120,000 rows (12.0%, ETA 25 s), 40,000 rows/s`: `share` (0..1) if the total is
        not a count (bytes read of a file), else done/total."""
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = done / elapsed
        if share is None and total:
            share = done / total
        parts = [f"{self.what}: {done:,} {self.unit}"]
        if share is not None and 0 < share < 1:
            eta = elapsed * (1 - share) / share
            parts.append(f"({100 * share:.1f}%, ETA {_seconds(eta)})")
        text = " ".join(parts) + f", {rate:,.0f} {self.unit}/s"
        return text + (f", {extra}" if extra else "")

    def update(self, done: int, total: float | None = None, share: float | None = None, extra: str = "",
               force: bool = False) -> None:
        """Redraw (at most twice a second, or now with `force`)."""
        self.done = done
        if not self.live:
            return
        now = time.perf_counter()
        if not force and now - self._last < 0.5:
            return
        self._last = now
        self.stream.write("\r\033[K" + self.line(done, total, share, extra))
        self.stream.flush()
        self._drawn = True

    def finish(self, done: int | None = None, extra: str = "") -> None:
        """The closing line: `what: N unit in 12.3 s (rate unit/s)`, on a terminal or not."""
        done = self.done if done is None else done
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        text = f"{self.what}: {done:,} {self.unit} in {elapsed:.1f} s ({rate:,.0f} {self.unit}/s)"
        if extra:
            text += f", {extra}"
        self.stream.write(("\r\033[K" if self._drawn else "") + text + "\n")
        self.stream.flush()


@asynccontextmanager
async def ticking(progress: Progress, poll: Callable[[], tuple[int, float | None]], every: float = 0.5):
    """Redraw `progress` from `poll() -> (done, total)` while the body runs (it must await)."""

    async def tick() -> None:
        while True:
            await asyncio.sleep(every)
            done, total = poll()
            progress.update(done, total)

    task = asyncio.create_task(tick())
    try:
        yield progress
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
