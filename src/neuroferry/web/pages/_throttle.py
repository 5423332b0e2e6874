"""Slowing down password guessing: a wait that grows with recent failed sign-ins."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class Throttle:
    """Failed attempts per key (user and address), in memory, forgotten after ``window``
    seconds. Each recent failure adds ``step`` seconds to the next attempt's wait, up to
    ``most``."""

    def __init__(
        self, window: float = 600.0, step: float = 0.5, most: float = 8.0, keys: int = 10_000
    ) -> None:
        self.window, self.step, self.most, self.keys = window, step, most, keys
        self._failures: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> list[float]:
        times = [t for t in self._failures.get(key, ()) if now - t < self.window]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def delay(self, key: tuple[str, str]) -> float:
        """Seconds to wait before trying ``key`` again."""
        with self._lock:
            return min(self.most, self.step * len(self._recent(key, time.monotonic())))

    def failed(self, key: tuple[str, str]) -> None:
        """Count a failed attempt."""
        now = time.monotonic()
        with self._lock:
            times = self._recent(key, now)
            self._failures[key] = [*times[-63:], now]
            self._failures.move_to_end(key)
            while len(self._failures) > self.keys:
                self._failures.popitem(last=False)

    def succeeded(self, key: tuple[str, str]) -> None:
        """Forget the failures of ``key``."""
        with self._lock:
            self._failures.pop(key, None)
