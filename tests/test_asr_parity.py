"""NeMo 0.x names users reach for: MultiplyBatch, CropOrPadSpectrogramAugmentation,
TimeStretchAugmentation (and the ``time_stretch`` perturbation), the ``impulse``
perturbation, TranscriptDataLayer, the top-level BeamSearchDecoderWithLM, and
NeMo 0.x model configs (``AudioPreprocessing:`` section, ``jasper15x5SEP.yaml``)."""
import json
import logging
import os
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

import nemo_core
import nemo_asr
from nemo_asr.model_config import ModelConfigError, data_layer_arguments, load_model_config, modules_from_config
from nemo_asr.parts.perturb import AudioAugmentor, time_stretch

from conftest import PYTHON, REPO, subprocess_env

AN4 = os.path.join(REPO, "tests", "data", "an4_subset")
CONFIGS = os.path.join(REPO, "examples", "asr", "configs")
TINY = os.path.join(REPO, "tests", "data", "configs", "tiny_quartznet.yaml")
LABELS = [" "] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["'"]


def tone(seconds=1.0, freq=440.0, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(samples, sr=16000):
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return np.fft.rfftfreq(len(samples), 1 / sr)[int(np.argmax(spectrum))]


def an4_layer(**kwargs):
    kwargs.setdefault("batch_size", 4)
    return nemo_asr.AudioToTextDataLayer(manifest_filepath=os.path.join(AN4, "train_manifest.json"),
                                         labels=LABELS, shuffle=False, **kwargs)


# ------------------------------------------------------------------------------------------ MultiplyBatch
def test_multiply_batch_repeats_every_input_and_keeps_types():
    mult = nemo_asr.MultiplyBatch(mult_batch=3)
    x, x_len = torch.randn(2, 64, 7), torch.tensor([7, 5])
    y, y_len = torch.tensor([[1, 2, 3], [4, 5, 0]]), torch.tensor([3, 2])
    out_x, out_x_len, out_y, out_y_len = mult(in_x=x, in_x_len=x_len, in_y=y, in_y_len=y_len)
    assert torch.equal(out_x, torch.cat([x, x, x])) and torch.equal(out_y, torch.cat([y, y, y]))
    assert out_x_len.tolist() == [7, 5] * 3 and out_y_len.tolist() == [3, 2] * 3
    with pytest.raises(ValueError, match="mult_batch must be a positive int"):
        nemo_asr.MultiplyBatch(mult_batch=0)

    # in a DAG: the spectrogram keeps its exact type (so the encoder still checks the feature size)
    layer = an4_layer()
    pre = nemo_asr.AudioToMelSpectrogramPreprocessor(features=80)
    audio, audio_len, text, text_len = layer()
    spec, spec_len = pre(input_signal=audio, length=audio_len)
    many, many_len, texts, texts_len = mult(in_x=spec, in_x_len=spec_len, in_y=text, in_y_len=text_len)
    assert many.ntype == spec.ntype and texts.ntype == text.ntype
    encoder = nemo_asr.JasperEncoder(feat_in=64, activation="relu", jasper=[
        {"filters": 8, "repeat": 1, "kernel": [3], "stride": [1], "dilation": [1], "dropout": 0.0,
         "residual": False}])
    with pytest.raises(nemo_core.NeuralPortNmTensorMismatchError, match="audio_signal"):
        encoder(audio_signal=many, length=many_len)
    with pytest.raises(nemo_core.NeuralPortNmTensorMismatchError, match="in_x"):
        mult(in_x=audio, in_x_len=audio_len, in_y=text, in_y_len=text_len)  # audio is not a spectrogram
    nf = nemo_core.NeuralModuleFactory(placement=nemo_core.DeviceType.CPU)
    batches, lengths = nf.infer([texts, many_len], verbose=False)
    sizes = [min(4, len(layer) - 4 * i) for i in range(-(-len(layer) // 4))]
    assert [b.shape[0] for b in batches] == [3 * n for n in sizes]  # batches of 4, each 3 times
    assert [lengths[i].shape[0] for i in range(len(sizes))] == [3 * n for n in sizes]
    first = next(iter(layer.make_dataloader(training=False)))
    assert torch.equal(batches[0][:4], first[2]) and torch.equal(batches[0][8:], first[2])


# ------------------------------------------------------------------------------ CropOrPadSpectrogramAugmentation
def test_crop_or_pad_uses_only_valid_frames_and_fixes_the_length():
    crop = nemo_asr.CropOrPadSpectrogramAugmentation(audio_length=6, rng=0)
    x = torch.arange(2 * 2 * 10, dtype=torch.float32).reshape(2, 2, 10) + 1.0
    lengths = torch.tensor([10, 3])
    x[1, :, 3:] = -99.0  # the batch's padding of the short utterance: must never appear
    crop.eval()
    out, out_len = crop(input_signal=x, length=lengths)
    assert out.shape == (2, 2, 6) and out_len.tolist() == [6, 6]
    assert torch.equal(out[0], x[0, :, 2:8])  # eval: centred crop
    assert torch.equal(out[1, :, 1:4], x[1, :, :3])  # centred, 1 zero frame left, 2 right
    assert out[1, :, [0, 4, 5]].abs().sum() == 0
    crop.train()
    starts = set()
    for _ in range(40):
        out, _ = crop(input_signal=x, length=lengths)
        start = int(out[0, 0, 0] - x[0, 0, 0])
        assert torch.equal(out[0], x[0, :, start:start + 6])  # a window of valid frames
        assert torch.equal(out[1, :, 1:4], x[1, :, :3])
        starts.add(start)
    assert starts == {0, 1, 2, 3, 4}  # every valid start is drawn
    again = nemo_asr.CropOrPadSpectrogramAugmentation(audio_length=6, rng=0)
    first = nemo_asr.CropOrPadSpectrogramAugmentation(audio_length=6, rng=0)
    assert torch.equal(again(input_signal=x, length=lengths)[0], first(input_signal=x, length=lengths)[0])
    with pytest.raises(ValueError, match="audio_length must be a positive number of frames"):
        nemo_asr.CropOrPadSpectrogramAugmentation(audio_length=0)


def test_crop_or_pad_in_a_dag_sizes_the_time_axis():
    layer = an4_layer()
    pre = nemo_asr.AudioToMelSpectrogramPreprocessor(dither=0.0)
    crop = nemo_asr.CropOrPadSpectrogramAugmentation(audio_length=128)
    audio, audio_len, _, _ = layer()
    spec, spec_len = pre(input_signal=audio, length=audio_len)
    fixed, fixed_len = crop(input_signal=spec, length=spec_len)
    assert repr(fixed.ntype) == "NeuralType((B, D=64, T=128), MelSpectrogramType)"
    nf = nemo_core.NeuralModuleFactory(placement=nemo_core.DeviceType.CPU)
    (batches,) = nf.infer([fixed], verbose=False)
    assert all(b.shape[1:] == (64, 128) for b in batches)


# ------------------------------------------------------------------------- time stretch: function, perturbation, module
@pytest.mark.slow  # librosa's first call compiles (numba) for several seconds
def test_time_stretch_matches_librosa_phase_vocoder():
    import librosa

    speech, _ = sf.read(os.path.join(AN4, "wav", "an46-mmap-b.wav"), dtype="float32")
    for rate in (0.8, 1.25):
        ours = time_stretch(torch.from_numpy(speech), rate).numpy()
        reference = librosa.effects.time_stretch(speech, rate=rate, n_fft=512)  # an independent implementation
        assert ours.shape == reference.shape
        assert np.corrcoef(ours, reference)[0, 1] > 0.9999


def test_time_stretch_keeps_pitch_and_level():
    wave = tone(1.0)
    for rate in (0.8, 1.25):
        stretched = time_stretch(torch.from_numpy(wave), rate).numpy()
        assert len(stretched) == round(16000 / rate)
        middle = stretched[2000:-2000]
        assert peak_frequency(middle) == pytest.approx(440, abs=5)  # pitch kept
        # a steady tone keeps its level (a phase error between bins would cancel part of it)
        assert np.sqrt(np.mean(middle ** 2)) > 0.85 * 0.3 / np.sqrt(2)
    # resampling (speed) moves the pitch; time_stretch does not
    fast = AudioAugmentor.from_config([{"type": "speed", "min_speed_rate": 1.25, "max_speed_rate": 1.25}], 16000)
    assert peak_frequency(fast(wave)[2000:-2000]) == pytest.approx(550, abs=5)
    stretch = AudioAugmentor.from_config([{"type": "time_stretch", "min_speed_rate": 1.25, "max_speed_rate": 1.25}],
                                         16000)
    out = stretch(wave)
    assert len(out) == 12800 and out.dtype == np.float32
    assert peak_frequency(out[2000:-2000]) == pytest.approx(440, abs=5)


def test_pitch_shift_moves_the_pitch_and_keeps_length_and_timing():
    wave = tone(1.0)
    for semitones in (-3.0, 4.0):
        shift = AudioAugmentor.from_config([{"type": "pitch_shift", "min_semitones": semitones,
                                             "max_semitones": semitones}], 16000, seed=0)
        out = shift(wave)
        assert len(out) == len(wave) and out.dtype == np.float32
        assert peak_frequency(out[2000:-2000]) == pytest.approx(440 * 2 ** (semitones / 12), abs=5)
        assert np.sqrt(np.mean(out[2000:-2000] ** 2)) > 0.85 * 0.3 / np.sqrt(2)  # level kept
    # timing kept: a burst half-way through stays half-way through (speed would move it to 0.4 s)
    burst = np.zeros(16000, np.float32)
    burst[8000:8800] = tone(0.05)
    out = AudioAugmentor.from_config([{"type": "pitch_shift", "min_semitones": 3, "max_semitones": 3}], 16000)(burst)
    energy = np.convolve(out ** 2, np.ones(400), mode="same")
    assert abs(int(np.argmax(energy)) - 8400) < 300
    with pytest.raises(ValueError, match="pitch_shift: min_semitones 2 is above max_semitones 1"):
        AudioAugmentor.from_config([{"type": "pitch_shift", "min_semitones": 2, "max_semitones": 1}], 16000)


def test_time_stretch_perturbation_in_the_data_layer_changes_the_length():
    slow = an4_layer(perturb_config=[{"type": "time_stretch", "prob": 1.0, "min_speed_rate": 0.8,
                                      "max_speed_rate": 0.8}])
    audio, audio_len, _, _ = next(iter(slow.make_dataloader(training=False)))
    first = json.loads(open(os.path.join(AN4, "train_manifest.json")).readline())
    assert int(audio_len[0]) == round(round(first["duration"] * 16000) / 0.8)


def test_time_stretch_augmentation_module():
    wave = torch.from_numpy(np.stack([tone(1.0), np.concatenate([tone(0.5), np.zeros(8000, np.float32)])]))
    lengths = torch.tensor([16000, 8000])
    module = nemo_asr.TimeStretchAugmentation(sample_rate=16000, probability=1.0, min_speed_rate=1.25,
                                              max_speed_rate=1.25, num_rates=1, rng=0)
    out, out_len = module(input_signal=wave, length=lengths)
    assert out.shape == (2, 12800) and out_len.tolist() == [12800, 6400]  # lengths divided by the rate
    assert torch.allclose(out, time_stretch(wave, 1.25), atol=1e-6)
    assert peak_frequency(out[0, 2000:-2000].numpy()) == pytest.approx(440, abs=5)
    module.eval()
    same, same_len = module(input_signal=wave, length=lengths)
    assert same is wave and same_len is lengths  # eval: untouched
    never = nemo_asr.TimeStretchAugmentation(probability=0.0, rng=0)
    assert never(input_signal=wave, length=lengths)[0] is wave
    rates = {nemo_asr.TimeStretchAugmentation(num_rates=5, rng=seed).draw_rate() for seed in range(60)}
    assert rates == set(np.linspace(0.9, 1.1, 5).tolist())
    # typed like the preprocessor's audio input: a sample-rate mismatch fails at wiring
    layer = an4_layer()
    audio, audio_len, _, _ = layer()
    stretched, stretched_len = nemo_asr.TimeStretchAugmentation(sample_rate=16000)(input_signal=audio, length=audio_len)
    nemo_asr.AudioToMelSpectrogramPreprocessor()(input_signal=stretched, length=stretched_len)
    with pytest.raises(nemo_core.NeuralPortNmTensorMismatchError, match="input_signal"):
        nemo_asr.TimeStretchAugmentation(sample_rate=8000)(input_signal=audio, length=audio_len)
    with pytest.raises(ValueError, match="probability must be in"):
        nemo_asr.TimeStretchAugmentation(probability=1.5)


# ------------------------------------------------------------------------------------- impulse responses
def test_impulse_perturbation_convolves_with_an_ir_from_a_manifest(tmp_path):
    sr = 16000
    rng = np.random.default_rng(0)
    speech = (0.1 * rng.standard_normal(sr)).astype(np.float32)
    delayed_delta = np.zeros(400, np.float32)
    delayed_delta[160] = 0.7  # 10 ms of pre-delay, then the direct sound
    echo = np.zeros(1000, np.float32)
    echo[0], echo[800] = 1.0, 0.5
    for name, ir in (("delta.wav", delayed_delta), ("echo.wav", echo)):
        sf.write(tmp_path / name, ir, sr, subtype="FLOAT")
    manifest = tmp_path / "irs.json"

    def augmentor(ir_name, **options):
        manifest.write_text(json.dumps({"audio_filepath": ir_name, "duration": 0.05}) + "\n")
        return AudioAugmentor.from_config([dict(type="impulse", manifest_path=str(manifest), **options)], sr, seed=0)

    # a delayed unit impulse: with the pre-delay dropped (default) the speech is unchanged
    assert np.allclose(augmentor("delta.wav")(speech), speech, atol=1e-6)
    moved = augmentor("delta.wav", shift_impulse=False)(speech)  # delayed 160 samples, cut to length, same RMS
    level = np.sqrt(np.sum(speech.astype(np.float64) ** 2) / np.sum(speech[:-160].astype(np.float64) ** 2))
    assert np.allclose(moved[160:], speech[:-160] * level, atol=1e-6) and np.abs(moved[:160]).max() < 1e-6
    # an echo: x[n] + 0.5 x[n - 800], at the input's RMS level and length
    wet = augmentor("echo.wav")(speech)
    expected = speech.astype(np.float64).copy()
    expected[800:] += 0.5 * speech[:-800]
    expected *= np.sqrt(np.mean(speech.astype(np.float64) ** 2) / np.mean(expected ** 2))
    assert wet.shape == speech.shape and wet.dtype == np.float32
    assert np.allclose(wet, expected, atol=1e-5)
    # through the data layer's perturb_config
    manifest.write_text(json.dumps({"audio_filepath": "echo.wav", "duration": 0.05}) + "\n")
    data = an4_layer(perturb_config={"perturbations": [{"type": "impulse", "manifest_path": str(manifest)}]})
    plain = an4_layer()
    (audio, audio_len, _, _), (clean, clean_len, _, _) = (next(iter(d.make_dataloader(training=False)))
                                                        for d in (data, plain))
    assert torch.equal(audio_len, clean_len) and not torch.allclose(audio, clean)


# ------------------------------------------------------------------------------------- TranscriptDataLayer
def test_transcript_data_layer_from_manifests_and_text_files(tmp_path):
    rows = [json.loads(line) for line in open(os.path.join(AN4, "train_manifest.json"))]
    text_file = tmp_path / "lm.txt"
    text_file.write_text("\ufeffHello World\n\nit's 2 pm\n", encoding="utf-8")  # BOM, blank line, digits
    layer = nemo_asr.TranscriptDataLayer(path=[os.path.join(AN4, "train_manifest.json"), str(text_file)],
                                         labels=LABELS, batch_size=4, bos_id=28, eos_id=29, pad_id=30,
                                         shuffle=False)
    assert len(layer) == len(rows) + 2
    texts, texts_len = layer()
    audio_layer = an4_layer()
    _, _, transcripts, transcript_len = audio_layer()
    assert texts.ntype == transcripts.ntype and texts_len.ntype == transcript_len.ntype
    batches = list(layer.make_dataloader(training=False))
    tokens, lengths = batches[0]
    assert tokens.shape[0] == 4 and int(lengths[0]) == len(rows[0]["text"]) + 2
    assert tokens[0, 0] == 28 and tokens[0, int(lengths[0]) - 1] == 29
    assert "".join(LABELS[i] for i in tokens[0, 1: int(lengths[0]) - 1].tolist()) == rows[0]["text"]
    assert (tokens[lengths < lengths.max()][:, -1] == 30).all()  # padded with pad_id
    decoded = ["".join(LABELS[i] for i in seq[1:-1]) for seq in layer.dataset.tokens[-2:]]
    assert decoded == ["hello world", "it's two pm"]
    assert layer.dataset.sources[-1] == f"{text_file}:3"
    comma_separated = nemo_asr.TranscriptDataLayer(path=f"{os.path.join(AN4, 'test_manifest.json')},{text_file}",
                                                   labels=LABELS, batch_size=2)
    assert len(comma_separated) == 12

    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("fine\ncaf\u00e9\n".encode("latin-1"))
    with pytest.raises(nemo_asr.ManifestError, match=r"latin1\.txt:2: not UTF-8 text"):
        nemo_asr.TranscriptDataLayer(path=str(latin1), labels=LABELS, batch_size=2)
    no_text = tmp_path / "no_text.json"
    no_text.write_text(json.dumps({"audio_filepath": "a.wav", "duration": 1.0}) + "\n")
    with pytest.raises(nemo_asr.ManifestError, match=r"no_text\.json:1: missing key text"):
        nemo_asr.TranscriptDataLayer(path=str(no_text), labels=LABELS, batch_size=2)
    with pytest.raises(nemo_asr.ManifestError, match=r"Transcript file .*missing\.txt does not exist"):
        nemo_asr.TranscriptDataLayer(path=str(tmp_path / "missing.txt"), labels=LABELS, batch_size=2)


# ----------------------------------------------------------------------------------------- exports
def test_nemo_0x_names_are_exported():
    for name in ("MultiplyBatch", "CropOrPadSpectrogramAugmentation", "TimeStretchAugmentation",
                 "TranscriptDataLayer", "BeamSearchDecoderWithLM", "AudioPreprocessing"):
        assert hasattr(nemo_asr, name), name
    assert nemo_asr.BeamSearchDecoderWithLM.__module__ == "nemo_asr.beam_search_decoder"


@pytest.mark.slow  # a fresh interpreter importing torch
def test_import_nemo_asr_needs_no_lm_packages():
    # pyctcdecode and kenlm made unimportable: `import nemo_asr` must not need them, only the beam search does
    code = ("import sys; sys.modules['pyctcdecode'] = None; sys.modules['kenlm'] = None\n"
            "import nemo_asr\n"
            "try:\n    nemo_asr.BeamSearchDecoderWithLM(vocab=['a'], beam_width=4, alpha=0.5, beta=1.0)\n"
            "except ImportError as err:\n    print('needs:', err)\n")
    result = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("needs:") and "pyctcdecode" in result.stdout, result.stdout


# ----------------------------------------------------------------------------------------- model configs
NEMO_08_CONFIG = """\
model: "QuartzNet-AN4"
sample_rate: &sr 16000
dropout: &drop 0.0
repeat: &rep 1

AudioToTextDataLayer:
    train:
        sample_rate: *sr
        normalize_transcripts: true
        shuffle: true
    eval:
        sample_rate: *sr
        shuffle: false

AudioPreprocessing:
    normalize: "per_feature"
    window_size: 0.02
    window_stride: 0.01
    features: &n_mels 80
    n_fft: 512
    dither: 0.00001
    feat_type: "logfbank"

JasperEncoder:
    feat_in: *n_mels
    activation: "relu"
    jasper:
        - {filters: 32, repeat: *rep, kernel: [11], stride: [2], dilation: [1], dropout: *drop, residual: false, separable: true}
        - {filters: &enc_out 64, repeat: 1, kernel: [1], stride: [1], dilation: [1], dropout: 0.0, residual: false}

JasperDecoderForCTC:
    feat_in: *enc_out

labels: [" ", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m",
         "n", "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z", "'"]
"""


def test_audio_preprocessing_section_of_nemo_08_configs_is_read(tmp_path):
    path = tmp_path / "an4_08.yaml"
    path.write_text(NEMO_08_CONFIG)
    pre, encoder, decoder = modules_from_config(load_model_config(str(path)))
    assert isinstance(pre, nemo_asr.AudioPreprocessing) and pre.num_features == 80  # not the default 64
    assert pre.init_config["n_fft"] == 512 and pre.init_config["feat_type"] == "logfbank"
    assert encoder.init_config["feat_in"] == 80 and decoder.init_config["num_classes"] == 28
    # the same model from the current section name: identical features
    current = NEMO_08_CONFIG.replace("AudioPreprocessing:", "AudioToMelSpectrogramPreprocessor:").replace(
        '    feat_type: "logfbank"\n', "")
    (tmp_path / "current.yaml").write_text(current)
    pre2, _, _ = modules_from_config(load_model_config(str(tmp_path / "current.yaml")))
    audio = torch.from_numpy(np.stack([tone(0.5)]))
    pre.eval(), pre2.eval()
    assert torch.equal(pre(input_signal=audio, length=torch.tensor([8000]))[0],
                       pre2(input_signal=audio, length=torch.tensor([8000]))[0])
    with pytest.raises(ValueError, match="feat_type 'mfcc' is not supported"):
        nemo_asr.AudioPreprocessing(feat_type="mfcc")
    # NeMo 0.x repeats sample_rate in the data layer's subsections; scripts pass it themselves
    cfg = load_model_config(str(path))
    assert data_layer_arguments(cfg, "train") == {"normalize_transcripts": True, "shuffle": True}
    assert data_layer_arguments(cfg, "eval") == {"shuffle": False}


@pytest.mark.parametrize("change, message", [
    (lambda t: t + "AudioToMelSpectrogramPreprocessor:\n    features: 80\n",
     r"both AudioToMelSpectrogramPreprocessor and AudioPreprocessing are given"),
    (lambda t: t + "Optimizer:\n    lr: 0.1\n", r"unknown top-level key 'Optimizer'"),
    (lambda t: t.replace("sample_rate: &sr 16000", "sampel_rate: &sr 16000"), r"unknown top-level key 'sampel_rate'"),
    (lambda t: t.replace("    n_fft: 512\n", "    nfft: 512\n"),
     r"unknown key 'nfft' in section AudioPreprocessing \(AudioPreprocessing takes: .*n_fft"),
    (lambda t: t.replace("        shuffle: false\n", "        shufle: false\n"),
     r"unknown key 'shufle' in section AudioToTextDataLayer.eval"),
    (lambda t: t.replace('    activation: "relu"\n', '    activation: "relu"\n    conv_maks: true\n'),
     r"unknown key 'conv_maks' in section JasperEncoder"),
    (lambda t: t.replace("    feat_in: *n_mels\n", "    feat_in: 64\n"),
     r"JasperEncoder.feat_in is 64 but the model needs 80"),
    (lambda t: t.replace("        sample_rate: *sr\n        shuffle: false", "        sample_rate: 8000\n        shuffle: false"),
     r"AudioToTextDataLayer.eval.sample_rate is 8000 but sample_rate is 16000"),
])
def test_config_mistakes_are_errors_naming_file_and_key(tmp_path, change, message):
    path = tmp_path / "bad.yaml"
    path.write_text(change(NEMO_08_CONFIG))
    with pytest.raises(ModelConfigError, match=rf"{path}: {message}"):
        modules_from_config(load_model_config(str(path)), source=str(path))


def test_every_shipped_and_test_config_still_loads():
    import glob

    paths = sorted(glob.glob(os.path.join(CONFIGS, "*.yaml")) +
                   glob.glob(os.path.join(REPO, "tests", "data", "**", "*.yaml"), recursive=True))
    assert len(paths) >= 10
    for path in paths:
        load_model_config(path)
    modules_from_config(load_model_config(TINY))


def test_tutorial_config_name_jasper15x5sep_loads_quartznet15x5(tmp_path, caplog):
    tutorial_path = str(tmp_path / "nemo" / "examples" / "asr" / "configs" / "jasper15x5SEP.yaml")
    with caplog.at_level(logging.WARNING, logger="nemo_asr"):
        cfg = load_model_config(tutorial_path)
    assert cfg == load_model_config(os.path.join(CONFIGS, "quartznet15x5.yaml"))
    assert tutorial_path in caplog.text and os.path.join(CONFIGS, "quartznet15x5.yaml") in caplog.text
    # NeMo 0.x's jasper15x5SEP: 1 + 15 + 2 blocks, separable, kernels 33 ... 87, 1024 output channels
    blocks = cfg["JasperEncoder"]["jasper"]
    assert len(blocks) == 18 and blocks[-2]["kernel"] == [87] and blocks[-1]["filters"] == 1024
    assert all(b.get("separable") for b in blocks[:-1])
    with pytest.raises(ModelConfigError, match=r"model config .*jasper99x9\.yaml does not exist .*jasper15x5SEP"):
        load_model_config(str(tmp_path / "jasper99x9.yaml"))


@pytest.mark.slow
def test_training_script_reports_an_unknown_config_key_in_one_line(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text(NEMO_08_CONFIG.replace("    n_fft: 512\n", "    nfft: 512\n"))
    result = subprocess.run([PYTHON, os.path.join(REPO, "examples", "asr", "jasper.py"), "--model_config", str(path),
                             "--train_dataset", os.path.join(AN4, "train_manifest.json"), "--work_dir", str(tmp_path)],
                            capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"jasper.py: error: {path}: unknown key 'nfft' in section AudioPreprocessing"), result.stderr


def test_a_training_runs_resolved_config_is_a_model_config(tmp_path):
    from ruamel.yaml import YAML

    cfg = load_model_config(TINY)
    cfg["args"] = {"lr": 0.02, "model_config": TINY}  # what examples/asr/jasper.py writes to <exp>/config.yaml
    path = tmp_path / "config.yaml"
    with open(path, "w") as handle:
        YAML(typ="safe").dump(cfg, handle)
    modules_from_config(load_model_config(str(path)))
