"""JSON-lines manifests: ``{"audio_filepath", "duration", "text"[, "offset"]}``.

Errors name the manifest and line. Relative audio paths resolve against the
manifest's folder. Filtering by duration is counted and reported once.
"""
import collections
import json
import logging
import math
import os

_logger = logging.getLogger("nemo_asr")

ManifestEntry = collections.namedtuple("ManifestEntry", "audio_filepath duration text offset source")


class ManifestError(ValueError):
    """A manifest line is malformed; the message starts with ``file:line``."""

    user_error = True  # one line on the command line (nemo_core.utils.cli)


def iter_manifest_rows(path):
    """``(where, row)`` for each non-empty line of ``path``; ``where`` is ``file:line``."""
    if not os.path.isfile(path):
        raise ManifestError(f"Manifest {path} does not exist")
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ManifestError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from err
            if not isinstance(row, dict):
                raise ManifestError(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield where, row


def check_row(item, where, folder, require_text=True):
    """A validated ``ManifestEntry`` (audio path made absolute) from one manifest row."""
    required = ("audio_filepath", "duration") + (("text",) if require_text else ())
    missing = [k for k in required if k not in item]
    if missing:
        raise ManifestError(f"{where}: missing key(s) {', '.join(missing)}")
    audio = item["audio_filepath"]
    if not isinstance(audio, str) or not audio:
        raise ManifestError(f"{where}: audio_filepath must be a non-empty string")
    duration, offset = item["duration"], item.get("offset", 0.0)
    for key, value in (("duration", duration), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ManifestError(f"{where}: {key} must be a non-negative number, got {value!r}")
        if not math.isfinite(value):  # JSON's NaN/Infinity (NaN < 0 is False)
            raise ManifestError(f"{where}: {key} must be a finite number, got {value!r}")
    text = item.get("text", "")
    if not isinstance(text, str):
        raise ManifestError(f"{where}: text must be a string, got {type(text).__name__}")
    if not os.path.isabs(audio):
        audio = os.path.normpath(os.path.join(folder, audio))
    return ManifestEntry(audio, float(duration), text, float(offset), where)


def manifest_paths(manifest_filepath):
    """The manifest paths in a comma-separated ``manifest_filepath``."""
    paths = [p.strip() for p in str(manifest_filepath).split(",") if p.strip()]
    if not paths:
        raise ManifestError("No manifest given")
    return paths


def read_entries(paths, require_text=True):
    """Every row of ``paths`` as a validated ``ManifestEntry``, in order, nothing filtered."""
    entries = []
    for path in paths:
        folder = os.path.dirname(os.path.abspath(path))
        entries.extend(check_row(row, where, folder, require_text) for where, row in iter_manifest_rows(path))
    return entries


def split_by_duration(entries, min_duration=None, max_duration=None):
    """``(kept, too_short, too_long)``: entries inside / below / above ``[min_duration, max_duration]``."""
    kept, too_short, too_long = [], [], []
    for entry in entries:
        if min_duration is not None and entry.duration < min_duration:
            too_short.append(entry)
        elif max_duration is not None and entry.duration > max_duration:
            too_long.append(entry)
        else:
            kept.append(entry)
    return kept, too_short, too_long


def filter_by_duration(entries, min_duration, max_duration, paths):
    """``split_by_duration`` plus one warning counting what the filter dropped."""
    kept, too_short, too_long = split_by_duration(entries, min_duration, max_duration)
    if too_short or too_long:
        hours = sum(e.duration for e in too_short + too_long) / 3600
        _logger.warning("Duration filter [%s, %s] s dropped %d utterance(s) (%d short, %d long; %.2f h) from %s",
                        min_duration, max_duration, len(too_short) + len(too_long), len(too_short),
                        len(too_long), hours, ", ".join(paths))
    return kept, too_short, too_long


def split_missing_files(entries):
    """``(entries whose audio file exists, [(entry, reason)] for the others)``."""
    kept, missing = [], []
    for entry in entries:
        if os.path.isfile(entry.audio_filepath):
            kept.append(entry)
        else:
            missing.append((entry, f"audio file {entry.audio_filepath} does not exist"))
    return kept, missing


def require_entries(entries, paths):
    """``entries``, or a ``ManifestError`` when filtering left none."""
    if not entries:
        raise ManifestError(f"No utterances left in {', '.join(paths)} after filtering")
    return entries


def read_manifests(manifest_filepath, min_duration=None, max_duration=None, require_text=True,
                   check_files=True, skip_bad_files=False):
    """Entries of one or several (comma-separated) manifests, in order.

    Durations are the manifests' own (``AudioToTextDataLayer`` checks them
    against the files' headers; see ``parts/data_check.py``).
    """
    paths = manifest_paths(manifest_filepath)
    entries, _, _ = filter_by_duration(read_entries(paths, require_text), min_duration, max_duration, paths)
    if check_files:
        entries = _drop_missing_files(entries, skip_bad_files)
    return require_entries(entries, paths)


def _drop_missing_files(entries, skip_bad_files):
    """Entries whose audio exists; a missing one raises, or is skipped with one warning."""
    kept, missing = split_missing_files(entries)
    if missing and not skip_bad_files:
        entry, reason = missing[0]
        raise ManifestError(f"{entry.source}: {reason}")
    if missing:
        _logger.warning("skip_bad_files: skipped %d missing audio file(s), first: %s", len(missing),
                        missing[0][0].audio_filepath)
    return kept
