"""Light that is safe when lab4f stops: every open bench is closed — its shutter shut and its source switched
off (``on_exit = "safe"``, the default) — on a normal exit, an error, Ctrl-C, SIGTERM and SIGHUP.

SIGTERM and SIGHUP are turned into ``SystemExit`` in the main thread, so ``with Bench(...)`` blocks and ``finally``
clauses unwind as on Ctrl-C; an ``atexit`` hook closes benches opened outside a ``with``. What no process can do
for itself: a crash inside a vendor SDK (a segmentation fault) or SIGKILL ends the process with the light as it
was — an interlock or a shutter that closes without power is the only protection there.
"""

from __future__ import annotations

import atexit
import logging
import signal
import threading
import weakref
from typing import Any

log = logging.getLogger(__name__)

_open: weakref.WeakSet[Any] = weakref.WeakSet()
_installed = False


def remember(bench: Any) -> None:
    _open.add(bench)


def forget(bench: Any) -> None:
    _open.discard(bench)


def close_all() -> None:
    """Close every bench still open (the light to its exit state first)."""
    for bench in list(_open):
        try:
            bench.close()
        except Exception as exc:  # closing the others must go on
            log.warning("closing a bench at exit failed: %s", exc)


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds `with Bench(...)`: the light goes to its exit state


def install_exit_handlers() -> None:
    """SIGTERM/SIGHUP end the process like Ctrl-C does (from the main thread only; idempotent)."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _terminate)
    atexit.register(close_all)
    _installed = True
