"""Ctrl-C during long native work: stop Keras ``fit`` after the current step
(:class:`StopOnCtrlC`), and remember an interrupt a library swallowed (:class:`Interrupts`)."""

from __future__ import annotations


class StopOnCtrlC:
    """``with StopOnCtrlC(model):`` around Keras ``fit``: Ctrl-C (SIGINT) stops after the current
    step instead of inside a TensorFlow op (which can crash the process), and ``.stop`` tells
    the callbacks that the epoch in progress did not finish; KeyboardInterrupt follows once
    ``fit`` has returned. A second Ctrl-C interrupts at once."""

    def __init__(self, model):
        import threading

        self.model, self.stop = model, threading.Event()
        self._main = threading.current_thread() is threading.main_thread()

    def __enter__(self):
        import signal

        if self._main:  # signal handlers can only be set in the main thread
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handler)
        return self.stop

    def _handler(self, signum, frame):
        import signal

        self.stop.set()
        self.model.stop_training = True
        signal.signal(signal.SIGINT, self._previous)

    def __exit__(self, kind, value, tb):
        import signal

        if self._main:
            signal.signal(signal.SIGINT, self._previous)
        if self.stop.is_set() and kind is None:
            raise KeyboardInterrupt
        return False


class Interrupts:
    """``with Interrupts() as ctrl_c: ...; ctrl_c.check()``: Ctrl-C (SIGINT) raises
    KeyboardInterrupt as usual and is also remembered, so that a library which swallows it (a
    bare ``except:`` inside a converter) cannot make the command run on: ``check()`` between
    phases raises it again. Outside the main thread it only watches the flag."""

    def __init__(self):
        import threading

        self.hit = False
        self._main = threading.current_thread() is threading.main_thread()

    def __enter__(self):
        import signal

        if self._main:
            # None: a handler set outside Python; Python's own is the one to restore then
            self._previous = signal.getsignal(signal.SIGINT) or signal.default_int_handler
            if self._previous is not signal.SIG_IGN:  # a background job stays uninterruptible
                signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        self.hit = True
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.hit:
            raise KeyboardInterrupt

    def __exit__(self, kind, value, tb):
        import signal

        if self._main and self._previous is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, self._previous)
        return False
