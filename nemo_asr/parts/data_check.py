"""Checking training data before the first step, and listing everything dropped.

A manifest's ``duration`` is only a claim: ``check_headers`` reads every
file's header (a few hundred bytes, on threads since it is I/O bound) and
replaces each duration with the file's own, so duration filters and
bucketing act on true lengths. Nothing leaves a training set silently: each
dropped (or corrected) utterance becomes a ``DroppedUtterance`` that a
``DropReport`` appends to a JSON-lines file, or logs when no file is given.

Kinds of ``DroppedUtterance``:

- ``unreadable``: missing, a folder, undecodable, header-only, or a segment
  whose offset lies past the end of its file;
- ``non_finite_samples``: decoded samples hold NaN/inf (seen when loading);
- ``duration_mismatch``: the manifest's duration is wrong; reported, NOT
  dropped: the true duration is used from then on;
- ``too_short`` / ``too_long``: outside ``[min_duration, max_duration]``;
- ``ctc_infeasible``: the transcript needs more CTC frames than the encoder
  produces for the audio (its loss would be infinite).

Plain Python: no torch and no nemo_core here.
"""
import collections
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor

from .audio import AudioLoadError, NonFiniteSamplesError, audio_header
from .manifest import ManifestError, split_missing_files

_logger = logging.getLogger("nemo_asr")

DURATION_TOLERANCE_S = 0.1
DURATION_TOLERANCE_FRACTION = 0.01
HEADER_THREADS = 4
PREVIEW = 5
CORRECTED_KINDS = ("duration_mismatch",)


class DroppedUtterance(collections.namedtuple("DroppedUtterance", "audio_filepath source reason kind")):
    """One utterance taken out of (or, for ``duration_mismatch``, corrected in) a data set.

    ``source`` is the manifest entry's ``file:line``; ``reason`` a sentence;
    ``kind`` a short tag (see the module docstring).
    """

    __slots__ = ()

    @classmethod
    def of(cls, entry, kind, reason):
        """The record for manifest ``entry``."""
        return cls(entry.audio_filepath, entry.source, reason, kind)

    @property
    def corrected(self):
        """True when the utterance was kept with a fixed duration rather than dropped."""
        return self.kind in CORRECTED_KINDS

    def describe(self):
        """``manifest:line: reason``, naming the audio file when the reason does not."""
        if self.audio_filepath in self.reason:
            return f"{self.source}: {self.reason}"
        return f"{self.source}: {self.audio_filepath}: {self.reason}"

    def to_json(self):
        """One JSON line (no newline) with the four fields."""
        return json.dumps({"audio_filepath": self.audio_filepath, "source": self.source,
                           "kind": self.kind, "reason": self.reason}, ensure_ascii=False)


class UnusableUtterancesError(ManifestError, AudioLoadError):
    """Some utterances cannot be trained on and ``skip_bad_files`` is False.

    One error for all of them: it names how many, the first few, and the
    report file listing every one. It is both a ``ManifestError`` and an
    ``AudioLoadError`` so callers catching either keep working.
    """


# ------------------------------------------------------------------ headers
def header_duration(path):
    """Seconds of audio in ``path`` from its header, or the ``AudioLoadError`` saying why not."""
    try:
        sample_rate, frames = audio_header(path)
    except AudioLoadError as err:
        return err
    return frames / sample_rate


def read_headers(paths, num_threads=HEADER_THREADS):
    """``{path: header_duration(path)}`` for each distinct path.

    Threads hide file-system latency (network storage); each takes one
    contiguous share of the paths, since a future per file costs more than a
    header read from the page cache (see ``benchmarks/data_check.py``).
    """
    unique = list(dict.fromkeys(paths))
    if num_threads <= 1 or len(unique) < 2 * num_threads:
        return {path: header_duration(path) for path in unique}
    shares = [unique[i::num_threads] for i in range(num_threads)]
    with ThreadPoolExecutor(max_workers=num_threads) as pool:
        done = pool.map(lambda share: [(path, header_duration(path)) for path in share], shares)
        return dict(pair for share in done for pair in share)


def durations_disagree(declared, true):
    """True when a declared duration is off by more than 0.1 s + 1 % of the true one."""
    return abs(declared - true) > DURATION_TOLERANCE_S + DURATION_TOLERANCE_FRACTION * true


def checked_entry(entry, file_duration):
    """``(entry with its true duration or None, DroppedUtterance or None)`` for one header.

    Without an offset the utterance is the whole file; with one, the segment
    ``[offset, offset + duration]`` clipped to the file's end.
    """
    if isinstance(file_duration, AudioLoadError):
        return None, DroppedUtterance.of(entry, "unreadable", str(file_duration))
    usable = file_duration - entry.offset
    if usable <= 0:
        return None, DroppedUtterance.of(entry, "unreadable", (
            f"segment offset {entry.offset:g} s starts past the end of the {file_duration:.3f} s file"))
    true = min(entry.duration, usable) if entry.offset else usable
    if not durations_disagree(entry.duration, true):
        return entry._replace(duration=true), None
    reason = (f"manifest duration {entry.duration:g} s disagrees with the file's {true:.3f} s"
              f"{' after the offset' if entry.offset else ''}; using {true:.3f} s")
    return entry._replace(duration=true), DroppedUtterance.of(entry, "duration_mismatch", reason)


def check_headers(entries, num_threads=HEADER_THREADS):
    """Read every entry's audio header: ``(checked_entries, dropped, corrected)``.

    ``checked_entries`` carry the durations the files really hold;
    ``dropped`` lists unreadable ones (kind ``unreadable``); ``corrected``
    lists entries whose manifest duration was wrong (kind ``duration_mismatch``;
    they stay in ``checked_entries`` with the true duration).
    """
    headers = read_headers([e.audio_filepath for e in entries], num_threads)
    checked, dropped, corrected = [], [], []
    for entry in entries:
        fixed, record = checked_entry(entry, headers[entry.audio_filepath])
        if fixed is not None:
            checked.append(fixed)
        if record is not None:
            (corrected if record.corrected else dropped).append(record)
    return checked, dropped, corrected


def check_files_exist(entries):
    """``(entries whose audio file exists, DroppedUtterance for each missing one)``: the
    cheap check used when headers are not read."""
    kept, missing = split_missing_files(entries)
    return kept, [DroppedUtterance.of(entry, "unreadable", reason) for entry, reason in missing]


def load_failure(entry, err):
    """The ``DroppedUtterance`` for an ``AudioLoadError`` raised while loading ``entry``."""
    kind = "non_finite_samples" if isinstance(err, NonFiniteSamplesError) else "unreadable"
    return DroppedUtterance.of(entry, kind, str(err))


def duration_drops(too_short, too_long, min_duration, max_duration):
    """``DroppedUtterance`` records for the duration filter's drops."""
    return ([DroppedUtterance.of(e, "too_short", f"duration {e.duration:.3f} s is below min_duration {min_duration} s")
             for e in too_short]
            + [DroppedUtterance.of(e, "too_long", f"duration {e.duration:.3f} s is above max_duration {max_duration} s")
               for e in too_long])


# ---------------------------------------------------------------------- CTC
def ctc_required_frames(tokens):
    """Frames CTC needs to emit ``tokens``: one per label plus a blank between each repeated pair."""
    tokens = list(tokens)
    return len(tokens) + sum(1 for a, b in zip(tokens, tokens[1:]) if a == b)


def find_ctc_infeasible(entries, tokens, encoded_frames):
    """``(index, DroppedUtterance)`` for each entry whose tokens need more frames than it gets."""
    found = []
    for index, (entry, toks, frames) in enumerate(zip(entries, tokens, encoded_frames)):
        needed = ctc_required_frames(toks)
        if needed > frames:
            repeats = needed - len(toks)
            found.append((index, DroppedUtterance.of(entry, "ctc_infeasible", (
                f"transcript needs {needed} CTC frames ({len(toks)} labels + {repeats} repeated pairs) but "
                f"{entry.duration:.3f} s of audio gives the encoder only {frames} frames"))))
    return found


# ------------------------------------------------------------------- report
class DropReport:
    """Where dropped/corrected utterances go: a JSON-lines file, or WARNING log lines.

    Each record is one line ``{"audio_filepath", "source", "kind", "reason"}``
    appended with a single unbuffered ``write`` on a file opened in append
    mode, so DataLoader worker processes can append to the same file safely.
    ``write=False`` (non-zero distributed ranks) counts without writing.
    """

    def __init__(self, path=None, write=True, preview=PREVIEW):
        self.path = os.path.abspath(os.fspath(path)) if path is not None else None
        self.write = write
        self.preview = preview
        self.records = []

    def add(self, records, log_each=None, own_shard=False):
        """Keep, append to the file, and log each one when there is no file.

        ``log_each`` overrides that default (for callers that already log).
        ``own_shard``: found while loading this rank's share of the data, which
        no other rank sees, so every rank writes these.
        """
        log_each = self.path is None if log_each is None else log_each
        for record in records:
            self.records.append(record)
            if self.path is not None and (self.write or own_shard):
                self._append(record)
            if log_each:
                _logger.warning("%s utterance [%s] %s", "Corrected" if record.corrected else "Dropped",
                                record.kind, record.describe())

    def _append(self, record):
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path, "ab", buffering=0) as handle:
            handle.write((record.to_json() + "\n").encode("utf-8"))

    def counts(self, since=0):
        """``Counter`` of kinds among the records added since index ``since``."""
        return collections.Counter(r.kind for r in self.records[since:])

    def summary(self, since=0):
        """Counts by kind for the log, e.g. ``2 dropped (too_long: 1, unreadable: 1), 1 corrected (...)``."""
        counts, parts = self.counts(since), []
        for label, corrected in (("dropped", False), ("corrected", True)):
            kinds = sorted(k for k in counts if (k in CORRECTED_KINDS) == corrected)
            if kinds:
                by_kind = ", ".join(f"{k}: {counts[k]}" for k in kinds)
                parts.append(f"{sum(counts[k] for k in kinds)} {label} ({by_kind})")
        return ", ".join(parts) or "nothing dropped"

    def where(self):
        """Where the full list is, for messages."""
        if self.path is not None:
            return f"all are listed in {self.path}"
        return "each is logged above (pass dropped_report=PATH to list them in a file)"

    def log_summary(self, what, checked, seconds, since=0):
        """One line for the records since ``since``: ``what``: N checked in X s, counts by kind,
        and with a report file its path and the first few."""
        line = f"{what}: {checked} utterance(s) checked in {seconds:.2f} s; {self.summary(since)}"
        records = self.records[since:]
        if not records:
            _logger.info("%s", line)
            return
        if self.path is not None:
            first = "; ".join(r.describe() for r in records[:self.preview])
            line += f"; {self.where()}; first: {first}"
        _logger.warning("%s", line)


def apply_policy(bad, skip_bad_files, report):
    """Record ``bad`` utterances; unless ``skip_bad_files``, raise one error naming them.

    With ``skip_bad_files`` they are dropped (the caller removes them) and
    listed. Without, every one is still listed (report file or log) and a
    single ``UnusableUtterancesError`` says how many, shows the first few and
    where the rest are.
    """
    if not bad:
        return
    report.add(bad)
    if skip_bad_files:
        return
    shown = "; ".join(r.describe() for r in bad[:PREVIEW])
    more = f"; and {len(bad) - PREVIEW} more" if len(bad) > PREVIEW else ""
    kinds = ", ".join(f"{k}: {n}" for k, n in sorted(collections.Counter(r.kind for r in bad).items()))
    raise UnusableUtterancesError(
        f"{len(bad)} utterance(s) cannot be used ({kinds}): {shown}{more}; {report.where()}. "
        "Fix or remove them, or pass skip_bad_files=True to drop them.")
