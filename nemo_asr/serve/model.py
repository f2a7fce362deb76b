"""The model a server holds: an inference runner plus its labels, frame timing and decoders."""
import time

import numpy as np
import torch

from ..parts.streaming import BufferedCTCStream, collapse, greedy_labels, words_with_confidence



class ServingModel:
    """``infer_batch`` runs a list of mono waveforms as one padded batch; ``decode`` turns log-probs into results.

    ``runner`` is an ``InferenceRunner`` (PyTorch, TorchScript or ONNX Runtime
    over the whole acoustic pipeline); ``frame_samples`` is the number of audio
    samples per encoder frame (feature hop x encoder stride).
    """

    def __init__(self, runner, labels, sample_rate, frame_samples, name="model", lm_decoder=None, min_samples=512):
        self.runner, self.labels, self.sample_rate = runner, list(labels), int(sample_rate)
        self.min_samples = int(min_samples)  # the STFT needs this many samples in the batch tensor
        self.frame_samples, self.name, self.lm_decoder = int(frame_samples), name, lm_decoder
        self.blank = len(self.labels)
        self.frame_seconds = self.frame_samples / self.sample_rate

    @classmethod
    def from_recognizer(cls, recognizer, runner, name="model", lm_decoder=None):
        hop = recognizer.preprocessor.featurizer.hop_length
        return cls(runner, recognizer.labels, recognizer.sample_rate, hop * recognizer.encoder.total_stride,
                   name=name, lm_decoder=lm_decoder, min_samples=recognizer.preprocessor.featurizer.n_fft)

    def infer_batch(self, waveforms):
        """Per-waveform log-probs ``(frames, classes)`` (float32, valid frames only)."""
        lengths = torch.tensor([len(w) for w in waveforms], dtype=torch.long)
        batch = torch.zeros(len(waveforms), max(self.min_samples, int(lengths.max())))  # short audio: zero tail
        for i, wave in enumerate(waveforms):
            batch[i, : len(wave)] = torch.as_tensor(wave, dtype=torch.float32)
        lengths = lengths.clamp(min=1)
        log_probs, encoded_lengths = self.runner(batch, lengths)
        return [log_probs[i, : int(encoded_lengths[i])].float() for i in range(len(waveforms))]

    def decode(self, log_probs, use_lm=False):
        """``{"text", "words"}`` for one utterance's log-probs; ``use_lm``: beam search with the LM."""
        if use_lm:
            if self.lm_decoder is None:
                raise ValueError("this server has no language model (start it with --lm_path)")
            return self.lm_decoder(log_probs, self.frame_seconds)
        labels, scores = greedy_labels(log_probs)
        text = "".join(self.labels[i] for i in collapse(labels, self.blank))
        return {"text": text, "words": words_with_confidence(labels, scores, self.labels, self.frame_seconds,
                                                             blank=self.blank)}

    def new_stream(self, chunk_s, left_s, right_s, partial_s=None, silence_gate_db=None):
        """A ``BufferedCTCStream`` with window parts (and the ``partial_s`` text refresh; default: every chunk)
        rounded to whole encoder frames; ``silence_gate_db``: its silence gate (default: off)."""
        frames = lambda seconds: max(0, round(seconds / self.frame_seconds))  # noqa: E731
        preview = None if partial_s is None else max(1, frames(partial_s))
        return BufferedCTCStream(self.frame_samples, max(1, frames(chunk_s)), frames(left_s), frames(right_s),
                                 self.blank, preview=preview, silence_gate_db=silence_gate_db,
                                 sample_rate=self.sample_rate)

    def stream_result(self, stream):
        """``{"text", "words"}`` of everything a stream committed."""
        text = stream.text(self.labels)
        return {"text": text, "words": words_with_confidence(stream.labels, stream.scores, self.labels,
                                                             self.frame_seconds, blank=self.blank)}

    def warm_up(self, seconds=(1.0, 4.0)):
        """Run a few batches so the first request does not pay for lazy initialisation; returns seconds taken."""
        started = time.perf_counter()
        rng = np.random.default_rng(0)
        for duration in seconds:
            self.infer_batch([rng.standard_normal(int(duration * self.sample_rate)).astype(np.float32) * 0.01] * 2)
        return time.perf_counter() - started
