"""The factory's logger: rank-prefixed, optionally mirrored to a file."""
import logging
import os
import sys

_FORMAT = "[%(asctime)s rank {rank}] %(levelname)s %(name)s: %(message)s"


def make_logger(global_rank=0, log_dir=None, local_rank=None, name="nemo_core"):
    """Configure and return the ``nemo_core`` logger for this process.

    Console output goes to stderr (rank 0 at INFO, other ranks WARNING and up
    so N processes do not print N copies); every rank writes a full log file
    under ``log_dir`` when one is given.
    """
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        if getattr(handler, "_nemo_core", False):
            logger.removeHandler(handler)
            handler.close()
    formatter = logging.Formatter(_FORMAT.format(rank=global_rank), datefmt="%H:%M:%S")
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO if global_rank == 0 else logging.WARNING)
    console.setFormatter(formatter)
    console._nemo_core = True
    logger.addHandler(console)
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
        local = global_rank if local_rank is None else local_rank
        path = os.path.join(log_dir, f"log_globalrank-{global_rank}_localrank-{local}.txt")
        file_handler = logging.FileHandler(path)
        file_handler.setFormatter(formatter)
        file_handler._nemo_core = True
        logger.addHandler(file_handler)
    return logger
