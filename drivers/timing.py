"""Time in the simulated bench: what a device shows between one change and the next.

A real display or liquid-crystal SLM does not change the instant it is told. A change sent at ``t`` becomes
visible at ``t_on`` (a monitor: the next refresh plus a pipeline latency of whole refresh periods; an SLM: its
controller's delay) and then the liquid crystal relaxes towards the new state, roughly exponentially with a time
constant ``tau``. What a camera exposure ``[t0, t1]`` integrates is therefore a weighted mixture of the states
shown, each weighted by the time-average of its (relaxed) share over the exposure.

:class:`ResponseHistory` keeps the recent states of one device and returns those weights in closed form for a
first-order (exponential) response: the share of state ``k`` at time ``t`` is ``s(t − on_k) − s(t − on_{k+1})``
with the step response ``s(τ) = 1 − exp(−τ / tau)`` (``s = 0`` before the change), and its time integral is
``S(τ) = τ − tau·(1 − exp(−τ / tau))``. ``tau = 0`` is an ideal step (a DMD switches in microseconds).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

#: how long a state is remembered after it was replaced (a free-running camera may render a buffered frame
#: this much later than it was exposed)
HISTORY_S = 5.0


def now() -> float:
    """The bench's clock: the host's monotonic high-resolution clock (``time.perf_counter``)."""
    return time.perf_counter()


def _integral_step(t: float, tau: float) -> float:
    """∫_0^t s(u) du for the exponential step response s (0 for t <= 0)."""
    if t <= 0:
        return 0.0
    if tau <= 0:
        return t
    return t - tau * (-math.expm1(-t / tau))


def _step(t: float, tau: float) -> float:
    if t <= 0:
        return 0.0
    if tau <= 0:
        return 1.0
    return -math.expm1(-t / tau)


@dataclass(frozen=True)
class State:
    """One state a device was told to show: visible from ``on_s`` (host clock), with a payload and a key."""

    on_s: float
    key: Any  # identifies the state for caches (a display version, an SLM write index)
    value: Any  # what the state is (an image, a write's index, a light level)


class ResponseHistory:
    """The recent states of one device and their time-weighted shares over an exposure (thread-safe)."""

    def __init__(
        self, initial_key: Any, initial_value: Any, tau_s: float = 0.0, maxlen: int = 256
    ) -> None:
        self.tau_s = float(tau_s)
        self._states: deque[State] = deque(
            [State(-math.inf, initial_key, initial_value)], maxlen=maxlen
        )
        self._lock = threading.Lock()

    def push(self, on_s: float, key: Any, value: Any) -> None:
        """Record a state that becomes visible at ``on_s`` (changes arrive in order of ``on_s``)."""
        with self._lock:
            while len(self._states) > 1 and self._states[-1].on_s > on_s:
                self._states.pop()  # a change scheduled later than this one was overtaken (never shown)
            self._states.append(State(on_s, key, value))
            horizon = on_s - HISTORY_S
            while len(self._states) > 2 and self._states[1].on_s < horizon:
                self._states.popleft()

    @property
    def latest(self) -> State:
        return self._states[-1]

    def states(self) -> list[State]:
        with self._lock:
            return list(self._states)

    def weights(self, t0: float, t1: float, floor: float = 1e-4) -> list[tuple[float, State]]:
        """[(weight, state)]: each state's mean share over ``[t0, t1]`` (weights sum to 1; those below
        ``floor`` are dropped and the rest renormalised). ``t1 == t0`` gives the instantaneous shares."""
        states = self.states()
        tau = self.tau_s
        out: list[tuple[float, State]] = []
        for k, st in enumerate(states):
            nxt = states[k + 1].on_s if k + 1 < len(states) else math.inf
            if t1 > t0:

                def share(on: float) -> float:
                    if on == -math.inf:
                        return t1 - t0
                    if on == math.inf:
                        return 0.0
                    return _integral_step(t1 - on, tau) - _integral_step(t0 - on, tau)

                w = (share(st.on_s) - share(nxt)) / (t1 - t0)
            else:
                w = (1.0 if st.on_s == -math.inf else _step(t0 - st.on_s, tau)) - (
                    0.0 if nxt == math.inf else _step(t0 - nxt, tau)
                )
            if w > floor:
                out.append((w, st))
        total = sum(w for w, _ in out)
        return [(w / total, st) for w, st in out] if total > 0 else [(1.0, states[0])]

    def dominant(self, t: float) -> State:
        """The state with the largest share at ``t``."""
        return max(self.weights(t, t), key=lambda ws: ws[0])[1]


def rise_to_tau(rise_s: float) -> float:
    """Time constant of an exponential whose 10–90 % rise time is ``rise_s`` (rise = tau · ln 9)."""
    return rise_s / math.log(9.0)
