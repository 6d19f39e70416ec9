"""The one backoff policy: how long to wait after a failed attempt, and the wait itself."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

# Past this step the delay is at its cap anyway; it keeps 2**step a small number.
MAX_STEP = 16


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    backoff: float = 0.2
    backoff_max: float = 10.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        step = min(max(attempt, 1), MAX_STEP) - 1
        return float(min(self.backoff * 2**step, self.backoff_max))

    async def wait(self, attempt: int, stopping: asyncio.Event | None = None) -> bool:
        """Sleep the delay after `attempt`; False, at once, when `stopping` is set first."""
        return await pause(self.delay(attempt), stopping)


async def pause(seconds: float, stopping: asyncio.Event | None = None) -> bool:
    """Sleep `seconds`, or less when `stopping` is set: then False."""
    if stopping is None:
        await asyncio.sleep(seconds)
        return True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
    return not stopping.is_set()
