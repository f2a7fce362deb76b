"""Everything about checkpoint files on disk: atomic writes and safe loads."""
import os
import tempfile

import torch


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or inconsistent; names the file."""


def save_atomic(obj, path):
    """``torch.save`` to a temporary file in the same folder, then rename.

    A process killed mid-write leaves at most a stray ``.tmp`` file, never a
    truncated checkpoint under the final name.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def load_state_file(path, map_location="cpu", weights_only=True):
    """``torch.load`` with errors that name the file."""
    if not os.path.isfile(path):
        raise CheckpointError(f"Checkpoint file {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as err:
        raise CheckpointError(f"Checkpoint file {path} is corrupt or unreadable: {err}") from err
