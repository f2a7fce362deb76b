"""SIGTERM (how cluster schedulers preempt) and SIGINT (Ctrl-C) during training.

The first signal asks the train loop to finish the current step, write a
complete checkpoint set and stop with ``TrainingInterrupted`` (scripts exit
with ``128 + signal``). A second Ctrl-C (SIGINT) stops at once: Python's
handler runs (a checkpoint being written then leaves at most a stray ``.tmp``
file, never a damaged set). Further SIGTERMs are absorbed: launchers and
schedulers often deliver one to every process (torchrun forwards its own,
a job step signals each process), and a scheduler that will not wait sends
SIGKILL anyway. Handlers can only be installed in the main thread; elsewhere
the run keeps Python's defaults.
"""
import signal
import threading

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving; ``signum`` says which."""

    def __init__(self, signum, step, saved):
        self.signum, self.step, self.saved = signum, step, saved
        name = signal.Signals(signum).name
        where = "a checkpoint set was written" if saved else "no checkpoint callback saved it"
        super().__init__(f"Training stopped by {name} after step {step}; {where}. Run the same command to resume")

    @property
    def exit_code(self):
        return 128 + self.signum


class StopSignals:
    """Context manager: while active, SIGTERM/SIGINT set ``requested`` instead of killing."""

    def __init__(self, logger):
        self.logger = logger
        self.requested = None  # the signal number, once one arrived
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in _SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        return False

    def _handle(self, signum, frame):
        if self.requested is not None:
            if signum == signal.SIGINT:  # Ctrl-C twice: give up at once
                self.__exit__()
                signal.raise_signal(signum)
            return
        self.requested = signum
        again = " (Ctrl-C again stops at once)" if signum == signal.SIGINT else ""
        self.logger.warning("Received %s: finishing the current step, then saving a checkpoint and stopping%s",
                            signal.Signals(signum).name, again)
