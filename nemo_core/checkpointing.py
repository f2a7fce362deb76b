"""Everything about checkpoint files on disk: atomic writes, safe loads, and
the ONE discovery of checkpoint sets that resume, inference, fine-tuning and
the command-line tools all use.

A *checkpoint set* is one plain ``state_dict`` file per module (the NGC NeMo
0.x layout, ``{Name}-STEP-{step}.pt``) plus, for sets this framework writes,
a ``trainer-STEP-{step}.pt`` file with the optimiser, precision, loop position
and RNG state. The trainer file is written last, so it marks the set
complete: in a folder that holds any trainer file, a step without one is a set
whose writing was interrupted and is never used. A folder without trainer
files (an NGC download, weights copied by hand) holds weights-only sets: a
step counts when every requested module has a file there.
"""
import collections
import errno
import glob
import logging
import os
import re
import shutil
import tempfile

import torch

TRAINER_NAME = "trainer"
_logger = logging.getLogger("nemo_core")


class CheckpointError(RuntimeError):
    """A checkpoint file or folder is missing, unreadable, unwritable or inconsistent; names it."""


class ResumeError(CheckpointError):
    """A checkpoint set cannot continue *this* run (another optimizer, ...).

    Unlike a damaged file this is a configuration mistake: an older set would
    not fit either, so resuming never falls back past it.
    """


# ------------------------------------------------------------------ files
def save_atomic(obj, path):
    """``torch.save`` to a temporary file in the same folder, then rename.

    A process killed mid-write leaves at most a stray ``.tmp`` file, never a
    truncated checkpoint under the final name. A failed write (disk full,
    quota, permissions) removes the temporary file and raises a
    ``CheckpointError`` that names the folder.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=folder)
    except OSError as err:
        raise CheckpointError(_write_failure(path, folder, err)) from err
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException as err:
        # torch.save reports write errors as RuntimeError; free space is read before the partial file goes
        message = _write_failure(path, folder, err) if isinstance(err, (OSError, RuntimeError)) else None
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        if message is not None:
            raise CheckpointError(message) from err
        raise


def _write_failure(path, folder, err):
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    out_of_space = getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
    if out_of_space or (free is not None and free < 64 * 2**20):
        room = "" if free is None else f" ({free / 2**20:.1f} MiB free)"
        return (f"Cannot write checkpoint {os.path.basename(path)}: the disk holding {folder} is full{room}; "
                f"free space there or choose another checkpoint folder ({detail})")
    return f"Cannot write checkpoint {os.path.basename(path)} in {folder}: {detail}"


def load_state_file(path, map_location="cpu", weights_only=True):
    """``torch.load`` with errors that name the file."""
    if not os.path.isfile(path):
        raise CheckpointError(f"Checkpoint file {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as err:
        raise CheckpointError(f"Checkpoint file {path} is corrupt or unreadable: {err}") from err


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


# -------------------------------------------------------------- discovery
CheckpointSet = collections.namedtuple("CheckpointSet", "folder step files trainer_file")
CheckpointSet.__doc__ = """One step's files: ``files`` maps module name -> path; ``trainer_file`` may be None."""


def _module_files(folder, name):
    """``[(prefix, step, path)]`` of the ``[prefix-]{name}-STEP-{step}.pt`` files in ``folder`` (the one
    place that reads checkpoint file names; ``prefix`` is ``""`` when there is none)."""
    regex = re.compile(r"^(?:(.*)[-_])?" + re.escape(name) + r"-STEP-(\d+)\.pt$")
    found = []
    for path in sorted(glob.glob(os.path.join(glob.escape(folder), "*.pt"))):
        match = regex.match(os.path.basename(path))
        if match:
            found.append((match.group(1) or "", int(match.group(2)), path))
    return found


def _files_by_step(folder, name, pattern=""):
    """``{step: [paths]}`` of ``[prefix-]{name}-STEP-{step}.pt`` files whose name contains ``pattern``."""
    steps = {}
    for _, step, path in _module_files(folder, name):
        if pattern in os.path.basename(path):
            steps.setdefault(step, []).append(path)
    return steps


def sets_by_prefix(folder, names):
    """The complete checkpoint sets in ``folder`` grouped by file-name prefix: ``{prefix: {step: {name: path}}}``.

    A set's prefix is what precedes the module names in its file names
    (``small_qn`` for ``small_qn-JasperEncoder-STEP-1.pt``; ``""`` for
    ``JasperEncoder-STEP-1.pt``); complete means a file for every name. An NGC
    download may hold several models in one folder; this tells them apart.
    """
    found = {}
    for name in names:
        for prefix, step, path in _module_files(folder, name):
            found.setdefault((prefix, step), {})[name] = path
    sets = {}
    for (prefix, step), files in sorted(found.items()):
        if len(files) == len(names):
            sets.setdefault(prefix, {})[step] = files
    return sets


def describe_prefixes(sets):
    """``small_jasper_dr (step 247400), small_qn (steps 100, 200)`` for ``sets_by_prefix``' result."""
    parts = []
    for prefix, steps in sets.items():
        listed = sorted(steps)[-5:]
        parts.append(f"{prefix or '(no prefix)'} (step{'s' if len(listed) > 1 else ''} "
                     f"{', '.join(map(str, listed))})")
    return ", ".join(parts)


def _single(folder, name, step, paths):
    if len(paths) > 1:
        raise CheckpointError(f"Several checkpoints for {name} at step {step} in {folder}: "
                              f"{', '.join(sorted(paths))}; pass a checkpoint pattern (ckpt_pattern) to choose one")
    return paths[0]


def find_sets(folder, names, pattern=""):
    """Complete checkpoint sets for module ``names`` in ``folder``, oldest first.

    In a folder holding trainer files, only steps with a trainer file and a
    file for every name count (a set whose writing was cut short is never
    used); otherwise (NGC downloads) every step with a file for every name.
    ``pattern`` keeps module files whose name contains it.
    """
    if not os.path.isdir(folder):
        kind = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise CheckpointError(f"Checkpoint folder {folder} {kind}")
    names = list(names)
    trainers = _files_by_step(folder, TRAINER_NAME)
    per_name = {name: _files_by_step(folder, name, pattern) for name in names}
    steps = set.intersection(*(set(files) for files in per_name.values())) if names else set()
    if trainers:
        steps &= set(trainers)
    sets = []
    for step in sorted(steps):
        files = {name: _single(folder, name, step, per_name[name][step]) for name in names}
        trainer = _single(folder, TRAINER_NAME, step, trainers[step]) if trainers else None
        sets.append(CheckpointSet(folder, step, files, trainer))
    return sets


def describe_folder(folder, names, pattern=""):
    """Why ``folder`` has no complete set for ``names``: what it does hold."""
    found = {name: sorted(_files_by_step(folder, name, pattern)) for name in names}
    trainers = sorted(_files_by_step(folder, TRAINER_NAME))
    parts = [f"{name}: steps {steps[-5:] if steps else 'none'}" for name, steps in found.items()]
    if trainers:
        parts.append(f"trainer: steps {trainers[-5:]}")
    where = f" matching {pattern!r}" if pattern else ""
    return f"no complete checkpoint set for {', '.join(names)}{where} in {folder} ({'; '.join(parts)})"


# ---------------------------------------------------------------- reading
class LoadedCheckpoint:
    """A set whose files were all read and checked; nothing is applied yet.

    ``module_states``: module -> checked state_dict; ``trainer_state``: dict or
    None (weights-only set); ``skipped``: name -> reason for modules left as
    they are (``strict=False``).
    """

    def __init__(self, ckpt_set, module_states, trainer_state, skipped):
        self.set, self.module_states, self.trainer_state, self.skipped = ckpt_set, module_states, trainer_state, skipped

    step = property(lambda self: self.set.step)
    folder = property(lambda self: self.set.folder)

    def apply_weights(self):
        for module, state in self.module_states.items():
            module.load_state_dict(state)


def read_set(ckpt_set, named_modules, strict=True, with_trainer=True):
    """Read and check every file of ``ckpt_set`` for ``named_modules`` (module -> name).

    Errors name the offending file. ``strict=False`` leaves modules whose file
    is missing or does not fit (e.g. a decoder for another vocabulary) as they
    are and records why in ``skipped``.
    """
    states, skipped = {}, {}
    for module, name in named_modules.items():
        path = ckpt_set.files.get(name)
        if path is None:
            if strict:
                raise CheckpointError(f"Checkpoint set step {ckpt_set.step} in {ckpt_set.folder} has no file for {name}")
            skipped[name] = "no file in the set"
            continue
        try:
            states[module] = module.checked_state_dict(load_state_file(path, map_location=module.device), path)
        except CheckpointError:
            raise
        except Exception as err:
            if strict:
                raise
            skipped[name] = str(err)
    trainer = None
    if with_trainer and ckpt_set.trainer_file is not None:
        trainer = load_state_file(ckpt_set.trainer_file, map_location="cpu")
        if not isinstance(trainer, dict):
            raise CheckpointError(f"Checkpoint file {ckpt_set.trainer_file} does not hold a trainer state")
    return LoadedCheckpoint(ckpt_set, states, trainer, skipped)


def restore_modules(modules, folder, pattern="", strict=True, logger=None):
    """Load the newest complete set in ``folder`` into ``modules``; returns the ``LoadedCheckpoint``.

    The one place inference, fine-tuning and the command-line tools take
    weights from: only complete sets (see ``find_sets``), every module from the
    same step. With ``strict=False`` only the modules that have files in
    ``folder`` decide which steps are complete, and a module whose file does
    not fit is left as it is (listed in ``skipped``).
    """
    logger = logger or _logger
    named = checkpoint_names(modules)
    names = list(named.values())
    if not strict:
        names = [n for n in names if _files_by_step(folder, n, pattern)] if os.path.isdir(folder) else names
        if not names:
            raise CheckpointError(describe_folder(folder, list(named.values()), pattern))
    sets = find_sets(folder, names, pattern)
    if not sets:
        message = describe_folder(folder, names, pattern)
        raise CheckpointError(message[0].upper() + message[1:])
    loaded = read_set(sets[-1], named, strict=strict, with_trainer=False)
    loaded.apply_weights()
    for module, name in named.items():
        if module in loaded.module_states:
            logger.info("Restored %s from %s", name, loaded.set.files[name])
    return loaded


# ---------------------------------------------------------------- writing
def _non_finite_keys(state):
    return [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]


def save_checkpoint(folder, step, named_modules, trainer_state):
    """Write module files first, then the trainer file that marks the set complete.

    Refuses weights that are not finite (nothing is written). When a write
    fails (disk full...), the files of this set already written are removed,
    so the folder holds only its earlier, complete sets; the error names the folder.
    """
    states = {}
    for module, name in named_modules.items():
        state = {k: v.detach().float().cpu() if v.is_floating_point() else v.cpu()
                 for k, v in module.state_dict().items()}
        bad = _non_finite_keys(state)
        if bad:
            raise CheckpointError(f"Refusing to save step {step} to {folder}: {name} has non-finite values in "
                                  f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}")
        states[name] = state
    written = []
    try:
        for name, state in states.items():
            path = module_file(folder, name, step)
            save_atomic(state, path)
            written.append(path)
        save_atomic(trainer_state, module_file(folder, TRAINER_NAME, step))
    except BaseException:
        for path in written:
            if os.path.exists(path):
                os.remove(path)
        raise


def delete_checkpoint(folder, step, names):
    for name in list(names) + [TRAINER_NAME]:
        path = module_file(folder, name, step)
        if os.path.exists(path):
            os.remove(path)
