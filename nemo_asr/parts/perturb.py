"""Audio perturbations for training, configured from YAML or a dict.

Config: a list (or ``{"perturbations": [...]}``) of entries such as
``{"type": "speed", "prob": 0.5, "min_speed_rate": 0.9, "max_speed_rate": 1.1}``.
Types: ``speed`` (changes the length by 1/rate), ``gain``, ``white_noise``
(SNR range), ``shift`` (length kept, zero fill), ``noise`` (clips from a
manifest mixed at an SNR range). All but ``speed`` keep the length.
"""
import os
import random

import numpy as np

from .audio import load_audio, resample


def _rms(samples):
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)) + 1e-12)


class SpeedPerturbation:
    """Resample so the audio plays ``rate`` times faster (rate > 1: shorter)."""

    def __init__(self, sample_rate, min_speed_rate=0.9, max_speed_rate=1.1, num_rates=0):
        if not 0 < min_speed_rate <= max_speed_rate:
            raise ValueError(f"speed rates must satisfy 0 < min <= max, got {min_speed_rate}, {max_speed_rate}")
        self.sample_rate = sample_rate
        self.rates = (np.linspace(min_speed_rate, max_speed_rate, num_rates).tolist() if num_rates
                      else (min_speed_rate, max_speed_rate))
        self.discrete = bool(num_rates)

    def __call__(self, samples, rng):
        rate = rng.choice(self.rates) if self.discrete else rng.uniform(*self.rates)
        if abs(rate - 1.0) < 1e-6:
            return samples
        return resample(samples, self.sample_rate, int(round(self.sample_rate / rate)))


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


class NoisePerturbation:
    """Mix a random clip from a noise manifest (looped/cropped to length) at an SNR."""

    def __init__(self, sample_rate, manifest_path, min_snr_db=10.0, max_snr_db=50.0):
        from .data_prep import read_manifest_rows

        self.sample_rate, self.low, self.high = sample_rate, min_snr_db, max_snr_db
        self.files = [row["audio_filepath"] for row in read_manifest_rows(manifest_path)]
        if not self.files:
            raise ValueError(f"Noise manifest {manifest_path} lists no files")

    def __call__(self, samples, rng):
        noise = load_audio(rng.choice(self.files), self.sample_rate)
        if len(noise) < len(samples):
            noise = np.tile(noise, int(np.ceil(len(samples) / len(noise))))
        start = rng.randrange(0, len(noise) - len(samples) + 1)
        noise = noise[start:start + len(samples)]
        snr = rng.uniform(self.low, self.high)
        scale = _rms(samples) / (_rms(noise) * 10.0 ** (snr / 20.0))
        return (samples + scale * noise).astype(np.float32)


PERTURBATIONS = {
    "speed": SpeedPerturbation, "gain": GainPerturbation, "white_noise": WhiteNoisePerturbation,
    "shift": ShiftPerturbation, "noise": NoisePerturbation,
}


class AudioAugmentor:
    """Applies each configured perturbation with its probability, in order."""

    def __init__(self, perturbations, seed=None):
        self.perturbations = perturbations  # list of (prob, callable)
        if seed is None:  # follow torch's global RNG, so a seeded run stays repeatable
            import torch

            seed = int(torch.randint(0, 2 ** 62, (1,)).item())
        self.rng = random.Random(seed)

    @classmethod
    def from_config(cls, config, sample_rate, seed=None):
        if isinstance(config, (str, os.PathLike)):
            from ruamel.yaml import YAML

            with open(config, encoding="utf-8") as handle:
                config = YAML(typ="safe").load(handle)
        if isinstance(config, dict):
            config = config.get("perturbations", [])
        perturbations = []
        for index, entry in enumerate(config or []):
            entry = dict(entry)
            kind = entry.pop("type", None)
            if kind not in PERTURBATIONS:
                raise ValueError(f"perturbation {index}: unknown type {kind!r}; valid: {', '.join(PERTURBATIONS)}")
            prob = float(entry.pop("prob", 1.0))
            try:
                perturbations.append((prob, PERTURBATIONS[kind](sample_rate, **entry)))
            except TypeError as err:
                raise ValueError(f"perturbation {index} ({kind}): {err}") from err
        return cls(perturbations, seed)

    def __call__(self, samples):
        for prob, perturbation in self.perturbations:
            if self.rng.random() < prob:
                samples = perturbation(samples, self.rng)
        return samples

    def __bool__(self):
        return bool(self.perturbations)
