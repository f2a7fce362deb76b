"""Command-line conventions shared by every tool in this repository.

- A failure ends the tool with ONE line on stderr: ``prog: error: what, where,
  what to do (--debug shows the traceback)`` and exit status 1.
- ``--debug`` (``add_debug_flag``) re-raises instead, so the traceback shows.
- A training run stopped by SIGINT/SIGTERM exits with 128 + the signal number
  after its checkpoint was written (``TrainingInterrupted``).
- An optional dependency that is not installed names the pip extra to
  install (``require``).

Usage::

    def main(argv=None):
        parser = argparse.ArgumentParser(...)
        add_debug_flag(parser)
        args = parser.parse_args(argv)
        with one_line_errors(parser.prog, args.debug):
            ...

Errors whose message already says what went wrong, where and what to do
derive from ``UserError`` (or are ``OSError``\\ s, which name their file). Any
other exception is still one line, but marked as unexpected.
"""
import contextlib
import importlib
import os
import sys

DISTRIBUTION = "nemo-typed-modules"


class UserError(Exception):
    """A mistake the user can fix; the message names what, where and what to do."""


class MissingExtraError(UserError, ImportError):
    """An optional dependency is not installed; the message names the pip extra."""


def require(module, extra, purpose):
    """Import ``module`` or raise ``MissingExtraError`` naming ``pip install '...[extra]'``.

    ``purpose`` completes the sentence "``purpose`` needs the ``module`` package".
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(f"{purpose} needs the {module.split('.')[0]!r} package, which is not installed: "
                                f"pip install '{DISTRIBUTION}[{extra}]'") from err


def add_debug_flag(parser):
    """Add ``--debug`` (show the traceback of a failure) to an argparse parser."""
    parser.add_argument("--debug", action="store_true", help="on failure, show the full traceback")
    return parser


def describe_error(err):
    """One line for ``err``: its own message when it is a known kind, else marked as unexpected."""
    if isinstance(err, OSError) and err.strerror:
        where = f": {err.filename}" if err.filename else ""
        more = f" -> {err.filename2}" if getattr(err, "filename2", None) else ""
        return f"{err.strerror}{where}{more}"
    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    if isinstance(err, (UserError, OSError)) or _is_known(err):
        return first
    return f"unexpected {type(err).__name__}: {first}"


def _is_known(err):
    """Errors of this framework whose messages are written for users."""
    from ..checkpointing import CheckpointError
    from ..graph import GraphError
    from ..neural_module import StateDictMismatchError
    from ..neural_types.errors import NeuralTypeError
    from ..actions.guard import NonFiniteTrainingError
    from .config_io import ConfigSerializationError

    known = (CheckpointError, GraphError, NeuralTypeError, NonFiniteTrainingError, ConfigSerializationError,
             StateDictMismatchError)
    return isinstance(err, known) or getattr(err, "user_error", False)


@contextlib.contextmanager
def one_line_errors(prog=None, debug=False):
    """Turn any exception raised inside into one stderr line and exit status 1 (``debug``: re-raise)."""
    from ..actions.interrupts import TrainingInterrupted

    prog = prog or os.path.basename(sys.argv[0])
    try:
        yield
    except TrainingInterrupted as err:
        print(f"{prog}: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - every failure becomes one line; --debug shows it whole
        if debug:
            raise
        print(f"{prog}: error: {describe_error(err)} (--debug shows the traceback)", file=sys.stderr)
        sys.exit(1)
