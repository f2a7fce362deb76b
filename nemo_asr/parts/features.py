"""Audio features as plain torch functions and modules (no NeMo types here).

``filterbank_features`` reproduces NeMo 0.x's log-mel front end exactly:
pre-emphasis, centred STFT with reflect padding and a symmetric window,
power spectrum, Slaney mel filterbank (librosa's default), log with a guard,
per-feature normalisation over valid frames, masking and padding in time.
Like torchaudio's ``functional`` under its ``transforms``, it takes its whole
configuration as arguments; ``FilterbankFeatures`` holds one configuration
(window and filterbank as buffers) and calls it. ``ConvSTFT`` computes the
same STFT as a strided convolution with cosine/sine kernels, which exports
to ONNX: the exported pipeline passes it (and ``pad_to=0``) as arguments.
"""
import math

import torch

from .masks import lengths_mask

NORMALIZE_EPS = 1e-5


# ----------------------------------------------------------------- mel scale
def hz_to_mel_slaney(freq):
    """Slaney's auditory-toolbox mel scale: linear below 1 kHz, log above."""
    freq = torch.as_tensor(freq, dtype=torch.float64)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    linear = freq / f_sp
    log_part = min_log_mel + torch.log(torch.clamp(freq, min=1e-10) / min_log_hz) / logstep
    return torch.where(freq >= min_log_hz, log_part, linear)


def mel_to_hz_slaney(mels):
    mels = torch.as_tensor(mels, dtype=torch.float64)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    linear = f_sp * mels
    log_part = min_log_hz * torch.exp(logstep * (mels - min_log_mel))
    return torch.where(mels >= min_log_mel, log_part, linear)


def mel_filterbank(sample_rate, n_fft, n_mels, fmin=0.0, fmax=None):
    """(n_mels, n_fft // 2 + 1) triangular filters, Slaney-normalised (area ~ 1)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mel_points = torch.linspace(hz_to_mel_slaney(fmin), hz_to_mel_slaney(fmax), n_mels + 2, dtype=torch.float64)
    hz_points = mel_to_hz_slaney(mel_points)
    widths = hz_points[1:] - hz_points[:-1]
    ramps = hz_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)
    weights *= (2.0 / (hz_points[2:] - hz_points[:-2]))[:, None]
    return weights.float()


def dct_matrix(n_mfcc, n_mels):
    """Orthonormal DCT-II as a (n_mels, n_mfcc) matrix."""
    n = torch.arange(n_mels, dtype=torch.float64)
    k = torch.arange(n_mfcc, dtype=torch.float64)[:, None]
    dct = torch.cos(math.pi / n_mels * (n + 0.5) * k) * math.sqrt(2.0 / n_mels)
    dct[0] *= 1.0 / math.sqrt(2.0)
    return dct.t().float()


# ---------------------------------------------------------------------- STFT
WINDOWS = {
    "hann": torch.hann_window,
    "hamming": torch.hamming_window,
    "blackman": torch.blackman_window,
    "bartlett": torch.bartlett_window,
    "ones": torch.ones,
    "none": None,
}


def make_window(name, win_length):
    if name not in WINDOWS:
        raise ValueError(f"Unknown window {name!r}; valid: {', '.join(WINDOWS)}")
    fn = WINDOWS[name]
    if fn is None or name == "ones":
        return torch.ones(win_length)
    return fn(win_length, periodic=False)


class ConvSTFT(torch.nn.Module):
    """Power spectrum via conv1d with windowed cos/sin kernels (ONNX-exportable).

    Same framing as ``torch.stft(center=True, pad_mode='reflect')``.
    """

    def __init__(self, n_fft, hop_length, window):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        win_length = window.numel()
        left = (n_fft - win_length) // 2
        full = torch.zeros(n_fft, dtype=torch.float64)
        full[left:left + win_length] = window.double()
        n = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
        angle = 2 * math.pi * k * n / n_fft
        kernels = torch.cat([torch.cos(angle) * full, -torch.sin(angle) * full], dim=0)
        self.register_buffer("kernels", kernels.float().unsqueeze(1), persistent=False)

    def forward(self, x):
        pad = self.n_fft // 2
        x = torch.nn.functional.pad(x.unsqueeze(1), (pad, pad), mode="reflect")
        out = torch.nn.functional.conv1d(x, self.kernels.to(x.dtype), stride=self.hop_length)
        real, imag = out.chunk(2, dim=1)
        return real, imag


def normalize_batch(x, seq_len, normalize_type):
    """Per-utterance normalisation over valid frames (vectorised; no Python loop)."""
    if not normalize_type:
        return x
    mask = (~lengths_mask(seq_len, x.shape[2])).to(x.dtype)
    count = seq_len.to(x.dtype).clamp(min=1)
    if normalize_type == "per_feature":
        mask = mask[:, None, :]
        mean = (x * mask).sum(dim=2, keepdim=True) / count[:, None, None]
        var = (((x - mean) * mask) ** 2).sum(dim=2, keepdim=True) / (count[:, None, None] - 1).clamp(min=1)
        return (x - mean) / (var.sqrt() + NORMALIZE_EPS)
    if normalize_type == "all_features":
        n = count * x.shape[1]
        full_mask = mask[:, None, :]
        mean = (x * full_mask).sum(dim=(1, 2), keepdim=True) / n[:, None, None]
        var = (((x - mean) * full_mask) ** 2).sum(dim=(1, 2), keepdim=True) / (n[:, None, None] - 1).clamp(min=1)
        return (x - mean) / (var.sqrt() + NORMALIZE_EPS)
    if isinstance(normalize_type, dict):
        mean = torch.as_tensor(normalize_type["fixed_mean"], dtype=x.dtype, device=x.device)
        std = torch.as_tensor(normalize_type["fixed_std"], dtype=x.dtype, device=x.device)
        return (x - mean.view(1, -1, 1)) / (std.view(1, -1, 1) + NORMALIZE_EPS)
    raise ValueError(f"Unknown normalize={normalize_type!r}; use 'per_feature', 'all_features', "
                     "a {'fixed_mean', 'fixed_std'} dict, or None")


def splice_frames(x, frame_splicing):
    """Stack each frame with the next ``frame_splicing - 1`` frames (features x n)."""
    seq = [x]
    for n in range(1, frame_splicing):
        seq.append(torch.cat([x[:, :, n:], x[:, :, :n]], dim=2))
    return torch.cat(seq, dim=1)


def frame_counts(lengths, hop_length):
    """Valid frames of a centred STFT over ``lengths`` samples: ceil(samples / hop)."""
    return torch.div(lengths.long() + hop_length - 1, hop_length, rounding_mode="floor")


def power_spectrum(x, window, n_fft, hop_length, mag_power=2.0, stft=None):
    """``abs(STFT) ** mag_power`` (B, n_fft // 2 + 1, frames) of a centred, reflect-padded STFT.

    ``stft``: None for ``torch.stft``, or a ``ConvSTFT`` built from the same
    window, which computes the same frames as a convolution (exports to ONNX).
    """
    if stft is not None:
        real, imag = stft(x)
        magnitude_sq = real * real + imag * imag
    else:
        spec = torch.stft(x, n_fft=n_fft, hop_length=hop_length, win_length=window.numel(),
                          window=window.to(x.dtype), center=True, pad_mode="reflect", return_complex=True)
        magnitude_sq = spec.real ** 2 + spec.imag ** 2
    if mag_power == 2.0:
        return magnitude_sq
    return magnitude_sq.sqrt() ** mag_power


def filterbank_features(x, seq_len, window, n_fft, hop_length, fb=None, preemph=0.97, log=True,
                        log_zero_guard_type="add", log_zero_guard_value=2 ** -24, dither=0.0, frame_splicing=1,
                        normalize="per_feature", pad_value=0.0, mag_power=2.0, pad_to=0, stft=None):
    """Waveforms (B, T) + lengths -> features (B, bins, frames) + frame counts: the one front end.

    In order: dither (``dither`` > 0: Gaussian noise of that scale), pre-emphasis,
    power spectrum (``power_spectrum``), filterbank ``fb`` (None: linear bins),
    log with a guard (``add``: log(x + value); ``clamp``: log(max(x, value))),
    frame splicing, normalisation over valid frames (``normalize_batch``),
    ``pad_value`` past each utterance's frames, and ``pad_to``: the time axis
    padded to a multiple of it (0: not padded). Training and evaluation call it
    through ``FilterbankFeatures``; the exported pipeline with ``stft=ConvSTFT``
    and ``pad_to=0``.
    """
    seq_len = frame_counts(seq_len, hop_length)
    x = x.float()
    if dither > 0:
        x = x + dither * torch.randn_like(x)
    if preemph is not None and preemph > 0:
        x = torch.cat((x[:, :1], x[:, 1:] - preemph * x[:, :-1]), dim=1)
    x = power_spectrum(x, window, n_fft, hop_length, mag_power, stft)
    if fb is not None:
        x = torch.matmul(fb.to(x.dtype), x)
    if log:
        if log_zero_guard_type == "add":
            x = torch.log(x + log_zero_guard_value)
        else:
            x = torch.log(torch.clamp(x, min=log_zero_guard_value))
    if frame_splicing > 1:
        x = splice_frames(x, frame_splicing)
    x = normalize_batch(x, seq_len, normalize)
    frames = x.shape[-1]
    x = x.masked_fill(lengths_mask(seq_len, frames)[:, None, :], pad_value)
    if pad_to and pad_to > 0:
        extra = (-frames) % pad_to
        if extra:
            x = torch.nn.functional.pad(x, (0, extra), value=pad_value)
    return x, seq_len


class FilterbankFeatures(torch.nn.Module):
    """Holds the front end's configuration (window and filterbank as buffers) and calls
    ``filterbank_features`` with it: waveforms (B, T) + lengths -> (B, bins, frames) + frame counts.

    ``dither`` applies in training mode only. ``stft_conv=True`` computes the
    STFT with ``ConvSTFT`` instead of ``torch.stft``.
    """

    def __init__(self, sample_rate=16000, n_window_size=320, n_window_stride=160, window="hann",
                 normalize="per_feature", n_fft=None, preemph=0.97, nfilt=64, lowfreq=0, highfreq=None,
                 log=True, log_zero_guard_type="add", log_zero_guard_value=2 ** -24, dither=1e-5,
                 pad_to=16, frame_splicing=1, stft_conv=False, pad_value=0.0, mag_power=2.0,
                 mel=True):
        super().__init__()
        if log_zero_guard_type not in ("add", "clamp"):
            raise ValueError(f"log_zero_guard_type must be 'add' or 'clamp', got {log_zero_guard_type!r}")
        self.win_length, self.hop_length = int(n_window_size), int(n_window_stride)
        self.n_fft = int(n_fft or 2 ** math.ceil(math.log2(self.win_length)))
        self.normalize, self.preemph, self.log = normalize, preemph, log
        self.log_zero_guard_type, self.log_zero_guard_value = log_zero_guard_type, log_zero_guard_value
        self.dither, self.pad_to, self.frame_splicing = dither, pad_to, frame_splicing
        self.pad_value, self.mag_power = pad_value, mag_power
        self.register_buffer("window", make_window(window, self.win_length), persistent=False)
        self.stft = self.conv_stft() if stft_conv else None
        if mel:
            fb = mel_filterbank(sample_rate, self.n_fft, nfilt, lowfreq, highfreq or sample_rate / 2)
            self.register_buffer("fb", fb, persistent=False)
        else:
            self.fb = None

    @property
    def num_features(self):
        bins = self.fb.shape[0] if self.fb is not None else self.n_fft // 2 + 1
        return bins * self.frame_splicing

    def get_seq_len(self, seq_len):
        """Valid frames: ceil(samples / hop)."""
        return frame_counts(seq_len, self.hop_length)

    def conv_stft(self):
        """A ``ConvSTFT`` computing this front end's STFT (same window and framing)."""
        return ConvSTFT(self.n_fft, self.hop_length, self.window)

    def options(self, **overrides):
        """``filterbank_features``' arguments for this configuration (after ``x, seq_len``), with
        ``overrides`` (e.g. ``stft=``, ``pad_to=``) replacing the configured values."""
        options = {"window": self.window, "n_fft": self.n_fft, "hop_length": self.hop_length, "fb": self.fb,
                   "preemph": self.preemph, "log": self.log, "log_zero_guard_type": self.log_zero_guard_type,
                   "log_zero_guard_value": self.log_zero_guard_value,
                   "dither": self.dither if self.training else 0.0, "frame_splicing": self.frame_splicing,
                   "normalize": self.normalize, "pad_value": self.pad_value, "mag_power": self.mag_power,
                   "pad_to": self.pad_to, "stft": self.stft}
        return {**options, **overrides}

    def forward(self, x, seq_len):
        return filterbank_features(x, seq_len, **self.options())
