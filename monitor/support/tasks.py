"""Background tasks beside the data path (outbox relays, periodic jobs): stopping one cleanly."""

from __future__ import annotations

import asyncio


async def stop_task(task: asyncio.Task | None) -> None:
    """Cancel `task` and wait until it has finished; nothing if it is None or done."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
