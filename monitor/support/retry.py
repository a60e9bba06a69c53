"""The one retry policy: exponential backoff, for start-up, reconnects and delivery.

`Backoff` says how long to wait after the n-th failure in a row; `retrying` runs an attempt
until it succeeds, logging each failure with what failed, why and when it is tried again. It
gives up (raising `GaveUp`) only when its `give_up` check says so: a stop was requested or a
shutdown deadline passed. A failure that the `retriable` check refuses is raised at once.

Who uses it: connecting to PostgreSQL at start-up (`monitor.service.app`), loading a checkpoint
(`monitor.service.lifecycle`), the account registry's steps and the sinks
(`monitor.delivery.delivery`), the outbox relays (`monitor.delivery.outbox`), `repartition`.
"""

from __future__ import annotations

import asyncio
import random
from typing import Awaitable, Callable, NamedTuple, TypeVar

T = TypeVar("T")


class GaveUp(Exception):
    """Retrying stopped because `give_up()` became true; the last failure is the cause."""


class Backoff(NamedTuple):
    initial: float = 0.5
    maximum: float = 30.0
    jitter: bool = False
    """With jitter, a delay is drawn from [d/2, d): many retriers do not wake in step."""

    def after(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after the `failures`-th failure in a row (1 for the first)."""
        delay = min(self.maximum, self.initial * (2 ** min(max(failures - 1, 0), 30)))
        return delay / 2 + rand() * delay / 2 if self.jitter else delay


def describe(error: BaseException) -> str:
    """`Type: message`, never an empty reason (some errors carry no message)."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def retrying(
    attempt: Callable[[], Awaitable[T]],
    *,
    what: str,
    backoff: Backoff,
    log,
    give_up: Callable[[], bool] = lambda: False,
    wait: Callable[[float], Awaitable[object]] = asyncio.sleep,
    retriable: Callable[[Exception], bool] = lambda error: True,
    on_failure: Callable[[Exception], None] | None = None,
    **context: object,
) -> T:
    """`await attempt()` until it returns; between failures log a warning and `await wait(delay)`.

    `wait` may do useful work while waiting (the Kafka source's keepalive) or return early when
    a stop is requested; `give_up` is checked after each failure and after each wait.
    """
    failures = 0
    while True:
        try:
            return await attempt()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if not retriable(error):
                raise
            if on_failure is not None:
                on_failure(error)
            if give_up():
                raise GaveUp(what) from error
            failures += 1
            delay = backoff.after(failures)
            log.warning(f"{what} failed, retrying", error=describe(error), retry_in=round(delay, 2), **context)
            await wait(delay)
            if give_up():
                raise GaveUp(what) from error
