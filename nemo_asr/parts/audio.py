"""Reading audio files: any libsndfile format, mono, resampled, optional trim.

``audio_header`` reads only a file's header (sample rate and frame count), so
a whole training set can be checked before the first step; ``load_audio``
refuses decoded samples that are NaN or infinite, which would otherwise turn
the loss NaN without naming the file.
"""
import os

import numpy as np


class AudioLoadError(RuntimeError):
    """An audio file is missing or cannot be decoded; the message names it."""

    user_error = True  # one line on the command line (nemo_core.utils.cli)


class NonFiniteSamplesError(AudioLoadError):
    """Decoded samples contain NaN or infinity (float WAV/FLAC files can hold them)."""


def resample(samples, orig_sr, target_sr):
    """High-quality resampling with soxr (float32 in, float32 out)."""
    if orig_sr == target_sr:
        return samples
    import soxr

    return soxr.resample(samples, orig_sr, target_sr, quality="HQ").astype(np.float32)


def open_failure(path, err):
    """An ``AudioLoadError`` saying why ``path`` could not be opened: missing, a folder, or undecodable.

    libsndfile reports all three as one error type, so the file system is asked.
    """
    if os.path.isdir(path):
        return AudioLoadError(f"audio path {path} is a folder, not an audio file")
    if not os.path.exists(path):
        return AudioLoadError(f"audio file {path} does not exist")
    return AudioLoadError(f"cannot decode audio file {path}: {getattr(err, 'error_string', err)}")


def audio_header(path):
    """``(sample_rate, frames)`` of ``path`` from its header alone, without decoding samples.

    Raises ``AudioLoadError`` naming the file when it is missing, a folder,
    undecodable, or holds no samples (a header-only file). Uses
    ``soundfile.SoundFile`` rather than ``soundfile.info``: the same header
    fields at half the cost (``info`` also formats libsndfile's log).
    """
    import soundfile as sf

    try:
        with sf.SoundFile(path) as handle:
            sample_rate, frames = handle.samplerate, handle.frames
    except Exception as err:  # libsndfile errors come in several types
        raise open_failure(path, err) from err
    if frames <= 0:
        raise AudioLoadError(f"audio file {path} has no samples (header only)")
    return sample_rate, frames


def check_finite(samples, path):
    """Raise ``NonFiniteSamplesError`` naming ``path`` and the count if ``samples`` hold NaN/inf."""
    finite = np.isfinite(samples)
    if not finite.all():
        bad = int(finite.size - np.count_nonzero(finite))
        raise NonFiniteSamplesError(
            f"audio file {path} holds {bad} non-finite (NaN or infinite) sample(s) of {finite.size}")


def load_audio(path, target_sr, offset=0.0, duration=0.0, int_values=False, trim=False, trim_db=60):
    """Samples of ``path`` as float32 in [-1, 1] at ``target_sr``.

    ``int_values`` reads integer PCM and scales it by 2^-31 (bit-exact for
    16-bit files). Stereo is averaged to mono. ``trim`` removes leading and
    trailing silence quieter than ``trim_db`` below the peak (librosa).
    NaN/inf samples raise ``NonFiniteSamplesError`` (checked before resampling,
    which would smear them over their neighbours).
    """
    import soundfile as sf

    try:
        with sf.SoundFile(path) as handle:
            sample_rate = handle.samplerate
            if offset:
                handle.seek(int(round(offset * sample_rate)))
            frames = int(round(duration * sample_rate)) if duration else -1
            samples = handle.read(frames=frames, dtype="int32" if int_values else "float32", always_2d=True)
    except Exception as err:  # libsndfile errors come in several types
        raise open_failure(path, err) from err
    samples = samples.astype(np.float32)
    if int_values:
        samples *= 1.0 / 2 ** 31
    else:
        check_finite(samples, path)
    samples = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if samples.size == 0:
        raise AudioLoadError(f"audio file {path} has no samples (offset {offset}, duration {duration})")
    samples = resample(samples, sample_rate, target_sr)
    if trim:
        import librosa

        samples, _ = librosa.effects.trim(samples, top_db=trim_db)
    return np.ascontiguousarray(samples, dtype=np.float32)
