"""deepspeech.pytorch's data conveniences: CSV manifests (audio,transcript-file pairs) wherever a
JSON-lines manifest goes, and noise injection from a folder of noise files."""
import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

import nemo_asr
from nemo_asr.parts.audio import AudioLoadError
from nemo_asr.parts.data_prep import read_manifest_rows
from nemo_asr.parts.manifest import ManifestError, read_manifests
from nemo_asr.parts.perturb import AudioAugmentor, NoiseFolderPerturbation

from conftest import REPO

AN4 = os.path.join(REPO, "tests", "data", "an4_subset")
LABELS = [" "] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["'"]


def an4_rows(count=4):
    with open(os.path.join(AN4, "train_manifest.json")) as handle:
        return [json.loads(line) for line in handle][:count]


def csv_corpus(folder, count=4, name="train.csv"):
    """A deepspeech.pytorch layout: wav/ and txt/ beside the CSV; relative and absolute paths mixed."""
    rows = an4_rows(count)
    os.makedirs(folder / "wav")
    os.makedirs(folder / "txt")
    lines = []
    for i, row in enumerate(rows):
        wav = folder / "wav" / os.path.basename(row["audio_filepath"])
        shutil.copy(os.path.join(AN4, row["audio_filepath"]), wav)
        txt = folder / "txt" / (wav.stem + ".txt")
        txt.write_text(row["text"] + "\n", encoding="utf-8")
        lines.append(f"{wav},{txt}" if i % 2 else f"wav/{wav.name},txt/{txt.name}")
    path = folder / name
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    return str(path), rows


def test_csv_manifest_feeds_the_data_layer(tmp_path):
    path, rows = csv_corpus(tmp_path)
    layer = nemo_asr.AudioToTextDataLayer(manifest_filepath=path, labels=LABELS, batch_size=4, shuffle=False)
    assert len(layer) == len(rows)
    audio, audio_len, text, text_len = next(iter(layer.make_dataloader(training=False)))
    for i, row in enumerate(rows):
        assert int(audio_len[i]) == round(row["duration"] * 16000)
        assert "".join(LABELS[t] for t in text[i, :text_len[i]].tolist()) == row["text"]
    entries = read_manifests(path)
    assert [e.source for e in entries] == [f"{path}:{n}" for n in range(1, 5)]
    assert all(os.path.isabs(e.audio_filepath) for e in entries)
    assert [e.duration for e in entries] == pytest.approx([r["duration"] for r in rows], abs=1e-3)
    # the JSON row each CSV line stands for: scripts reading manifests (merge, noise lists) take CSV too
    assert [r["text"] for r in read_manifest_rows(path)] == [r["text"] for r in rows]


def test_csv_is_chosen_by_extension_or_by_the_first_line(tmp_path):
    path, rows = csv_corpus(tmp_path)
    for name in ("train.list", "train.txt"):  # sniffed: no "{" and a comma
        shutil.copy(path, tmp_path / name)
        assert [e.text for e in read_manifests(str(tmp_path / name))] == [r["text"] for r in rows]
    json_rows = [dict(r, audio_filepath=os.path.join(AN4, r["audio_filepath"])) for r in rows]
    (tmp_path / "train.manifest").write_text("".join(json.dumps(r) + "\n" for r in json_rows))
    assert len(read_manifests(str(tmp_path / "train.manifest"))) == len(rows)
    (tmp_path / "bad.json").write_text("a.wav,a.txt\n")  # .json is always JSON lines
    with pytest.raises(ManifestError, match="bad.json:1: not valid JSON"):
        read_manifests(str(tmp_path / "bad.json"))


def test_csv_errors_name_file_and_line(tmp_path):
    path, _ = csv_corpus(tmp_path)
    good = open(path).read().splitlines()[0]
    cases = [("only_one_field.wav", r"expected two comma-separated paths .* got 1 field"),
             ("a.wav,b.txt,c", ".* got 3 field"),
             ("wav/x.wav,txt/missing.txt", r"transcript file .*missing.txt does not exist")]
    for index, (line, message) in enumerate(cases):
        bad = tmp_path / f"m{index}.csv"
        bad.write_text(f"{good}\n\n{line}\n")
        with pytest.raises(ManifestError, match=f"m{index}.csv:3: {message}"):
            read_manifests(str(bad))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "enc.csv").write_text(f"{good}\n{good.split(',')[0]},latin1.txt\n")
    with pytest.raises(ManifestError, match=r"enc.csv:2: transcript file .*latin1.txt is not UTF-8"):
        read_manifests(str(tmp_path / "enc.csv"))
    (tmp_path / "missing.csv").write_text(f"{good}\nwav/gone.wav,{good.split(',')[1]}\n")
    with pytest.raises(ManifestError, match=r"missing.csv:2: audio file .*gone.wav does not exist"):
        read_manifests(str(tmp_path / "missing.csv"))
    with pytest.raises(ManifestError, match=r"missing.csv:2: .*gone.wav"):
        nemo_asr.AudioToTextDataLayer(manifest_filepath=str(tmp_path / "missing.csv"), labels=LABELS, batch_size=2)
    layer = nemo_asr.AudioToTextDataLayer(manifest_filepath=str(tmp_path / "missing.csv"), labels=LABELS,
                                          batch_size=2, skip_bad_files=True)
    assert len(layer) == 1
    # without the header pass, a missing file is still reported as missing, not dropped as too short
    with pytest.raises(nemo_asr.UnusableUtterancesError, match=r"missing.csv:2: audio file .*gone.wav does not exist"):
        nemo_asr.AudioToTextDataLayer(manifest_filepath=str(tmp_path / "missing.csv"), labels=LABELS,
                                      batch_size=2, check_audio=False, min_duration=0.1)


def noise_folder(tmp_path):
    """A WAV at 8 kHz (resampled) and a FLAC in a subfolder, plus a file that is not audio."""
    folder = tmp_path / "noise"
    (folder / "street").mkdir(parents=True)
    rng = np.random.default_rng(0)
    sf.write(folder / "hum.wav", 0.1 * np.sin(np.arange(8000) * 0.3).astype(np.float32), 8000)
    sf.write(folder / "street" / "babble.flac", (0.05 * rng.standard_normal(24000)).astype(np.float32), 16000)
    (folder / "README").write_text("noise recordings")
    return folder


def test_noise_folder_mixes_lazily_at_the_configured_level(tmp_path, monkeypatch):
    import nemo_asr.parts.perturb as perturb

    folder = noise_folder(tmp_path)
    loads = []
    real_load = perturb.load_audio
    monkeypatch.setattr(perturb, "load_audio", lambda path, sr: loads.append(path) or real_load(path, sr))
    noise = NoiseFolderPerturbation(16000, str(folder), min_level_db=-20, max_level_db=-10)
    assert [os.path.relpath(f, folder) for f in noise.files] == ["hum.wav", os.path.join("street", "babble.flac")]
    assert loads == []  # nothing read until drawn
    speech, _ = sf.read(os.path.join(AN4, an4_rows(1)[0]["audio_filepath"]), dtype="float32")
    augmentor = AudioAugmentor.from_config([{"type": "noise_folder", "prob": 1.0, "noise_dir": str(folder),
                                             "min_level_db": -20, "max_level_db": -10}], 16000, seed=0)
    for _ in range(8):
        noisy = augmentor(speech)
        assert noisy.shape == speech.shape and noisy.dtype == np.float32
        level = 20 * np.log10(np.sqrt(np.mean((noisy - speech) ** 2)) / np.sqrt(np.mean(speech ** 2)))
        assert -20.01 <= level <= -9.99
    assert len(loads) == 8  # one file read per draw
    assert AudioAugmentor.from_config([{"type": "noise_folder", "prob": 0.0, "noise_dir": str(folder)}],
                                      16000, seed=0)(speech) is speech


def test_noise_folder_in_the_data_layer_and_errors(tmp_path):
    folder = noise_folder(tmp_path)
    manifest = tmp_path / "m.json"
    manifest.write_text("".join(json.dumps(dict(r, audio_filepath=os.path.join(AN4, r["audio_filepath"]))) + "\n"
                                for r in an4_rows(2)))
    layer = nemo_asr.AudioToTextDataLayer(
        manifest_filepath=str(manifest), labels=LABELS, batch_size=2, shuffle=False,
        perturb_config=[{"type": "noise_folder", "prob": 1.0, "noise_dir": str(folder)}])
    audio, audio_len, _, _ = next(iter(layer.make_dataloader(training=True)))
    clean, _ = sf.read(os.path.join(AN4, an4_rows(1)[0]["audio_filepath"]), dtype="float32")
    assert int(audio_len[0]) == len(clean) and not np.allclose(audio[0, :len(clean)].numpy(), clean)

    with pytest.raises(ValueError, match=f"Noise folder {tmp_path / 'none'} does not exist"):
        NoiseFolderPerturbation(16000, str(tmp_path / "none"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="Noise folder .*empty holds no audio files"):
        NoiseFolderPerturbation(16000, str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="min_level_db -5 is above max_level_db -10"):
        NoiseFolderPerturbation(16000, str(folder), min_level_db=-5, max_level_db=-10)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "bad.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(AudioLoadError, match="bad.wav"):
        NoiseFolderPerturbation(16000, str(tmp_path / "broken"))(clean, __import__("random").Random(0))


def test_an_empty_or_silent_noise_file_is_named(tmp_path):
    from nemo_asr.parts.perturb import NoiseFolderPerturbation

    folder = tmp_path / "noise"
    folder.mkdir()
    sf.write(folder / "silence.wav", np.zeros(1600, dtype=np.float32), 16000)
    perturbation = NoiseFolderPerturbation(sample_rate=16000, noise_dir=str(folder))
    with pytest.raises(ValueError, match="silence.wav is empty or silent"):
        perturbation(np.ones(800, dtype=np.float32), __import__("random").Random(0))
