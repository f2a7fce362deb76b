"""Feature-extraction NeuralModules: mel, MFCC and linear spectrograms, and
batch augmentations (SpecAugment, crop/pad to a fixed length, batch
repetition, time stretch). They run on the module's device as part of the DAG."""
import collections

import numpy as np
import torch

from nemo_core import (
    AudioSignal, AxisType, LabelsType, LengthsType, MelSpectrogramType, MFCCSpectrogramType, NeuralType,
    NonTrainableNM, SpectrogramType,
)

from .parts.features import FilterbankFeatures, dct_matrix
from .parts.masks import lengths_mask
from .parts.perturb import time_stretch
from .parts.spec_augment import SpecAugment, crop_or_pad, crop_or_pad_offsets


def _window_samples(sample_rate, window_size, window_stride, n_window_size, n_window_stride):
    """Window and hop in samples; ``n_window_*`` (samples) win over the seconds."""
    size = n_window_size or int(round(window_size * sample_rate))
    stride = n_window_stride or int(round(window_stride * sample_rate))
    if size <= 0 or stride <= 0:
        raise ValueError(f"window ({size}) and stride ({stride}) must be at least one sample")
    return size, stride


class _Preprocessor(NonTrainableNM):
    """Shared ports: waveform + length in, features + frame count out."""

    _element_type = SpectrogramType

    def __init__(self, sample_rate, placement=None, name=None):
        super().__init__(placement=placement, name=name)
        self.sample_rate = sample_rate

    @property
    def input_ports(self):
        return collections.OrderedDict(
            input_signal=NeuralType(("B", "T"), AudioSignal(freq=self.sample_rate)),
            length=NeuralType(("B",), LengthsType()),
        )

    @property
    def output_ports(self):
        return collections.OrderedDict(
            processed_signal=NeuralType(("B", ("D", self.num_features), "T"), self._element_type()),
            processed_length=NeuralType(("B",), LengthsType()),
        )

    @property
    def num_features(self):
        return self.featurizer.num_features

    def frames_for_samples(self, num_samples):
        """Feature frames (LongTensor) the forward pass reports for ``num_samples`` samples,
        without computing any features."""
        return self.featurizer.get_seq_len(torch.as_tensor(num_samples).long())

    def forward(self, input_signal, length):
        with torch.autocast(device_type=input_signal.device.type, enabled=False):
            return self.featurizer(input_signal.float(), length)


class AudioToMelSpectrogramPreprocessor(_Preprocessor):
    """Log-mel filterbank features, numerically NeMo 0.x's (see ``parts/features.py``).

    ``dither`` is applied in training mode only, so inference is deterministic.
    """

    _element_type = MelSpectrogramType

    def __init__(self, sample_rate=16000, window_size=0.02, window_stride=0.01, n_window_size=None,
                 n_window_stride=None, window="hann", normalize="per_feature", n_fft=None, preemph=0.97,
                 features=64, lowfreq=0, highfreq=None, log=True, log_zero_guard_type="add",
                 log_zero_guard_value=2 ** -24, dither=1e-5, pad_to=16, frame_splicing=1, stft_conv=False,
                 pad_value=0, mag_power=2.0, placement=None, name=None):
        super().__init__(sample_rate, placement=placement, name=name)
        size, stride = _window_samples(sample_rate, window_size, window_stride, n_window_size, n_window_stride)
        self.featurizer = FilterbankFeatures(
            sample_rate=sample_rate, n_window_size=size, n_window_stride=stride, window=window,
            normalize=normalize, n_fft=n_fft, preemph=preemph, nfilt=features, lowfreq=lowfreq,
            highfreq=highfreq, log=log, log_zero_guard_type=log_zero_guard_type,
            log_zero_guard_value=log_zero_guard_value, dither=dither, pad_to=pad_to,
            frame_splicing=frame_splicing, stft_conv=stft_conv, pad_value=pad_value, mag_power=mag_power,
        )


FEAT_TYPES = ("logfbank", "fbank")


class AudioPreprocessing(AudioToMelSpectrogramPreprocessor):
    """NeMo 0.8's name for ``AudioToMelSpectrogramPreprocessor``: the same features, plus its
    ``feat_type`` argument. NeMo 0.8 accepted ``"logfbank"`` and ``"fbank"`` and computed log-mel
    features for both, and so does this; anything else is a ``ValueError``."""

    def __init__(self, sample_rate=16000, window_size=0.02, window_stride=0.01, n_window_size=None,
                 n_window_stride=None, window="hann", normalize="per_feature", n_fft=None, preemph=0.97,
                 features=64, lowfreq=0, highfreq=None, log=True, log_zero_guard_type="add",
                 log_zero_guard_value=2 ** -24, dither=1e-5, pad_to=16, frame_splicing=1, stft_conv=False,
                 pad_value=0, mag_power=2.0, feat_type="logfbank", placement=None, name=None):
        if feat_type not in FEAT_TYPES:
            raise ValueError(f"AudioPreprocessing: feat_type {feat_type!r} is not supported; use one of "
                             f"{', '.join(FEAT_TYPES)} (both give log-mel features, as in NeMo 0.8), or "
                             "AudioToMFCCPreprocessor / AudioToSpectrogramPreprocessor for other features")
        super().__init__(sample_rate=sample_rate, window_size=window_size, window_stride=window_stride,
                         n_window_size=n_window_size, n_window_stride=n_window_stride, window=window,
                         normalize=normalize, n_fft=n_fft, preemph=preemph, features=features, lowfreq=lowfreq,
                         highfreq=highfreq, log=log, log_zero_guard_type=log_zero_guard_type,
                         log_zero_guard_value=log_zero_guard_value, dither=dither, pad_to=pad_to,
                         frame_splicing=frame_splicing, stft_conv=stft_conv, pad_value=pad_value,
                         mag_power=mag_power, placement=placement, name=name)


class AudioToSpectrogramPreprocessor(_Preprocessor):
    """Log power spectrogram (n_fft // 2 + 1 bins), no mel filterbank."""

    _element_type = SpectrogramType

    def __init__(self, sample_rate=16000, window_size=0.02, window_stride=0.01, n_window_size=None,
                 n_window_stride=None, window="hann", normalize="per_feature", n_fft=None, preemph=0.97,
                 log=True, dither=1e-5, pad_to=16, stft_conv=False, placement=None, name=None):
        super().__init__(sample_rate, placement=placement, name=name)
        size, stride = _window_samples(sample_rate, window_size, window_stride, n_window_size, n_window_stride)
        self.featurizer = FilterbankFeatures(
            sample_rate=sample_rate, n_window_size=size, n_window_stride=stride, window=window,
            normalize=normalize, n_fft=n_fft, preemph=preemph, log=log, dither=dither, pad_to=pad_to,
            stft_conv=stft_conv, mel=False)


class _MFCC(torch.nn.Module):
    def __init__(self, mel, n_mfcc):
        super().__init__()
        self.mel = mel
        self.register_buffer("dct", dct_matrix(n_mfcc, mel.fb.shape[0]), persistent=False)

    def get_seq_len(self, seq_len):
        return self.mel.get_seq_len(seq_len)

    def forward(self, x, length):
        log_mel, frames = self.mel(x, length)
        mfcc = torch.matmul(log_mel.transpose(1, 2), self.dct).transpose(1, 2)
        return mfcc.masked_fill(lengths_mask(frames, mfcc.shape[-1])[:, None, :], 0.0), frames


class AudioToMFCCPreprocessor(_Preprocessor):
    """MFCCs: orthonormal DCT-II of the (un-normalised) log-mel spectrogram."""

    _element_type = MFCCSpectrogramType

    def __init__(self, sample_rate=16000, window_size=0.02, window_stride=0.01, n_window_size=None,
                 n_window_stride=None, window="hann", n_fft=None, n_mels=64, n_mfcc=64, lowfreq=0,
                 highfreq=None, preemph=0.97, dither=1e-5, pad_to=16, placement=None, name=None):
        super().__init__(sample_rate, placement=placement, name=name)
        if n_mfcc > n_mels:
            raise ValueError(f"n_mfcc ({n_mfcc}) cannot exceed n_mels ({n_mels})")
        size, stride = _window_samples(sample_rate, window_size, window_stride, n_window_size, n_window_stride)
        mel = FilterbankFeatures(sample_rate=sample_rate, n_window_size=size, n_window_stride=stride,
                                 window=window, normalize=None, n_fft=n_fft, preemph=preemph, nfilt=n_mels,
                                 lowfreq=lowfreq, highfreq=highfreq, dither=dither, pad_to=pad_to)
        self.featurizer = _MFCC(mel, n_mfcc)
        self.n_mfcc = n_mfcc

    @property
    def num_features(self):
        return self.n_mfcc


class SpectrogramAugmentation(NonTrainableNM):
    """SpecAugment + Cutout, in training mode only; the output keeps the input's type.

    ``rng``: an int seed for the mask generator; None draws one from torch's
    global RNG (so ``NeuralModuleFactory(random_seed=...)`` makes it repeatable).
    """

    def __init__(self, freq_masks=0, time_masks=0, freq_width=10, time_width=10, rect_masks=0,
                 rect_time=5, rect_freq=20, rng=None, placement=None, name=None):
        super().__init__(placement=placement, name=name)
        if rng is not None and not isinstance(rng, int):
            raise TypeError(f"rng must be an int seed or None, got {type(rng).__name__}")
        self.augment = SpecAugment(freq_masks, time_masks, freq_width, time_width, rect_masks,
                                   rect_time, rect_freq, seed=rng)

    @property
    def input_ports(self):
        return collections.OrderedDict(input_spec=NeuralType(("B", "D", "T"), SpectrogramType()))

    @property
    def output_ports(self):
        return collections.OrderedDict(augmented_spec=NeuralType(("B", "D", "T"), SpectrogramType()))

    def output_ports_for(self, inputs):
        return collections.OrderedDict(augmented_spec=inputs["input_spec"].ntype)

    def rng_state(self):
        return self.augment.generator.get_state()

    def load_rng_state(self, state):
        self.augment.generator.set_state(state)

    def forward(self, input_spec):
        return self.augment(input_spec)


def _seeded_generator(rng, owner):
    """A CPU ``torch.Generator`` seeded with ``rng`` (an int), or from torch's global RNG when None."""
    if rng is not None and (isinstance(rng, bool) or not isinstance(rng, int)):
        raise TypeError(f"{owner}: rng must be an int seed or None, got {type(rng).__name__}")
    generator = torch.Generator()
    generator.manual_seed(int(torch.randint(0, 2 ** 62, (1,)).item()) if rng is None else rng)
    return generator


def _sized_time(ntype, frames):
    """``ntype`` with its last (time) axis sized ``frames``."""
    if ntype.axes is None:
        return ntype
    last = ntype.axes[-1]
    axes = ntype.axes[:-1] + (AxisType(last.kind, frames, last.is_list),)
    return NeuralType(axes, ntype.elements_type, ntype.optional)


class CropOrPadSpectrogramAugmentation(NonTrainableNM):
    """Spectrograms cut or zero-padded to exactly ``audio_length`` frames (NeMo 0.x).

    An utterance with more valid frames is cropped: at a random start in
    training mode, centred in eval mode (so evaluation is deterministic).
    A shorter one is centred between zeros (the odd frame of padding on
    the right). Only each utterance's valid frames (``length``) are used, so
    the batch's own padding never shows up as content. ``processed_length``
    is ``audio_length`` for every utterance, as in NeMo 0.x: the model sees
    a fixed-size input. The output keeps the input's element type and
    feature size, with the time axis sized ``audio_length``.
    """

    def __init__(self, audio_length, rng=None, placement=None, name=None):
        super().__init__(placement=placement, name=name)
        if isinstance(audio_length, bool) or not isinstance(audio_length, int) or audio_length < 1:
            raise ValueError(f"CropOrPadSpectrogramAugmentation: audio_length must be a positive number of "
                             f"frames, got {audio_length!r}")
        self.audio_length = audio_length
        self.generator = _seeded_generator(rng, type(self).__name__)

    @property
    def input_ports(self):
        return collections.OrderedDict(
            input_signal=NeuralType(("B", "D", "T"), SpectrogramType()),
            length=NeuralType(("B",), LengthsType()),
        )

    @property
    def output_ports(self):
        return collections.OrderedDict(
            processed_signal=NeuralType(("B", "D", ("T", self.audio_length)), SpectrogramType()),
            processed_length=NeuralType(("B",), LengthsType()),
        )

    def output_ports_for(self, inputs):
        ports = self.output_ports
        ports["processed_signal"] = _sized_time(inputs["input_signal"].ntype, self.audio_length)
        return ports

    def rng_state(self):
        return self.generator.get_state()

    def load_rng_state(self, state):
        self.generator.set_state(state)

    def forward(self, input_signal, length):
        starts = crop_or_pad_offsets(length, self.audio_length, self.generator if self.training else None)
        out = crop_or_pad(input_signal, length, self.audio_length, starts)
        return out, torch.full_like(length, self.audio_length)


class MultiplyBatch(NonTrainableNM):
    """The batch repeated ``mult_batch`` times (NeMo 0.x): spectrograms, their lengths, the
    transcripts and theirs, copies one after another (``torch.Tensor.repeat``).

    Put an augmentation after it (``SpectrogramAugmentation``...) so each copy
    is augmented differently: a larger effective batch from one data-loading
    pass. ``out_x`` keeps ``in_x``'s exact type.
    """

    def __init__(self, mult_batch=1, placement=None, name=None):
        super().__init__(placement=placement, name=name)
        if isinstance(mult_batch, bool) or not isinstance(mult_batch, int) or mult_batch < 1:
            raise ValueError(f"MultiplyBatch: mult_batch must be a positive int, got {mult_batch!r}")
        self.mult = mult_batch

    @property
    def input_ports(self):
        return collections.OrderedDict(
            in_x=NeuralType(("B", "D", "T"), SpectrogramType()),
            in_x_len=NeuralType(("B",), LengthsType()),
            in_y=NeuralType(("B", "T"), LabelsType()),
            in_y_len=NeuralType(("B",), LengthsType()),
        )

    @property
    def output_ports(self):
        return collections.OrderedDict(
            out_x=NeuralType(("B", "D", "T"), SpectrogramType()),
            out_x_len=NeuralType(("B",), LengthsType()),
            out_y=NeuralType(("B", "T"), LabelsType()),
            out_y_len=NeuralType(("B",), LengthsType()),
        )

    def output_ports_for(self, inputs):
        ports = self.output_ports
        ports["out_x"] = inputs["in_x"].ntype
        ports["out_y"] = inputs["in_y"].ntype
        return ports

    def forward(self, in_x, in_x_len, in_y, in_y_len):
        m = self.mult
        return (in_x.repeat(m, *([1] * (in_x.dim() - 1))), in_x_len.repeat(m),
                in_y.repeat(m, *([1] * (in_y.dim() - 1))), in_y_len.repeat(m))


class TimeStretchAugmentation(NonTrainableNM):
    """Batch time stretch at constant pitch on the module's device (NeMo 0.x), training mode only.

    With ``probability`` a batch is stretched; one rate per batch, drawn from
    ``num_rates`` evenly spaced values in [``min_speed_rate``,
    ``max_speed_rate``] (``num_rates <= 0``: uniformly from the range). A
    rate r > 1 plays faster: ``round(T / r)`` samples, and each length
    becomes ``round(length / r)`` (NeMo 0.x multiplied the lengths by r,
    which mislabels the valid samples). Phase vocoder of ``n_fft`` points,
    hop ``n_fft // 4`` (``parts/perturb.py: time_stretch``, shared with the
    per-utterance ``time_stretch`` perturbation of ``perturb_config``, which
    draws a rate per utterance on the data loader's CPU workers instead).
    Identity in eval mode, like ``SpectrogramAugmentation``.
    """

    def __init__(self, sample_rate=16000, probability=1.0, min_speed_rate=0.9, max_speed_rate=1.1, num_rates=5,
                 n_fft=512, rng=None, placement=None, name=None):
        super().__init__(placement=placement, name=name)
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"TimeStretchAugmentation: probability must be in [0, 1], got {probability}")
        if not 0 < min_speed_rate <= max_speed_rate:
            raise ValueError("TimeStretchAugmentation: speed rates must satisfy 0 < min_speed_rate <= "
                             f"max_speed_rate, got {min_speed_rate}, {max_speed_rate}")
        self._sample_rate = sample_rate
        self.probability = float(probability)
        self.rates = (np.linspace(min_speed_rate, max_speed_rate, num_rates).tolist() if num_rates > 0
                      else None)
        self.min_rate, self.max_rate = float(min_speed_rate), float(max_speed_rate)
        self.n_fft = int(n_fft)
        self.generator = _seeded_generator(rng, type(self).__name__)

    @property
    def input_ports(self):
        return collections.OrderedDict(
            input_signal=NeuralType(("B", "T"), AudioSignal(freq=self._sample_rate)),
            length=NeuralType(("B",), LengthsType()),
        )

    @property
    def output_ports(self):
        return collections.OrderedDict(
            processed_signal=NeuralType(("B", "T"), AudioSignal(freq=self._sample_rate)),
            processed_length=NeuralType(("B",), LengthsType()),
        )

    def rng_state(self):
        return self.generator.get_state()

    def load_rng_state(self, state):
        self.generator.set_state(state)

    def draw_rate(self):
        """The rate for the next batch: 1.0 (untouched) with probability 1 - ``probability``."""
        draws = torch.rand(2, generator=self.generator, dtype=torch.float64).tolist()
        if draws[0] >= self.probability:
            return 1.0
        if self.rates is not None:
            return self.rates[min(int(draws[1] * len(self.rates)), len(self.rates) - 1)]
        return self.min_rate + draws[1] * (self.max_rate - self.min_rate)

    def forward(self, input_signal, length):
        if not self.training:
            return input_signal, length
        rate = self.draw_rate()
        if abs(rate - 1.0) < 1e-9:
            return input_signal, length
        with torch.no_grad():
            stretched = time_stretch(input_signal, rate, self.n_fft)
        new_length = torch.round(length.double() / rate).long().clamp(max=stretched.shape[-1])
        return stretched, new_length.to(length.dtype)
