"""A guard for Python probe handlers that never return: `set handler-timeout`, and Ctrl-C.

A handler runs inside the guest's trap, so a handler stuck in a loop would hang the
machine and the shell with it.  Each handler call is recorded (its thread and deadline)
in its engine's HandlerGuard; one watchdog thread for the whole process looks at the
records a few times a second and raises HandlerTimeout *inside* a handler that is past
its deadline (PyThreadState_SetAsyncExc: the exception appears at the handler's next
bytecode).  `interrupt()` raises HandlerInterrupted the same way: Machine.request_stop
(Ctrl-C in the shell) calls it, so Ctrl-C ends a looping handler as it ends a looping
guest.

Cost: a handler that returns normally pays two integer updates on the way in and one
on the way out (about 0.1 us; the thread is noted once per run; a lock and a record per
call cost several times that, more than an optimized probe hit).  The watchdog does the rest: it notices a call by the call
counter, starts that call's countdown when it first sees it (so the timeout is honoured
within one watchdog interval), and never touches the guest.
A deterministic guard (a sys.settrace line budget) was weighed and rejected: tracing
every line of every handler call slows handlers down by an order of magnitude.

A handler that catches the guard's exception (`except BaseException:`, a bare `except:`)
and runs on is stopped all the same: see _GuardStop.  Loading a handler file runs under
the same guard (shell/handler_files.py), so a file that loops at load time is stopped too.

Limits: an exception can only be raised between bytecodes, so a handler blocked in one
long C call (time.sleep(60), a huge regex) is stopped when that call returns.
"""
from __future__ import annotations

import ctypes
import sys
import threading
import time
import weakref

#: Default seconds of host time a handler may run (the `handler-timeout` setting).
DEFAULT_HANDLER_TIMEOUT = 5.0
#: How often the watchdog looks (seconds): the timeout's resolution.
WATCHDOG_INTERVAL = 0.05


class _GuardStop(BaseException):
    """What the guard raises inside a handler.  A BaseException, so a handler's own
    `except Exception:` does not swallow it (as with KeyboardInterrupt).

    A handler that catches it anyway (`except BaseException:`, a bare `except:`) and
    goes on must still be stopped.  Python builds the exception in the handler's own
    thread when a handler catches it, so its constructor arms a trace function there
    (_insist.c) that raises it again at every line the handler runs, the `except`
    clause's own line first: each try it is caught in, it leaves at once, outwards,
    until the handler call is over.  The watchdog also raises it again at every look
    while the call runs on (all the guard can do where the C part is not built)."""

    def __init__(self, *args):
        super().__init__(*args)
        # Only C calls and guard code exempt from the trace function from here on.
        guard = _FIRED_ON.get(_get_ident())
        if guard is not None and guard.fired is type(self) and not guard._insisting:
            guard._insist(sys._getframe(1))


class HandlerTimeout(_GuardStop):
    """Raised inside a handler that ran past handler-timeout."""


class HandlerInterrupted(_GuardStop):
    """Raised inside a running handler by Ctrl-C (Machine.request_stop)."""


#: The functions that call guarded handlers (KprobeEngine._call, the handler-file
#: loader): the trace function of _insist never goes below them.
_GUARDED_CALLERS: set = set()


try:
    from . import _insist
except ImportError:  # not built (a source checkout without build_ext)
    _insist = None


def guarded_caller(fn):
    """Mark fn as a function that calls handlers under a HandlerGuard (a decorator)."""
    _GUARDED_CALLERS.add(fn.__code__)
    return fn


_PyThreadState_SetAsyncExc = ctypes.pythonapi.PyThreadState_SetAsyncExc


def _set_async_exc(thread: int, exc: type[BaseException] | None) -> int:
    """Raise exc in thread at its next bytecode; None withdraws a pending one (NULL)."""
    return _PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), ctypes.py_object(exc) if exc is not None else None)


class HandlerGuard:
    """The handler calls of one engine running now, as a depth (an entry_handler runs
    inside the kretprobe's own pre_handler, so calls nest) and a count of calls begun.

    The hot path (KprobeEngine._call updates depth and calls; leave) takes no lock: the
    GIL makes each update atomic, and the watchdog only ever reads them.  Firing is the delicate part: the exception must land
    in the handler, not in the engine after the handler returned.  The watchdog raises it
    only while the call it timed is still running, and withdraws it when that call turns
    out to have ended meanwhile; leave() withdraws one that came too late as well."""

    def __init__(self, timeout: float | None = DEFAULT_HANDLER_TIMEOUT):
        self.timeout = timeout  # None: no time limit (Ctrl-C still works)
        self.depth = 0          # handler calls running now
        self.calls = 0          # handler calls begun, ever: tells one call from the next
        self.thread = 0         # the thread the handlers run on (the one running the guest):
                                # set by watch_this_thread() when a run starts
        self.fired: type[BaseException] | None = None  # what the guard raised, until settled
        self._fired_call = 0    # the call it was raised in, and the depth below that call
        self._fired_floor = 0
        self._trace_before: object = None  # sys.gettrace() before _insist put its own
        self._insisting = False
        self._seen = -1         # the watchdog's view: the call it is timing, and until when
        self._deadline = 0.0
        self._lock = threading.Lock()  # between the watchdog and interrupt(), never the hot path
        with _GUARDS_LOCK:
            _GUARDS.add(self)
        if not _WATCHDOG:
            _start_watchdog()

    def watch_this_thread(self) -> None:
        """The calling thread is about to run the guest, and so the handlers."""
        self.thread = _get_ident()

    def enter(self) -> int:
        """A guarded call begins (a handler file loading; KprobeEngine._call does the same
        updates inline on the hot path); returns the depth to give back to leave()."""
        depth = self.depth
        self.calls += 1
        self.depth = depth + 1
        return depth

    def leave(self, depth: int) -> None:
        """The handler is over; idempotent (the engine calls it again when the guard's
        exception landed inside it).  An exception the guard raised too late to land in
        the handler is withdrawn before it can land anywhere else."""
        self.depth = depth
        if self.fired is not None:
            self.settle()

    def settle(self) -> None:
        if self._insisting:
            # On the handler's thread (leave() runs there): the trace function goes first.
            _insist.stop_insisting()
            sys.settrace(self._trace_before)  # a Python one (a debugger's) comes back
            self._trace_before, self._insisting = None, False
        with self._lock:
            if self.fired is not None:
                self.fired = None
                _set_async_exc(self.thread, None)  # clear it if still pending
                _FIRED_ON.pop(self.thread, None)

    def _still_running(self) -> bool:
        """Is the call the guard raised in still running?"""
        return self.fired is not None and self.depth > self._fired_floor

    def _insist(self, frame) -> None:
        """On the handler's thread, as the guard's exception lands: from now on raise it
        again at every line the handler runs, until the call is over (see _insist.c)."""
        if self._insisting or _insist is None:
            return
        while frame is not None and frame.f_code not in _GUARDED_CALLERS:
            frame = frame.f_back
        if frame is None:
            return  # not inside a guarded call
        self._trace_before = sys.gettrace()
        self._insisting = True
        _insist.insist(self.fired, _GUARDED_CALLERS | _GUARD_CODE, self._still_running)

    def _fire(self, exc: type[BaseException], call: int) -> None:
        # Under self._lock.
        if self.fired is not None or self.depth == 0 or self.calls != call:
            return
        self.fired = exc
        self._fired_call, self._fired_floor = call, self.depth - 1
        _FIRED_ON[self.thread] = self
        _set_async_exc(self.thread, exc)
        if self.depth == 0 or self.calls != call:  # it ended between the check and the raise
            self.fired = None
            _set_async_exc(self.thread, None)
            _FIRED_ON.pop(self.thread, None)

    def check(self, now: float) -> None:
        """The watchdog's look: a handler past its deadline gets HandlerTimeout."""
        with self._lock:
            if self.depth == 0:
                return
            call = self.calls
            if self._still_running() and call == self._fired_call:
                # The handler caught the exception and runs on: raise it again.
                _set_async_exc(self.thread, self.fired)
                if not self._still_running():  # it ended meanwhile
                    _set_async_exc(self.thread, None)
                return
            if call != self._seen:
                self._seen = call
                self._deadline = now + self.timeout if self.timeout else float("inf")
            elif now >= self._deadline:
                self._fire(HandlerTimeout, call)

    def interrupt(self) -> bool:
        """Ctrl-C: end the handler running now.  True when there was one."""
        with self._lock:
            if self.depth == 0:
                return False
            self._fire(HandlerInterrupted, self.calls)
            return True

    @property
    def running(self) -> bool:
        return self.depth > 0


_get_ident = threading.get_ident
_GUARDS: "weakref.WeakSet[HandlerGuard]" = weakref.WeakSet()
_WATCHDOG: list[threading.Thread] = []
_WATCHDOG_LOCK = threading.Lock()
#: A WeakSet's iteration fails when another thread adds to it meanwhile (a machine made
#: while the watchdog looks): the watchdog copies it, machines add to it, under this lock.
_GUARDS_LOCK = threading.Lock()


#: The guard's own functions that run while a handler call is stopped: never raised in.
_GUARD_CODE = {_GuardStop.__init__.__code__, HandlerGuard._insist.__code__, HandlerGuard.leave.__code__,
               HandlerGuard.settle.__code__}
#: thread -> the guard whose exception is being raised in it (read as it lands).
_FIRED_ON: dict[int, HandlerGuard] = {}


def _watch() -> None:
    while True:
        time.sleep(WATCHDOG_INTERVAL)
        now = time.monotonic()
        with _GUARDS_LOCK:
            guards = list(_GUARDS)
        for guard in guards:
            if guard.depth:
                guard.check(now)


def _start_watchdog() -> None:
    with _WATCHDOG_LOCK:
        if not _WATCHDOG:
            t = threading.Thread(target=_watch, name="kprobe-shell-handler-watchdog", daemon=True)
            t.start()
            _WATCHDOG.append(t)
