"""Buffered streaming for non-causal CTC models (QuartzNet/Jasper).

The encoder looks at both sides of every frame, so audio is recognised in
overlapping windows: ``left`` context already committed, the ``chunk`` to
commit now, and ``right`` context not yet committed. Of each window only the
log-probs of its chunk are kept; the kept pieces are concatenated and
decoded as one sequence, exactly as the offline model decodes a whole
utterance (a CTC repeat across a chunk border collapses as it would offline).

All sizes are whole encoder frames (``frame_samples`` = feature hop x encoder
stride samples), and every window starts on a frame boundary, so a window's
frame ``j`` is the utterance's frame ``start + j``. Differences from offline
output come only from what a window cannot see: audio beyond its right
context and the utterance-level feature normalisation (``per_feature``
statistics are taken over the window). ``finish`` decodes the rest with the
whole remaining audio as right context.

That per-window normalisation scales whatever a window holds to unit
variance, so a window that holds only a pause turns room noise into
"speech": on the demo model, streams of two sentences 10 s apart (noise at
-60 dBFS) got 934 invented words over 100 streams. ``silence_gate_db``
marks a window ``silent`` when even its loudest frame is that many dB below
the loudest frame of the last 30 s (or below ``silence_floor_dbfs``, -65
dBFS), unless that frame is above ``silence_ceiling_dbfs`` (-45 dBFS, speech
at any usual gain); the driver commits it as blank without running the
model (``commit(window, None)``). Noise before the first speech is gated
only when it is below the floor: until then it is the loudest thing heard.

Plain Python + torch; the model is any ``infer(audio_1d) -> (frames, classes)
log-probs`` callable (sync), so the server can batch windows of many streams.
"""
import math

import torch

from .ctc_offsets import word_spans, words_from_frames


def greedy_labels(log_probs):
    """``(labels, scores)``: per-frame best label and its log-prob, as lists."""
    scores, labels = log_probs.float().max(dim=-1)
    return labels.tolist(), scores.tolist()


def collapse(frame_labels, blank, previous=None):
    """CTC greedy collapse: merge repeats, drop blanks; returns label ids.

    ``previous``: the label of the frame before ``frame_labels`` (to continue a sequence), else blank.
    """
    out, previous = [], blank if previous is None else previous
    for label in frame_labels:
        if label != previous and label != blank:
            out.append(label)
        previous = label
    return out


def words_with_confidence(frame_labels, frame_scores, labels, frame_seconds, blank=None, space=" "):
    """``[{"word", "start", "end", "confidence"}]`` from a greedy alignment.

    Words and times are ``ctc_offsets.word_offsets``'. ``confidence`` is the
    geometric mean of the greedy path's posterior over the word's frames
    (blanks between its characters included): the probability the model
    gave, per frame, to the alignment that produced the word. It is a model
    score, not a calibrated probability of the word being right.
    """
    spans = word_spans(frame_labels, labels, blank, space)
    return [dict(word, confidence=round(math.exp(sum(frame_scores[start:end]) / (end - start)), 4))
            for word, (_, start, end) in zip(words_from_frames(spans, frame_seconds), spans)]


class BufferedCTCStream:
    """One live stream: feed audio as it arrives, run the windows it asks for, commit their log-probs.

    ``frame_samples``: audio samples per encoder frame; ``chunk``, ``left``,
    ``right``: window parts in encoder frames. ``preview`` (frames, default
    ``chunk``): how often the text is refreshed. With a ``preview`` shorter
    than ``chunk``, a preview window (left context up to the newest audio,
    committing nothing) refreshes the tentative text every ``preview`` frames
    between commits, so partials come often while the merged text keeps the
    accuracy of long chunks. ``silence_gate_db`` (default: off) marks quiet
    windows ``silent`` (module docstring). The driver loop is::

        stream.feed(samples)
        for window in stream.ready_windows():
            stream.commit(window, None if window.silent else infer(window.audio))
        ...
        for window in stream.final_windows():   # after the last audio
            stream.commit(window, None if window.silent else infer(window.audio))
    """

    class Window:
        __slots__ = ("start", "keep_from", "keep_to", "audio", "final", "silent")

        def __init__(self, start, keep_from, keep_to, audio, final):
            self.start, self.keep_from, self.keep_to, self.audio, self.final = start, keep_from, keep_to, audio, final
            self.silent = False  # set by the stream's silence gate: commit as blank, do not run the model

        def __repr__(self):
            return f"Window(start={self.start}, keep=[{self.keep_from}, {self.keep_to}), samples={len(self.audio)})"

    def __init__(self, frame_samples, chunk, left, right, blank, preview=None, silence_gate_db=None,
                 silence_floor_dbfs=-65.0, silence_ceiling_dbfs=-45.0, silence_memory_s=30.0, sample_rate=16000):
        preview = chunk if preview is None else preview
        if min(chunk, frame_samples, preview) < 1 or min(left, right) < 0:
            raise ValueError(f"chunk, preview and frame_samples must be >= 1 and contexts >= 0, got chunk={chunk}, "
                             f"preview={preview}, frame_samples={frame_samples}, left={left}, right={right}")
        if silence_gate_db is not None and silence_gate_db <= 0:
            raise ValueError(f"silence_gate_db must be positive (None turns the gate off), got {silence_gate_db}")
        self.silence_gate_db = silence_gate_db
        if silence_gate_db is not None:  # the gate's levels as RMS amplitudes, derived once
            self._gate_factor = 10 ** (-silence_gate_db / 20)
            self._floor_rms, self._ceiling_rms = 10 ** (silence_floor_dbfs / 20), 10 ** (silence_ceiling_dbfs / 20)
        self._memory_samples = int(silence_memory_s * sample_rate)
        self._loudest = []  # (end sample, RMS of its loudest frame) per recent window: the gate's reference
        self.frame_samples, self.chunk, self.left, self.right, self.blank = frame_samples, chunk, left, right, blank
        self.preview = min(preview, chunk)
        self._audio = torch.zeros(0)
        self._audio_start = 0  # utterance sample index of self._audio[0]
        self.samples = 0  # audio received so far
        self.labels, self.scores = [], []  # per committed frame
        self.tentative = []  # best labels of the newest window's uncommitted frames (for partials)
        self._previewed = 0  # samples seen by the last window (commit or preview) that refreshed the text
        self._ids, self._last = [], blank  # collapsed label ids of the committed frames, and the last frame's label
        self.finished = False

    @property
    def committed(self):
        """Encoder frames committed so far."""
        return len(self.labels)

    def feed(self, samples):
        """Append mono float samples (1-D tensor/array) at the model's sample rate."""
        if self.finished:
            raise RuntimeError("stream already finished")
        samples = torch.as_tensor(samples, dtype=torch.float32).reshape(-1)
        self._audio = torch.cat([self._audio, samples])
        self.samples += samples.numel()

    def _window(self, end_frame, final):
        start = max(0, self.committed - self.left)
        first_sample, last_sample = start * self.frame_samples, min(self.samples, end_frame * self.frame_samples)
        audio = self._audio[first_sample - self._audio_start: last_sample - self._audio_start]
        keep_to = (self.committed + self.chunk) if not final else None
        return self.Window(start, self.committed, keep_to, audio, final)

    def _gated(self, windows):
        """``windows``, each marked ``silent`` when the gate is on and even its loudest frame (RMS over one
        encoder frame of audio) is ``silence_gate_db`` below the loudest frame of the last ``silence_memory_s``
        of the stream (so one click does not raise the bar for good), or below ``silence_floor_dbfs``. A frame
        above ``silence_ceiling_dbfs`` is never quiet enough: a window with any speech in it runs."""
        for window in windows:
            if self.silence_gate_db is not None and len(window.audio):
                audio = window.audio.double()
                audio = torch.nn.functional.pad(audio, (0, -len(audio) % self.frame_samples))
                loudest = float(audio.view(-1, self.frame_samples).square().mean(dim=1).sqrt().max())
                end = window.start * self.frame_samples + len(window.audio)
                self._loudest = [(e, r) for e, r in self._loudest if e > end - self._memory_samples]
                self._loudest.append((end, loudest))
                reference = max(r for _, r in self._loudest)
                threshold = min(reference * self._gate_factor, self._ceiling_rms)
                window.silent = loudest < max(threshold, self._floor_rms)
            yield window

    def ready_windows(self):
        """Windows whose audio has fully arrived (call ``commit`` on each, in order).

        The first window waits for a whole buffer (``left + chunk + right``) and
        commits all but its right context, so no committed frame was seen with
        less audio around it than later ones. Until then, every ``preview`` frames
        of new audio give a preview window over all audio so far, which commits
        nothing and only refreshes the tentative text. After it, commit windows
        come every ``chunk``, and (with ``preview < chunk``) preview windows from
        the left context to the newest audio fill the gaps every ``preview``.
        """
        return self._gated(self._ready_windows())

    def _ready_windows(self):
        buffer = self.left + self.chunk + self.right
        due = self.samples - self._previewed >= self.preview * self.frame_samples
        if self.committed == 0:
            if self.samples >= buffer * self.frame_samples:
                self._previewed = buffer * self.frame_samples
                yield self.Window(0, 0, self.left + self.chunk, self._audio[: buffer * self.frame_samples], False)
            elif due:
                self._previewed = self.samples
                yield self.Window(0, 0, 0, self._audio[: self.samples], False)
            if self.committed == 0:
                return
        while (self.committed + self.chunk + self.right) * self.frame_samples <= self.samples:
            window = self._window(self.committed + self.chunk + self.right, final=False)
            self._previewed = (window.start * self.frame_samples) + len(window.audio)
            yield window
        if self.preview < self.chunk and self.samples - self._previewed >= self.preview * self.frame_samples:
            preview = self._window(-(-self.samples // self.frame_samples), final=False)
            preview.keep_to = self.committed  # commits nothing: only the tentative text
            self._previewed = self.samples
            yield preview

    def final_windows(self):
        """After the last audio: the windows that commit everything left (the last has no right context)."""
        self.finished = True
        return self._gated(self._final_windows())

    def _final_windows(self):
        total = -(-self.samples // self.frame_samples)
        buffer = self.left + self.chunk + self.right
        while self.committed < total:
            if self.committed == 0 and total > buffer:  # the caller skipped ready_windows
                yield self.Window(0, 0, self.left + self.chunk, self._audio[: buffer * self.frame_samples], False)
                continue
            end = self.committed + self.chunk + self.right
            yield self._window(min(end, total), final=end >= total)
            if end >= total:
                break

    def commit(self, window, log_probs):
        """Keep ``log_probs`` (window frames, classes) of the window's chunk; None: the window is blank
        (a ``silent`` one, whose model call was skipped)."""
        if window.keep_from != self.committed:
            raise RuntimeError(f"windows must be committed in order: expected frame {self.committed}, "
                               f"got {window.keep_from}")
        offset = window.keep_from - window.start
        if log_probs is None:
            frames = -(-len(window.audio) // self.frame_samples)
            labels, scores = [self.blank] * frames, [0.0] * frames
        else:
            labels, scores = greedy_labels(log_probs)
        keep_to = len(labels) if window.keep_to is None else window.keep_to - window.start
        kept = labels[offset:keep_to]
        self.labels.extend(kept)
        self.scores.extend(scores[offset:keep_to])
        self._ids += collapse(kept, self.blank, self._last)  # the text grows with the commits: O(new frames)
        if kept:
            self._last = kept[-1]
        self.tentative = labels[keep_to:]
        drop = max(0, (self.committed - self.left) * self.frame_samples - self._audio_start)
        if drop:  # audio older than any future window's left context is not needed again
            self._audio = self._audio[drop:]
            self._audio_start += drop

    def text(self, labels, tentative=False):
        """Greedy text of the committed frames (plus the newest window's right context with ``tentative``)."""
        ids = self._ids + (collapse(self.tentative, self.blank, self._last) if tentative else [])
        return "".join(labels[i] for i in ids)
