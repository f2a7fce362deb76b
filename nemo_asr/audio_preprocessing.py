"""Feature-extraction NeuralModules: mel, MFCC and linear spectrograms, and
SpecAugment. They run on the module's device as part of the DAG."""
import collections

import torch

from nemo_core import (
    AudioSignal, LengthsType, MelSpectrogramType, MFCCSpectrogramType, NeuralType, NonTrainableNM,
    SpectrogramType,
)

from .parts.features import FilterbankFeatures, dct_matrix
from .parts.spec_augment import SpecAugment


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


AudioPreprocessing = AudioToMelSpectrogramPreprocessor


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
        invalid = torch.arange(mfcc.shape[-1], device=mfcc.device)[None, :] >= frames[:, None]
        return mfcc.masked_fill(invalid[:, None, :], 0.0), frames


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
