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


# --------------------------------------------------------------------------
# Checkpoint sets: one plain state_dict per module (NGC layout) + trainer state.
import glob  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402

TRAINER_NAME = "trainer"
_logger = logging.getLogger("nemo_core")


def module_file(folder, name, step):
    return os.path.join(folder, f"{name}-STEP-{step}.pt")


def checkpoint_names(modules):
    """Stable, distinct file names for ``modules``.

    A module's name is its ``name`` (the class name unless the user gave one);
    repeats get ``_1``, ``_2``... in creation order, so the same script always
    produces the same names.
    """
    names, seen = {}, {}
    for module in sorted(modules, key=lambda m: m.instance_id):
        base = module.name
        count = seen.get(base, 0)
        seen[base] = count + 1
        names[module] = base if count == 0 else f"{base}_{count}"
    return names


def _steps_for(folder, name):
    pattern = re.compile(r"^(?:.*[-_])?" + re.escape(name) + r"-STEP-(\d+)\.pt$")
    steps = {}
    for path in glob.glob(os.path.join(glob.escape(folder), "*.pt")):
        match = pattern.match(os.path.basename(path))
        if match:
            steps.setdefault(int(match.group(1)), []).append(path)
    return steps


def complete_steps(folder, names):
    """Steps (ascending) for which the trainer file and every module file exist."""
    trainer_steps = set(_steps_for(folder, TRAINER_NAME))
    exact = [s for s in sorted(trainer_steps)
             if all(os.path.isfile(module_file(folder, n, s)) for n in names)]
    return exact


def save_checkpoint(folder, step, named_modules, trainer_state):
    """Write module files first, then the trainer file that marks the set complete."""
    for module, name in named_modules.items():
        state = {k: v.detach().float().cpu() if v.is_floating_point() else v.cpu()
                 for k, v in module.state_dict().items()}
        save_atomic(state, module_file(folder, name, step))
    save_atomic(trainer_state, module_file(folder, TRAINER_NAME, step))


def read_checkpoint(folder, step, named_modules):
    """Read and check every file of the set at ``step`` without changing anything.

    Returns ``(apply, trainer_state)``; calling ``apply()`` loads the weights.
    Errors name the offending file.
    """
    checked = []
    for module, name in named_modules.items():
        path = module_file(folder, name, step)
        checked.append((module, module.checked_state_dict(load_state_file(path, map_location=module.device), path)))
    trainer_state = load_state_file(module_file(folder, TRAINER_NAME, step), map_location="cpu")

    def apply():
        for module, state in checked:
            module.load_state_dict(state)

    return apply, trainer_state


def latest_module_file(folder, name, pattern=""):
    """Newest ``*{name}-STEP-{n}.pt`` in ``folder`` whose file name contains ``pattern``."""
    steps = _steps_for(folder, name)
    candidates = [(s, p) for s, paths in steps.items() for p in paths if pattern in os.path.basename(p)]
    if not candidates:
        return None
    candidates.sort()
    best_step = candidates[-1][0]
    best = [p for s, p in candidates if s == best_step]
    if len(best) > 1:
        raise CheckpointError(
            f"Several checkpoints for {name} at step {best_step} in {folder}: "
            f"{', '.join(sorted(best))}; pass ckpt_pattern to choose one"
        )
    return best[0]


def delete_checkpoint(folder, step, names):
    for name in list(names) + [TRAINER_NAME]:
        path = module_file(folder, name, step)
        if os.path.exists(path):
            os.remove(path)
