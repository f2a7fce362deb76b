"""SIGTERM (how cluster schedulers preempt) and SIGINT (Ctrl-C) during training.

The first signal asks the train loop to finish the current step, write a
complete checkpoint set and stop with ``TrainingInterrupted`` (scripts exit
with ``128 + signal``). A second signal stops at once: the default handler
runs (a checkpoint being written then leaves at most a stray ``.tmp`` file,
never a damaged set). Handlers can only be installed in the main thread;
elsewhere the run keeps Python's defaults.
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
        if self.requested is not None:  # second signal: give up at once
            self.__exit__()
            signal.raise_signal(signum)
            return
        self.requested = signum
        self.logger.warning("Received %s: finishing the current step, then saving a checkpoint and stopping "
                            "(send it again to stop at once)", signal.Signals(signum).name)
