"""Data layers: ``AudioToTextDataLayer`` (manifests -> audio, audio length,
transcript, transcript length) and ``TranscriptDataLayer`` (manifests or text
files -> transcript, transcript length)."""
import collections
import time

import torch

from nemo_core import AudioSignal, DataLayerNM, LabelsType, LengthsType, NeuralType

from .parts.data_check import (
    DropReport, apply_policy, check_files_exist, check_headers, duration_drops, find_ctc_infeasible,
)
from .parts.dataset import (
    AudioTextDataset, CharTokenizer, TranscriptDataset, make_collate, make_text_collate, read_transcripts,
)
from .parts.manifest import ManifestError, filter_by_duration, manifest_paths, read_entries, require_entries
from .parts.perturb import AudioAugmentor


def _writes_reports():
    """True except on non-zero ranks of a distributed job (every rank checks the same manifests)."""
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()
                and torch.distributed.get_rank() != 0)


class AudioToTextDataLayer(DataLayerNM):
    """Speech + character transcripts from JSON-lines manifests (comma-separate several).

    ``perturb_config``: YAML path, dict or list (see ``parts/perturb.py``).
    ``bucketing``: order each window of ``bucket_batches`` batches by
    duration so batches hold similar lengths (less padding); the window order
    still follows the shuffled order.

    Data checks (``parts/data_check.py``): with ``check_audio`` (and
    ``load_audio``) the constructor reads every file's header, so unreadable,
    empty and missing files are found before the first step and each
    manifest duration is replaced by the file's true one (wrong ones are
    listed as ``duration_mismatch``); ``min_duration``/``max_duration`` and
    bucketing then act on true durations. ``skip_bad_files`` picks the
    policy for bad utterances: drop and list them, or (False) raise one
    ``UnusableUtterancesError`` naming them. Files with NaN/inf samples are
    only seen when loaded: skipped and listed, or an ``AudioLoadError``
    naming the manifest line. ``drop_ctc_infeasible(preprocessor, encoder)``
    removes transcripts too long for their audio. Everything dropped is
    appended to ``dropped_report`` (JSON lines) or, without it, logged.
    """

    def __init__(self, manifest_filepath, labels, batch_size, sample_rate=16000, int_values=False, bos_id=None,
                 eos_id=None, pad_id=0, min_duration=0.1, max_duration=None, normalize_transcripts=True,
                 trim_silence=False, load_audio=True, drop_last=False, shuffle=True, num_workers=0,
                 perturb_config=None, skip_bad_files=False, bucketing=False, bucket_batches=16,
                 augmentor_seed=None, check_audio=True, dropped_report=None, placement=None, name=None):
        super().__init__(batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, drop_last=drop_last,
                         placement=placement, name=name)
        self._sample_rate = sample_rate
        self.labels = list(labels)
        self._skip_bad_files = skip_bad_files
        self._report = DropReport(dropped_report, write=_writes_reports())
        entries = self._checked_entries(manifest_filepath, min_duration, max_duration, load_audio,
                                        load_audio and check_audio)
        augmentor = AudioAugmentor.from_config(perturb_config, sample_rate, seed=augmentor_seed) if perturb_config else None
        self._dataset = AudioTextDataset(
            entries, CharTokenizer(self.labels, normalize=normalize_transcripts), sample_rate,
            int_values=int_values, trim_silence=trim_silence, augmentor=augmentor, bos_id=bos_id, eos_id=eos_id,
            load_audio_data=load_audio, skip_bad_files=skip_bad_files, report=self._report)
        self._collate = make_collate(pad_id)
        if bucketing:
            self.bucket_lengths = self._dataset.durations
            self.bucket_batches = int(bucket_batches)

    def _checked_entries(self, manifest_filepath, min_duration, max_duration, load_audio, check_audio):
        """Manifest entries after the header pass (or file-existence check) and the duration filter."""
        start, since = time.perf_counter(), len(self._report.records)
        paths = self._manifests = manifest_paths(manifest_filepath)
        entries = read_entries(paths)
        checked = len(entries)
        if check_audio:
            entries, unreadable, corrected = check_headers(entries)
            self._report.add(corrected)
            apply_policy(unreadable, self._skip_bad_files, self._report)
        elif load_audio:  # before the duration filter: a missing file is reported as missing, never as "short"
            entries, missing = check_files_exist(entries)
            apply_policy(missing, self._skip_bad_files, self._report)
        entries, too_short, too_long = filter_by_duration(entries, min_duration, max_duration, paths)
        self._report.add(duration_drops(too_short, too_long, min_duration, max_duration))
        self._report.log_summary(f"{type(self).__name__} {', '.join(paths)}", checked,
                                 time.perf_counter() - start, since)
        return require_entries(entries, paths)

    def drop_ctc_infeasible(self, preprocessor, encoder):
        """Drop (and list) utterances whose transcript cannot fit the encoder's frames under CTC.

        For each utterance: samples = round(duration * sample_rate) ->
        ``preprocessor.frames_for_samples`` -> ``encoder.encoded_lengths``,
        compared with the frames CTC needs (labels + repeated pairs). Their
        loss would be infinite (or silently zero with ``zero_infinity``).
        Under ``skip_bad_files=False`` raises one ``UnusableUtterancesError``
        instead. Returns the ``DroppedUtterance`` list. Speed perturbation
        and silence trimming change lengths later; they are not accounted for.
        """
        start, since = time.perf_counter(), len(self._report.records)
        entries, tokens = self._dataset.entries, self._dataset.tokens
        samples = torch.tensor([round(e.duration * self._sample_rate) for e in entries], dtype=torch.long)
        with torch.no_grad():
            frames = encoder.encoded_lengths(preprocessor.frames_for_samples(samples))
        found = find_ctc_infeasible(entries, tokens, frames.tolist())
        dropped = [record for _, record in found]
        apply_policy(dropped, self._skip_bad_files, self._report)
        bad = {index for index, _ in found}
        self._dataset.keep([i for i in range(len(entries)) if i not in bad])
        if hasattr(self, "bucket_lengths"):
            self.bucket_lengths = self._dataset.durations
        self._report.log_summary(f"{type(self).__name__}.drop_ctc_infeasible {', '.join(self._manifests)}",
                                 len(entries), time.perf_counter() - start, since)
        require_entries(self._dataset.entries, self._manifests)
        return dropped

    def transcripts(self):
        """The kept utterances' transcripts as the model learns them: normalised, in ``labels`` characters."""
        labels = self.labels
        return ["".join(labels[t] for t in tokens if 0 <= t < len(labels)) for tokens in self._dataset.tokens]

    def rng_state(self):
        """The perturbations' generator (meaningful with ``num_workers=0``: workers hold their own copies)."""
        augmentor = self._dataset.augmentor
        return None if augmentor is None else augmentor.rng.getstate()

    def load_rng_state(self, state):
        self._dataset.augmentor.rng.setstate(_as_tuple(state))

    def describe_samples(self, indices):
        """``path (manifest:line)`` of dataset items; the train loop names the utterances of a skipped step."""
        entries = self._dataset.entries
        return [f"{entries[i].audio_filepath} ({entries[i].source})" for i in indices]

    @property
    def drop_report(self):
        """The ``DropReport`` (counts by kind, report path) of this data layer."""
        return self._report

    @property
    def output_ports(self):
        return collections.OrderedDict(
            audio_signal=NeuralType(("B", "T"), AudioSignal(freq=self._sample_rate)),
            a_sig_length=NeuralType(("B",), LengthsType()),
            transcripts=NeuralType(("B", "T"), LabelsType()),
            transcript_length=NeuralType(("B",), LengthsType()),
        )

    @property
    def dataset(self):
        return self._dataset

    @property
    def collate_fn(self):
        return self._collate

    @property
    def total_duration(self):
        return sum(self._dataset.durations)


class TranscriptDataLayer(DataLayerNM):
    """Transcripts alone, as label ids (NeMo 0.x): for language-model or decoder training.

    ``path``: one or several files (a list, or comma-separated as with
    ``manifest_filepath``). A ``.json``/``.jsonl`` file is a manifest whose
    ``text`` keys are read (audio is neither needed nor opened); any other
    file is plain text, one transcript per non-empty line. Transcripts are
    normalised and tokenised like ``AudioToTextDataLayer``'s (characters
    outside ``labels`` dropped, warned once each); ``bos_id``/``eos_id`` are
    added around each, ``pad_id`` fills the batch. Output ports are typed
    like ``AudioToTextDataLayer``'s transcript ports.
    """

    def __init__(self, path, labels, batch_size, bos_id=None, eos_id=None, pad_id=0, normalize_transcripts=True,
                 drop_last=False, shuffle=True, num_workers=0, placement=None, name=None):
        super().__init__(batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, drop_last=drop_last,
                         placement=placement, name=name)
        self.labels = list(labels)
        paths = manifest_paths(path, what="Transcript file")
        transcripts = read_transcripts(paths)
        if not transcripts:
            raise ManifestError(f"No transcripts in {', '.join(paths)}")
        self._dataset = TranscriptDataset(transcripts, CharTokenizer(self.labels, normalize=normalize_transcripts),
                                          bos_id=bos_id, eos_id=eos_id)
        self._collate = make_text_collate(0 if pad_id is None else pad_id)

    @property
    def output_ports(self):
        return collections.OrderedDict(
            texts=NeuralType(("B", "T"), LabelsType()),
            texts_length=NeuralType(("B",), LengthsType()),
        )

    @property
    def dataset(self):
        return self._dataset

    @property
    def collate_fn(self):
        return self._collate


def _as_tuple(value):
    """``random.Random`` states come back from a checkpoint as lists."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value
