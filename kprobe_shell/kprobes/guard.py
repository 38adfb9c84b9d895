"""A guard for Python probe handlers that never return: `set handler-timeout`, and Ctrl-C.

A handler runs inside the guest's trap, so a handler stuck in a loop would hang the
machine and the shell with it.  Each handler call is recorded (its thread and deadline)
in its engine's HandlerGuard; one watchdog thread for the whole process looks at the
records a few times a second and raises HandlerTimeout *inside* a handler that is past
its deadline (PyThreadState_SetAsyncExc: the exception appears at the handler's next
bytecode).  `interrupt()` raises HandlerInterrupted the same way: Machine.request_stop
(Ctrl-C in the shell) calls it, so Ctrl-C ends a looping handler as it ends a looping
guest.

Cost: a handler that returns normally pays a four-item list, an append and a
lock-protected pop (well under a microsecond on an idle machine); the clock is read by the watchdog, which
starts a call's countdown when it first sees the call, so the timeout is honoured within
one watchdog interval.  The watchdog never touches the guest.
A deterministic guard (a sys.settrace line budget) was weighed and rejected: tracing
every line of every handler call slows handlers down by an order of magnitude.

Limits: an exception can only be raised between bytecodes, so a handler blocked in one
long C call (time.sleep(60), a huge regex) is stopped when that call returns.
"""
from __future__ import annotations

import ctypes
import threading
import time
import weakref

#: Default seconds of host time a handler may run (the `handler-timeout` setting).
DEFAULT_HANDLER_TIMEOUT = 5.0
#: How often the watchdog looks (seconds): the timeout's resolution.
WATCHDOG_INTERVAL = 0.05


class HandlerTimeout(BaseException):
    """Raised inside a handler that ran past handler-timeout.  A BaseException, so a
    handler's own `except Exception:` does not swallow it (as with KeyboardInterrupt)."""


class HandlerInterrupted(BaseException):
    """Raised inside a running handler by Ctrl-C (Machine.request_stop)."""


_PyThreadState_SetAsyncExc = ctypes.pythonapi.PyThreadState_SetAsyncExc


def _set_async_exc(thread: int, exc: type[BaseException] | None) -> int:
    """Raise exc in thread at its next bytecode; None withdraws a pending one (NULL)."""
    return _PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), ctypes.py_object(exc) if exc is not None else None)


# One running handler call, a list (not an object: one is made on every hit):
# [thread, deadline (set by the watchdog when it first sees the call), the exception the
# guard raised in it (or None), done].
THREAD, DEADLINE, FIRED, DONE = range(4)


class HandlerGuard:
    """The handler calls of one engine that are running now (a stack: an entry_handler
    runs inside the kretprobe's own pre_handler)."""

    def __init__(self, timeout: float | None = DEFAULT_HANDLER_TIMEOUT):
        self.timeout = timeout  # None: no time limit (Ctrl-C still works)
        self._calls: list[list] = []
        self._lock = threading.Lock()
        _GUARDS.add(self)

    def enter(self) -> list:
        call = [_get_ident(), None, None, False]
        self._calls.append(call)
        if not _WATCHDOG:
            _start_watchdog()
        return call

    def leave(self, call: list) -> None:
        """The handler is over; idempotent.  An exception the watchdog raised too late to
        land in the handler is withdrawn before it can land anywhere else."""
        with self._lock:
            if call[DONE]:
                return
            call[DONE] = True
            calls = self._calls
            if calls and calls[-1] is call:
                calls.pop()
            elif call in calls:
                calls.remove(call)
            if call[FIRED] is not None:
                _set_async_exc(call[THREAD], None)  # clear it if still pending

    def _fire(self, call: list, exc: type[BaseException]) -> None:
        # Under self._lock: the call cannot end between the check and the raise.
        if call[DONE] or call[FIRED] is not None:
            return
        call[FIRED] = exc
        _set_async_exc(call[THREAD], exc)

    def check(self, now: float) -> None:
        """The watchdog's look: a handler past its deadline gets HandlerTimeout."""
        timeout = self.timeout
        with self._lock:
            for call in self._calls:
                if call[DEADLINE] is None:
                    call[DEADLINE] = now + timeout if timeout else float("inf")
                elif now >= call[DEADLINE]:
                    self._fire(call, HandlerTimeout)

    def interrupt(self) -> bool:
        """Ctrl-C: end every handler running now.  True when there was one."""
        with self._lock:
            running = [c for c in self._calls if not c[DONE]]
            for call in running:
                self._fire(call, HandlerInterrupted)
        return bool(running)

    @property
    def running(self) -> bool:
        return bool(self._calls)


_get_ident = threading.get_ident
_GUARDS: "weakref.WeakSet[HandlerGuard]" = weakref.WeakSet()
_WATCHDOG: list[threading.Thread] = []
_WATCHDOG_LOCK = threading.Lock()


def _watch() -> None:
    while True:
        time.sleep(WATCHDOG_INTERVAL)
        now = time.monotonic()
        for guard in list(_GUARDS):
            if guard._calls:
                guard.check(now)


def _start_watchdog() -> None:
    with _WATCHDOG_LOCK:
        if not _WATCHDOG:
            t = threading.Thread(target=_watch, name="kprobe-shell-handler-watchdog", daemon=True)
            t.start()
            _WATCHDOG.append(t)
