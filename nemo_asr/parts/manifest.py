"""Manifests: JSON lines ``{"audio_filepath", "duration", "text"[, "offset"]}``, or
deepspeech.pytorch's CSV ``/path/audio.wav,/path/text.txt`` (one pair per line).

A manifest is read as CSV when its name ends in ``.csv``; one ending in
``.json``/``.jsonl`` is always JSON lines; any other name is sniffed on its
first non-empty line: JSON lines when it starts with ``{``, CSV when it holds
a comma, else JSON lines (whose error then names the line). A CSV row's
fields follow the ``csv`` module (quote a path that holds a comma); relative
paths resolve against the CSV's folder, like a JSON manifest's; the
transcript is the text file's content (UTF-8, line breaks become spaces);
the duration is read from the audio file's header (an unreadable or missing
file gets 0 and is reported by the data layer's checks, naming the CSV line).
Every row becomes the JSON row it stands for, so everything that takes a
manifest takes either format.

Errors name the manifest and line. Files are UTF-8 (a leading byte-order
mark is accepted); another encoding is an error naming the line and saying
to re-encode. ``manifest_filepath`` is a path, several joined by commas
(NeMo 0.x), or a list; an existing file whose name holds a comma is one
manifest. Missing, folder and unreadable (permission) paths are each said
as such. Relative audio paths resolve against the manifest's folder.
Filtering by duration is counted and reported once.
"""
import collections
import csv
import json
import logging
import math
import os
import stat

_logger = logging.getLogger("nemo_asr")

ManifestEntry = collections.namedtuple("ManifestEntry", "audio_filepath duration text offset source")


class ManifestError(ValueError):
    """A manifest line is malformed; the message starts with ``file:line``."""

    user_error = True  # one line on the command line (nemo_core.utils.cli)


_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def open_manifest_file(path, what="Manifest"):
    """``path`` opened for reading bytes; missing, a folder or unreadable is a ``ManifestError`` saying which."""
    try:
        info = os.stat(path)
    except PermissionError as err:
        raise ManifestError(f"{what} {path}: permission denied ({err.strerror}) while looking it up; a folder "
                            "on its path cannot be searched: give read and search (x) access to it") from err
    except (FileNotFoundError, NotADirectoryError) as err:
        raise ManifestError(f"{what} {path} does not exist") from err
    except OSError as err:
        raise ManifestError(f"{what} {path} cannot be read: {err.strerror or err}") from err
    if stat.S_ISDIR(info.st_mode):
        raise ManifestError(f"{what} {path} is a folder, not a manifest file; give the file inside it")
    try:
        return open(path, "rb")
    except PermissionError as err:
        raise ManifestError(f"{what} {path}: permission denied; make it readable (chmod a+r {path}) or "
                            "run as a user who may read it") from err
    except OSError as err:
        raise ManifestError(f"{what} {path} cannot be read: {err.strerror or err}") from err


def decode_manifest_line(raw, where, path, first):
    """One manifest line as text: UTF-8, a leading byte-order mark (utf-8-sig) dropped."""
    if first and raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM):]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        if first and raw.startswith(_UTF16_BOMS):
            raise ManifestError(f"{where}: the file is UTF-16 text; re-encode it as UTF-8 "
                                f"(e.g. iconv -f utf-16 -t utf-8 {path} > fixed.json)") from err
        raise ManifestError(f"{where}: not UTF-8 text (byte 0x{raw[err.start]:02x} at byte {err.start + 1} of "
                            f"the line); re-encode the file as UTF-8 (e.g. from Latin-1: "
                            f"iconv -f latin1 -t utf-8 {path} > fixed.json)") from err


def iter_manifest_rows(path):
    """``(where, row)`` for each non-empty line of ``path``; ``where`` is ``file:line``.

    JSON lines or CSV (see the module docstring); a CSV row comes as the JSON
    row it stands for (absolute ``audio_filepath``, ``text``, ``duration``).
    The file is UTF-8 (a leading byte-order mark is accepted); anything else
    is a ``ManifestError`` naming the line and saying to re-encode it.
    """
    parse = None
    with open_manifest_file(path) as handle:
        for number, raw in enumerate(handle, 1):
            where = f"{path}:{number}"
            line = decode_manifest_line(raw, where, path, first=number == 1)
            if not line.strip():
                continue
            if parse is None:
                parse = _csv_row if is_csv_manifest(path, line) else _json_row
            yield where, parse(line, where, path)


def is_csv_manifest(path, first_line):
    """Whether ``path`` (whose first non-empty line is ``first_line``) is a CSV manifest."""
    name = os.fspath(path).lower()
    if name.endswith((".csv", ".json", ".jsonl")):
        return name.endswith(".csv")
    text = first_line.strip()
    return not text.startswith("{") and "," in text


def _json_row(line, where, path):
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise ManifestError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from err
    if not isinstance(row, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(row).__name__}")
    return row


def _csv_row(line, where, path):
    """The JSON row of a CSV line ``audio,transcript file``: paths made absolute, text read, duration
    from the audio header (0 when it cannot be read; the data layer reports the file)."""
    from .audio import AudioLoadError, audio_header

    fields = [f.strip() for f in next(csv.reader([line.rstrip("\r\n")]))]
    if len(fields) != 2 or not all(fields):
        raise ManifestError(f"{where}: expected two comma-separated paths (audio file, transcript file), got "
                            f"{len(fields)} field(s): {line.strip()!r}")
    folder = os.path.dirname(os.path.abspath(path))
    audio, transcript = (os.path.normpath(os.path.join(folder, f)) for f in fields)
    try:
        with open(transcript, encoding="utf-8-sig") as handle:
            text = " ".join(handle.read().split())
    except FileNotFoundError as err:
        raise ManifestError(f"{where}: transcript file {transcript} does not exist") from err
    except IsADirectoryError as err:
        raise ManifestError(f"{where}: transcript file {transcript} is a folder") from err
    except UnicodeDecodeError as err:
        raise ManifestError(f"{where}: transcript file {transcript} is not UTF-8 text (byte {err.start}); "
                            f"re-encode it as UTF-8") from err
    except OSError as err:
        raise ManifestError(f"{where}: transcript file {transcript} cannot be read: {err.strerror or err}") from err
    try:
        sample_rate, frames = audio_header(audio)
        duration = frames / sample_rate
    except AudioLoadError:
        duration = 0.0
    return {"audio_filepath": audio, "duration": duration, "text": text}


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


def manifest_paths(manifest_filepath, what="Manifest"):
    """The manifest paths named by ``manifest_filepath``.

    A list or tuple is taken as the paths themselves. A string (or path) that
    names an existing file is that one file, even with commas in its name;
    otherwise it is split at commas (NeMo 0.x's several manifests). Each piece
    must exist: a missing one, or a folder, is a ``ManifestError`` naming it.
    ``what`` names the kind of file in messages.
    """
    split_from = None
    if isinstance(manifest_filepath, (list, tuple)):
        paths = [os.fspath(p) if isinstance(p, (str, os.PathLike)) else None for p in manifest_filepath]
    elif manifest_filepath is None:
        paths = []
    else:
        text = os.fspath(manifest_filepath) if isinstance(manifest_filepath, os.PathLike) else str(manifest_filepath)
        if os.path.isfile(text):
            paths = [text]
        else:
            paths = [p.strip() for p in text.split(",") if p.strip()]
            split_from = text if len(paths) > 1 else None
    if not paths or not all(isinstance(p, str) and p for p in paths):
        raise ManifestError(f"No {what.lower()} given (got {manifest_filepath!r}); pass a file path, several "
                            "separated by commas, or a list of paths")
    for path in paths:
        try:
            open_manifest_file(path, what).close()
        except ManifestError as err:
            if split_from is None:
                raise
            raise ManifestError(f"{err} (one of the comma-separated {what.lower()}s in {split_from!r}; a "
                                "file whose name holds a comma is used whole only when it exists)") from err.__cause__
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
