"""Audio perturbations for training, configured from YAML or a dict.

Config: a list (or ``{"perturbations": [...]}``) of entries such as
``{"type": "speed", "prob": 0.5, "min_speed_rate": 0.9, "max_speed_rate": 1.1}``.
Types: ``speed`` (resampling: length and pitch change by 1/rate),
``time_stretch`` (phase vocoder: length changes by 1/rate, pitch kept),
``gain``, ``white_noise`` (SNR range), ``shift`` (length kept, zero fill),
``noise`` (clips from a manifest mixed at an SNR range), ``noise_folder``
(deepspeech.pytorch's noise injection: clips from a folder of noise files
mixed at a noise level range), ``impulse`` (convolution with a room impulse
response from a manifest of IR files).
All but ``speed`` and ``time_stretch`` keep the length.
"""
import os
import random

import numpy as np

from .audio import load_audio, resample
from .manifest import ManifestError


def _rms(samples):
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)) + 1e-12)


def _draw_rate(rng, rates, discrete):
    return rng.choice(rates) if discrete else rng.uniform(*rates)


def _rate_choices(min_speed_rate, max_speed_rate, num_rates):
    """``(rates, discrete)``: ``num_rates > 0`` rates evenly spaced in [min, max], else the range itself."""
    if not 0 < min_speed_rate <= max_speed_rate:
        raise ValueError(f"speed rates must satisfy 0 < min <= max, got {min_speed_rate}, {max_speed_rate}")
    if num_rates and num_rates > 0:
        return np.linspace(min_speed_rate, max_speed_rate, int(num_rates)).tolist(), True
    return (min_speed_rate, max_speed_rate), False


def time_stretch(signal, rate, n_fft=512, hop_length=None):
    """Phase-vocoder time stretch of ``signal`` (torch, (T,) or (B, T)): ``rate`` > 1 is faster (shorter).

    The output has ``round(T / rate)`` samples and the same pitch. Each output
    STFT frame sits at input position ``j * rate``: its magnitude is
    interpolated between the two nearest input frames, and its phase
    accumulates each bin's measured instantaneous frequency (the expected
    advance ``2 pi k hop / n_fft`` plus the wrapped deviation), which keeps
    sinusoids continuous across frames. Transients are smeared, as with any
    plain phase vocoder.
    """
    import torch

    if rate <= 0:
        raise ValueError(f"time_stretch rate must be positive, got {rate}")
    squeeze = signal.dim() == 1
    x = signal[None] if squeeze else signal
    length = x.shape[-1]
    out_length = max(int(round(length / rate)), 1)
    hop = hop_length or n_fft // 4
    if length < 2 or abs(rate - 1.0) < 1e-9:
        y = x if length < 2 else x.clone()
        return y[0] if squeeze else y
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        window = torch.hann_window(n_fft, periodic=True, device=x.device)
        # zero padding: a reflected edge frame holds phases no single sinusoid has, and a rate < 1 reuses
        # that frame's phase step, which would leave each bin with a different constant phase error
        spec = torch.stft(x, n_fft, hop, window=window, center=True, pad_mode="constant", return_complex=True)
        frames = spec.shape[-1]
        magnitude, phase = spec.abs(), spec.angle()
        expected = 2 * np.pi * hop * torch.arange(spec.shape[-2], device=x.device, dtype=torch.float32) / n_fft
        # measured advance between consecutive input frames, minus the expected one, wrapped to [-pi, pi)
        deviation = phase[..., 1:] - phase[..., :-1] - expected[:, None]
        deviation = torch.remainder(deviation + np.pi, 2 * np.pi) - np.pi
        last = expected[:, None].expand(*deviation.shape[:-1], 1)  # the last frame advances as expected
        advance = torch.cat([expected[:, None] + deviation, last], dim=-1)
        positions = torch.arange(0, frames, rate, device=x.device, dtype=torch.float64).float()
        left = positions.floor().long().clamp(max=frames - 1)
        right = (left + 1).clamp(max=frames - 1)
        weight = (positions - left.float())
        mags = magnitude[..., left] * (1 - weight) + magnitude[..., right] * weight
        steps = advance[..., left]
        phases = phase[..., :1] + torch.cumsum(steps, dim=-1) - steps  # frame 0 keeps the input's phase
        stretched = torch.polar(mags, phases)
        y = torch.istft(stretched, n_fft, hop, window=window, center=True, length=out_length)
    y = y.to(signal.dtype)
    return y[0] if squeeze else y


class SpeedPerturbation:
    """Resample so the audio plays ``rate`` times faster (rate > 1: shorter)."""

    def __init__(self, sample_rate, min_speed_rate=0.9, max_speed_rate=1.1, num_rates=0):
        self.sample_rate = sample_rate
        self.rates, self.discrete = _rate_choices(min_speed_rate, max_speed_rate, num_rates)

    def __call__(self, samples, rng):
        rate = _draw_rate(rng, self.rates, self.discrete)
        if abs(rate - 1.0) < 1e-6:
            return samples
        return resample(samples, self.sample_rate, int(round(self.sample_rate / rate)))


class TimeStretchPerturbation:
    """Play ``rate`` times faster at the same pitch (phase vocoder, see ``time_stretch``).

    Like ``speed``, the utterance gets 1/rate times as long (the data
    layer's length output follows); unlike it, the pitch does not move.
    ``num_rates > 0`` draws from that many evenly spaced rates, else from
    the whole range.
    """

    def __init__(self, sample_rate, min_speed_rate=0.9, max_speed_rate=1.1, num_rates=0, n_fft=512):
        self.rates, self.discrete = _rate_choices(min_speed_rate, max_speed_rate, num_rates)
        self.n_fft = int(n_fft)

    def __call__(self, samples, rng):
        import torch

        rate = _draw_rate(rng, self.rates, self.discrete)
        if abs(rate - 1.0) < 1e-6:
            return samples
        return time_stretch(torch.from_numpy(np.ascontiguousarray(samples)), rate, self.n_fft).numpy()


class PitchShiftPerturbation:
    """Shift the pitch (and the formants with it) by a number of semitones drawn from
    ``[min_semitones, max_semitones]``, keeping the duration: a phase-vocoder stretch by the pitch
    factor, then a resampling that plays it that much faster. The output has the input's length.

    Where ``speed`` moves pitch and tempo together and ``time_stretch`` the tempo alone, this moves
    the voice alone: a lower or higher speaker saying the same thing at the same pace.
    """

    def __init__(self, sample_rate, min_semitones=-2.0, max_semitones=2.0, n_fft=512):
        if not min_semitones <= max_semitones:
            raise ValueError(f"pitch_shift: min_semitones {min_semitones} is above max_semitones {max_semitones}")
        self.sample_rate, self.low, self.high, self.n_fft = sample_rate, min_semitones, max_semitones, int(n_fft)

    def __call__(self, samples, rng):
        import torch

        factor = 2.0 ** (rng.uniform(self.low, self.high) / 12.0)
        if abs(factor - 1.0) < 1e-6 or len(samples) < 2:
            return samples
        longer = time_stretch(torch.from_numpy(np.ascontiguousarray(samples)), 1.0 / factor, self.n_fft).numpy()
        shifted = resample(longer, self.sample_rate, int(round(self.sample_rate / factor)))
        out = np.zeros_like(samples, dtype=np.float32)
        out[:min(len(out), len(shifted))] = shifted[:len(out)]
        return out


class GainPerturbation:
    def __init__(self, sample_rate, min_gain_dbfs=-10.0, max_gain_dbfs=10.0):
        self.low, self.high = min_gain_dbfs, max_gain_dbfs

    def __call__(self, samples, rng):
        return (samples * 10.0 ** (rng.uniform(self.low, self.high) / 20.0)).astype(np.float32)


class WhiteNoisePerturbation:
    def __init__(self, sample_rate, min_snr_db=10.0, max_snr_db=50.0):
        self.low, self.high = min_snr_db, max_snr_db

    def __call__(self, samples, rng):
        snr = rng.uniform(self.low, self.high)
        noise_rms = _rms(samples) / 10.0 ** (snr / 20.0)
        noise = np.random.default_rng(rng.getrandbits(32)).standard_normal(samples.shape)
        return (samples + noise_rms * noise).astype(np.float32)


class ShiftPerturbation:
    def __init__(self, sample_rate, min_shift_ms=-5.0, max_shift_ms=5.0):
        self.sample_rate, self.low, self.high = sample_rate, min_shift_ms, max_shift_ms

    def __call__(self, samples, rng):
        shift = int(round(rng.uniform(self.low, self.high) * self.sample_rate / 1000.0))
        if shift == 0 or abs(shift) >= len(samples):
            return samples
        out = np.zeros_like(samples)
        if shift > 0:
            out[:-shift] = samples[shift:]
        else:
            out[-shift:] = samples[:shift]
        return out


class _NoiseMixer:
    """Mix a random clip of ``files`` (read when drawn, looped/cropped to length) at an SNR in
    [min_snr_db, max_snr_db]."""

    def __init__(self, sample_rate, files, min_snr_db, max_snr_db):
        self.sample_rate, self.files, self.low, self.high = sample_rate, files, min_snr_db, max_snr_db

    def __call__(self, samples, rng):
        path = rng.choice(self.files)
        noise = load_audio(path, self.sample_rate)
        if not np.any(noise):  # empty, or all zeros
            raise ValueError(f"noise file {path} is empty or silent, so no level can be set for it; remove it "
                             f"from the noise set")
        if len(noise) < len(samples):
            noise = np.tile(noise, int(np.ceil(len(samples) / len(noise))))
        start = rng.randrange(0, len(noise) - len(samples) + 1)
        noise = noise[start:start + len(samples)]
        snr = rng.uniform(self.low, self.high)
        scale = _rms(samples) / (_rms(noise) * 10.0 ** (snr / 20.0))
        return (samples + scale * noise).astype(np.float32)


class NoisePerturbation(_NoiseMixer):
    """Mix a random clip from a noise manifest (looped/cropped to length) at an SNR."""

    def __init__(self, sample_rate, manifest_path, min_snr_db=10.0, max_snr_db=50.0):
        from .data_prep import read_manifest_rows

        files = [row["audio_filepath"] for row in read_manifest_rows(manifest_path)]
        if not files:
            raise ValueError(f"Noise manifest {manifest_path} lists no files")
        super().__init__(sample_rate, files, min_snr_db, max_snr_db)


def audio_files_in(folder):
    """Sorted paths of the files under ``folder`` (recursively) whose extension libsndfile reads."""
    import soundfile as sf

    if not os.path.isdir(folder):
        what = "is a file, not a folder" if os.path.exists(folder) else "does not exist"
        raise ValueError(f"Noise folder {folder} {what}")
    extensions = ({f".{name.lower()}" for name in sf.available_formats()} | {".oga", ".opus", ".aif"}) - {".raw"}
    return sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
                  if os.path.splitext(name)[1].lower() in extensions)


class NoiseFolderPerturbation(_NoiseMixer):
    """deepspeech.pytorch's noise injection: a random file of ``noise_dir`` mixed in at a level.

    ``noise_dir``: a folder (searched recursively) of noise recordings in any
    format libsndfile reads (WAV, FLAC, OGG, MP3...), resampled to the
    training rate; a file is read only when drawn (one at a time, so a large
    noise collection costs no memory), looped or cropped to the utterance's
    length. The level, drawn uniformly from ``[min_level_db, max_level_db]``,
    is the noise's RMS relative to the speech's (-10 dB: a tenth of the
    speech's power, an SNR of 10 dB); deepspeech.pytorch's amplitude ratios
    0 to 0.5 correspond to levels up to -6 dB. Configure like the others,
    e.g. ``{"type": "noise_folder", "prob": 0.4, "noise_dir": "noise/",
    "min_level_db": -30, "max_level_db": -6}``. A missing or empty folder is a
    ``ValueError`` naming it; an unreadable noise file an ``AudioLoadError``
    naming the file.
    """

    def __init__(self, sample_rate, noise_dir, min_level_db=-30.0, max_level_db=-6.0):
        if min_level_db > max_level_db:
            raise ValueError(f"noise_folder {noise_dir}: min_level_db {min_level_db} is above max_level_db "
                             f"{max_level_db}")
        files = audio_files_in(noise_dir)
        if not files:
            raise ValueError(f"Noise folder {noise_dir} holds no audio files libsndfile reads")
        super().__init__(sample_rate, files, -max_level_db, -min_level_db)


def convolve_same_start(samples, impulse):
    """``samples * impulse`` (full linear convolution, by FFT) cut to ``len(samples)``."""
    size = len(samples) + len(impulse) - 1
    n_fft = 1 << (size - 1).bit_length()
    spectrum = np.fft.rfft(samples.astype(np.float64), n_fft) * np.fft.rfft(impulse.astype(np.float64), n_fft)
    return np.fft.irfft(spectrum, n_fft)[: len(samples)]


class ImpulsePerturbation:
    """Convolve with a room impulse response drawn from a manifest of IR files (reverberation).

    ``manifest_path``: JSON lines with ``audio_filepath`` (and ``duration``),
    like a noise manifest. The IR is resampled to ``sample_rate``; with
    ``shift_impulse`` the samples before its peak (the direct sound's delay)
    are dropped so the speech does not move against its transcript. The
    result keeps the input's length and RMS level (loudness changes are the
    ``gain`` perturbation's job). Loaded IRs are cached per process.
    """

    def __init__(self, sample_rate, manifest_path, shift_impulse=True):
        from .data_prep import read_manifest_rows

        self.sample_rate, self.shift_impulse = sample_rate, bool(shift_impulse)
        self.files = [row["audio_filepath"] for row in read_manifest_rows(manifest_path)]
        if not self.files:
            raise ValueError(f"Impulse response manifest {manifest_path} lists no files")
        self._cache = {}

    def impulse(self, path):
        """The IR at ``path``: resampled, its pre-delay dropped (``shift_impulse``), unit energy."""
        if path not in self._cache:
            ir = load_audio(path, self.sample_rate).astype(np.float64)
            if self.shift_impulse:
                ir = ir[int(np.argmax(np.abs(ir))):]
            energy = float(np.sqrt(np.sum(ir ** 2)))
            if energy == 0.0:
                raise ValueError(f"Impulse response {path} is silent (all samples zero)")
            self._cache[path] = ir / energy
        return self._cache[path]

    def __call__(self, samples, rng):
        wet = convolve_same_start(samples, self.impulse(rng.choice(self.files)))
        return (wet * (_rms(samples) / _rms(wet))).astype(np.float32)


PERTURBATIONS = {
    "speed": SpeedPerturbation, "time_stretch": TimeStretchPerturbation, "pitch_shift": PitchShiftPerturbation,
    "gain": GainPerturbation,
    "white_noise": WhiteNoisePerturbation, "shift": ShiftPerturbation, "noise": NoisePerturbation,
    "noise_folder": NoiseFolderPerturbation, "impulse": ImpulsePerturbation,
}


class AudioAugmentor:
    """Applies each configured perturbation with its probability, in order."""

    def __init__(self, perturbations, seed=None):
        self.perturbations = perturbations  # list of (prob, callable)
        if seed is None:  # follow torch's global RNG, so a seeded run stays repeatable
            import torch

            seed = int(torch.randint(0, 2 ** 62, (1,)).item())
        self.rng = random.Random(seed)

    PATH_KEYS = ("manifest_path", "noise_dir")

    @classmethod
    def from_config(cls, config, sample_rate, seed=None):
        """``config``: a YAML file, a dict with ``perturbations`` or the list itself, each entry
        ``{type, prob, <the perturbation's arguments>}``. In a YAML file, a relative ``manifest_path``
        or ``noise_dir`` that exists next to the file means that one (else it is relative to the
        working directory), so a config can travel with its noise and impulse files."""
        folder, where = None, "perturbation"
        if isinstance(config, (str, os.PathLike)):
            from ruamel.yaml import YAML

            folder, where = os.path.dirname(os.path.abspath(config)), f"{config}: perturbation"
            with open(config, encoding="utf-8") as handle:
                config = YAML(typ="safe").load(handle)
        if isinstance(config, dict):
            config = config.get("perturbations", [])
        perturbations = []
        for index, entry in enumerate(config or []):
            entry = dict(entry)
            kind = entry.pop("type", None)
            if kind not in PERTURBATIONS:
                raise ValueError(f"{where} {index}: unknown type {kind!r}; valid: {', '.join(PERTURBATIONS)}")
            prob = float(entry.pop("prob", 1.0))
            for key in cls.PATH_KEYS:
                value = entry.get(key)
                if folder and isinstance(value, str) and not os.path.isabs(value) \
                        and os.path.exists(os.path.join(folder, value)):
                    entry[key] = os.path.join(folder, value)
            try:
                perturbations.append((prob, PERTURBATIONS[kind](sample_rate, **entry)))
            except (TypeError, ValueError) as err:  # bad arguments; a noise/impulse manifest missing or malformed
                error = ManifestError if isinstance(err, ManifestError) else ValueError
                raise error(f"{where} {index} ({kind}): {err}") from err
        return cls(perturbations, seed)

    def __call__(self, samples):
        for prob, perturbation in self.perturbations:
            if self.rng.random() < prob:
                samples = perturbation(samples, self.rng)
        return samples

    def __bool__(self):
        return bool(self.perturbations)
