"""Datasets of (audio, transcript tokens) from manifest entries and of transcripts
alone (manifests or text files), and their collates."""
import logging

import numpy as np
import torch

from .audio import AudioLoadError, load_audio
from .cleaners import clean_text
from .data_check import load_failure
from .manifest import ManifestError, decode_manifest_line, iter_manifest_rows, open_manifest_file

_logger = logging.getLogger("nemo_asr")


class CharTokenizer:
    """Characters -> label ids; unknown characters are dropped, warned once each."""

    def __init__(self, labels, normalize=True):
        self.labels = list(labels)
        self.index = {c: i for i, c in enumerate(self.labels)}
        self.normalize = normalize
        self._warned = set()

    def __call__(self, text):
        if self.normalize:
            text = clean_text(text, keep_characters="".join(c for c in self.labels if not c.isalnum() and c != " "))
        ids = []
        for char in text:
            index = self.index.get(char)
            if index is None:
                if char not in self._warned:
                    self._warned.add(char)
                    _logger.warning("Character %r is not in the labels and is dropped from transcripts "
                                    "(warned once per character)", char)
                continue
            ids.append(index)
        return ids


class AudioTextDataset(torch.utils.data.Dataset):
    """(audio, length, tokens, length) per manifest entry.

    A file that fails to load (undecodable, NaN/inf samples) raises naming the
    manifest line, or with ``skip_bad_files`` is skipped (``None``; the collate
    drops it), warned about and appended to ``report`` (a ``DropReport``).
    """

    def __init__(self, entries, tokenizer, sample_rate, int_values=False, trim_silence=False,
                 augmentor=None, bos_id=None, eos_id=None, load_audio_data=True, skip_bad_files=False,
                 report=None):
        self.entries = entries
        self.tokenizer = tokenizer
        self.sample_rate = sample_rate
        self.int_values, self.trim_silence = int_values, trim_silence
        self.augmentor = augmentor
        self.bos_id, self.eos_id = bos_id, eos_id
        self.load_audio_data = load_audio_data
        self.skip_bad_files = skip_bad_files
        self.report = report
        self.tokens = [self._tokens(e.text) for e in entries]

    def keep(self, indices):
        """Keep only the utterances at ``indices`` (in that order)."""
        self.entries = [self.entries[i] for i in indices]
        self.tokens = [self.tokens[i] for i in indices]

    def _tokens(self, text):
        ids = self.tokenizer(text)
        if self.bos_id is not None:
            ids = [self.bos_id] + ids
        if self.eos_id is not None:
            ids = ids + [self.eos_id]
        return ids

    def __len__(self):
        return len(self.entries)

    @property
    def durations(self):
        return [e.duration for e in self.entries]

    def __getitem__(self, index):
        entry = self.entries[index]
        tokens = torch.tensor(self.tokens[index], dtype=torch.long)
        if not self.load_audio_data:
            return torch.zeros(0), torch.tensor(0), tokens, torch.tensor(len(tokens))
        try:
            samples = load_audio(entry.audio_filepath, self.sample_rate, offset=entry.offset,
                                 duration=entry.duration if entry.offset else 0.0,
                                 int_values=self.int_values, trim=self.trim_silence)
        except AudioLoadError as err:
            if not self.skip_bad_files:
                raise type(err)(f"{err} (manifest {entry.source})") from err
            _logger.warning("skip_bad_files: %s (manifest %s) skipped", err, entry.source)
            if self.report is not None:
                self.report.add([load_failure(entry, err)], log_each=False, own_shard=True)
            return None
        if self.augmentor:
            samples = self.augmentor(samples)
        audio = torch.from_numpy(np.ascontiguousarray(samples))
        return audio, torch.tensor(len(audio)), tokens, torch.tensor(len(tokens))


def make_collate(pad_id=0):
    """Pad audio with zeros and tokens with ``pad_id``; drops skipped (None) items."""

    def collate(batch):
        batch = [item for item in batch if item is not None]
        if not batch:
            raise AudioLoadError("Every file in this batch was unreadable (skip_bad_files)")
        audio_lens = torch.stack([item[1] for item in batch])
        token_lens = torch.stack([item[3] for item in batch])
        audio = torch.zeros(len(batch), max(int(audio_lens.max()), 1))
        tokens = torch.full((len(batch), max(int(token_lens.max()), 1)), pad_id, dtype=torch.long)
        for i, (samples, a_len, toks, t_len) in enumerate(batch):
            audio[i, : int(a_len)] = samples
            tokens[i, : int(t_len)] = toks
        return audio, audio_lens, tokens, token_lens

    return collate


def read_transcripts(paths):
    """``[(where, text)]`` from each path in order: a ``.json``/``.jsonl`` file is a manifest
    (its ``text`` key; other keys are not needed), anything else plain text with one
    transcript per non-empty line. UTF-8 (a byte-order mark is accepted); errors name file:line."""
    found = []
    for path in paths:
        if path.lower().endswith((".json", ".jsonl")):
            for where, row in iter_manifest_rows(path):
                if "text" not in row:
                    raise ManifestError(f"{where}: missing key text (a transcript manifest needs it)")
                if not isinstance(row["text"], str):
                    raise ManifestError(f"{where}: text must be a string, got {type(row['text']).__name__}")
                found.append((where, row["text"]))
            continue
        with open_manifest_file(path, "Transcript file") as handle:
            for number, raw in enumerate(handle, 1):
                where = f"{path}:{number}"
                line = decode_manifest_line(raw, where, path, first=number == 1).strip()
                if line:
                    found.append((where, line))
    return found


class TranscriptDataset(torch.utils.data.Dataset):
    """(tokens, length) per transcript; ``sources`` says where each came from (file:line)."""

    def __init__(self, transcripts, tokenizer, bos_id=None, eos_id=None):
        self.sources = [where for where, _ in transcripts]
        self.texts = [text for _, text in transcripts]
        extra_front = [] if bos_id is None else [bos_id]
        extra_back = [] if eos_id is None else [eos_id]
        self.tokens = [extra_front + tokenizer(text) + extra_back for text in self.texts]

    def __len__(self):
        return len(self.tokens)

    def __getitem__(self, index):
        tokens = torch.tensor(self.tokens[index], dtype=torch.long)
        return tokens, torch.tensor(len(tokens))


def make_text_collate(pad_id=0):
    """Pad token sequences with ``pad_id`` to the batch's longest: ``(texts (B, T), lengths (B,))``."""

    def collate(batch):
        lengths = torch.stack([length for _, length in batch])
        texts = torch.full((len(batch), max(int(lengths.max()), 1)), pad_id, dtype=torch.long)
        for i, (tokens, length) in enumerate(batch):
            texts[i, : int(length)] = tokens
        return texts, lengths

    return collate
