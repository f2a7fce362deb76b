"""Reading audio files: any libsndfile format, mono, resampled, optional trim."""
import numpy as np


class AudioLoadError(RuntimeError):
    """An audio file is missing or cannot be decoded; the message names it."""


def resample(samples, orig_sr, target_sr):
    """High-quality resampling with soxr (float32 in, float32 out)."""
    if orig_sr == target_sr:
        return samples
    import soxr

    return soxr.resample(samples, orig_sr, target_sr, quality="HQ").astype(np.float32)


def load_audio(path, target_sr, offset=0.0, duration=0.0, int_values=False, trim=False, trim_db=60):
    """Samples of ``path`` as float32 in [-1, 1] at ``target_sr``.

    ``int_values`` reads integer PCM and scales it by 2^-31 (bit-exact for
    16-bit files). Stereo is averaged to mono. ``trim`` removes leading and
    trailing silence quieter than ``trim_db`` below the peak (librosa).
    """
    import soundfile as sf

    try:
        with sf.SoundFile(path) as handle:
            sample_rate = handle.samplerate
            if offset:
                handle.seek(int(round(offset * sample_rate)))
            frames = int(round(duration * sample_rate)) if duration else -1
            samples = handle.read(frames=frames, dtype="int32" if int_values else "float32", always_2d=True)
    except FileNotFoundError as err:
        raise AudioLoadError(f"Audio file {path} does not exist") from err
    except Exception as err:  # libsndfile errors come in several types
        raise AudioLoadError(f"Cannot decode audio file {path}: {err}") from err
    samples = samples.astype(np.float32)
    if int_values:
        samples *= 1.0 / 2 ** 31
    samples = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if samples.size == 0:
        raise AudioLoadError(f"Audio file {path} has no samples (offset {offset}, duration {duration})")
    samples = resample(samples, sample_rate, target_sr)
    if trim:
        import librosa

        samples, _ = librosa.effects.trim(samples, top_db=trim_db)
    return np.ascontiguousarray(samples, dtype=np.float32)
