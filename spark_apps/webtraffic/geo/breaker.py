"""A circuit breaker: after repeated failures stop calling a remote service for a while."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """Stops calls for ``reset_seconds`` after ``failure_threshold`` failed calls in a row.

    States: closed -> (threshold failures) -> open -> (``reset_seconds`` later) -> half-open,
    which lets one trial call through: its success closes the breaker, its failure reopens it.

    Thread-safe. ``clock`` is injectable for tests (monotonic seconds).
    """

    def __init__(
        self,
        failure_threshold: int,
        reset_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Creates a closed breaker.

        Args:
            failure_threshold: Failed calls in a row that open it.
            reset_seconds: How long it stays open before allowing one trial call.
            clock: Monotonic time source in seconds.
        """
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._state: BreakerState = "closed"
        self._failures = 0
        self._open_until = 0.0
        self._trial_in_flight = False
        self.times_opened = 0

    @property
    def state(self) -> BreakerState:
        """``closed``, ``open`` or ``half-open`` (an open breaker past its wait is half-open)."""
        with self._lock:
            if self._state == "open" and self._clock() >= self._open_until:
                return "half-open"
            return self._state

    def allow(self) -> bool:
        """Asks to make a call; True means go ahead and report the outcome afterwards."""
        with self._lock:
            if self._state == "closed":
                return True
            if self._state == "open":
                if self._clock() < self._open_until:
                    return False
                self._state = "half-open"
                self._trial_in_flight = False
            if self._trial_in_flight:
                return False
            self._trial_in_flight = True
            return True

    def seconds_until_trial(self) -> float:
        """Seconds before an open breaker allows a trial call (0 when it would allow one)."""
        with self._lock:
            if self._state != "open":
                return 0.0
            return max(0.0, self._open_until - self._clock())

    def record_success(self) -> None:
        """Reports a successful call: closes the breaker."""
        with self._lock:
            self._state = "closed"
            self._failures = 0
            self._trial_in_flight = False

    def record_failure(self) -> None:
        """Reports a failed call: a trial failure or the threshold-th failure opens the breaker."""
        with self._lock:
            self._trial_in_flight = False
            if self._state == "half-open":
                self._open(self.reset_seconds)
                return
            self._failures += 1
            if self._state == "closed" and self._failures >= self.failure_threshold:
                self._open(self.reset_seconds)

    def trip(self, seconds: float) -> None:
        """Opens the breaker for at least ``seconds`` (e.g. a long ``Retry-After`` on 429)."""
        with self._lock:
            self._trial_in_flight = False
            self._open(max(seconds, self._open_until - self._clock(), 0.0))

    def _open(self, seconds: float) -> None:
        if self._state != "open":
            self.times_opened += 1
        self._state = "open"
        self._open_until = self._clock() + seconds
