import json
import os
import re

import numpy as np
import pytest
import soundfile as sf

import nemo_asr
from nemo_asr.parts.audio import load_audio
from nemo_asr.parts.cleaners import clean_text, number_to_words
from nemo_asr.parts.manifest import ManifestError
from nemo_asr.parts.perturb import AudioAugmentor

from conftest import REPO

AN4 = os.path.join(REPO, "tests", "data", "an4_subset")
LABELS = [" "] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["'"]


def write_manifest(path, rows):
    with open(path, "w") as handle:
        for row in rows:
            handle.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return str(path)


def tone(seconds=1.0, sr=16000, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    return np.stack([wave, -wave], axis=1) if channels == 2 else wave


def layer(manifest, **kwargs):
    kwargs.setdefault("batch_size", 2)
    return nemo_asr.AudioToTextDataLayer(manifest_filepath=manifest, labels=LABELS, **kwargs)


def test_reads_real_an4_with_relative_paths_and_several_manifests():
    train = os.path.join(AN4, "train_manifest.json")
    test = os.path.join(AN4, "test_manifest.json")
    both = layer(f"{train},{test}", shuffle=False, batch_size=5)
    assert len(both) == 40
    audio, audio_len, text, text_len = next(iter(both.make_dataloader(training=False)))
    assert audio.shape[0] == 5 and audio_len.max() == audio.shape[1]
    first = json.loads(open(train).readline())
    assert int(audio_len[0]) == round(first["duration"] * 16000)
    decoded = "".join(LABELS[i] for i in text[0, : text_len[0]].tolist())
    assert decoded == first["text"]


def test_malformed_manifest_lines_name_file_and_line(tmp_path):
    good = {"audio_filepath": os.path.join(AN4, "wav", "an46-mmap-b.wav"), "duration": 1.0, "text": "stop"}
    cases = [
        ("{not json", "not valid JSON"),
        (json.dumps([1, 2]), "expected a JSON object"),
        (json.dumps({"audio_filepath": "x.wav", "text": "a"}), "missing key\\(s\\) duration"),
        (json.dumps(dict(good, duration=-1)), "duration must be a non-negative number"),
        (json.dumps(dict(good, text=5)), "text must be a string"),
    ]
    for index, (line, message) in enumerate(cases):
        path = write_manifest(tmp_path / f"m{index}.json", [good, "", line])
        with pytest.raises(nemo_asr.ManifestError, match=f"m{index}.json:3: {message}"):
            layer(path)
    with pytest.raises(nemo_asr.ManifestError, match="does not exist"):
        layer(str(tmp_path / "nope.json"))


def test_missing_and_corrupt_audio(tmp_path, caplog):
    good = {"audio_filepath": os.path.join(AN4, "wav", "an46-mmap-b.wav"), "duration": 1.0, "text": "stop"}
    missing = dict(good, audio_filepath="missing.wav")
    path = write_manifest(tmp_path / "m.json", [good, missing])
    with pytest.raises(nemo_asr.ManifestError, match=r"m.json:2: audio file .*missing.wav does not exist"):
        layer(path)
    assert len(layer(path, skip_bad_files=True)) == 1

    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    corrupt = dict(good, audio_filepath="corrupt.wav")
    path = write_manifest(tmp_path / "c.json", [good, corrupt])
    # the header pass (check_audio, default) finds it before the first step ...
    with pytest.raises(nemo_asr.AudioLoadError, match=r"c.json:2: cannot decode audio file .*corrupt.wav"):
        layer(path, shuffle=False)
    assert len(layer(path, skip_bad_files=True)) == 1
    # ... and without it, loading does
    data = layer(path, shuffle=False, check_audio=False)
    with pytest.raises(nemo_asr.AudioLoadError, match=r"corrupt.wav.*c.json:2"):
        list(data.make_dataloader(training=False))
    skipping = layer(path, shuffle=False, skip_bad_files=True, check_audio=False)
    with caplog.at_level("WARNING", logger="nemo_asr"):
        (batch,) = list(skipping.make_dataloader(training=False))
    assert batch[0].shape[0] == 1  # the bad file left the batch, with a warning
    assert "skip_bad_files" in caplog.text and "corrupt.wav" in caplog.text


def test_duration_filter_is_counted_once(tmp_path, caplog):
    rows = [json.loads(line) for line in open(os.path.join(AN4, "test_manifest.json"))]
    path = write_manifest(tmp_path / "m.json", [dict(r, audio_filepath=os.path.join(AN4, r["audio_filepath"])) for r in rows])
    limit = sorted(r["duration"] for r in rows)[len(rows) // 2]
    with caplog.at_level("WARNING", logger="nemo_asr"):
        data = layer(path, max_duration=limit)
    kept = sum(r["duration"] <= limit for r in rows)
    assert 0 < kept < len(rows)
    assert len(data) == kept
    messages = [r.message for r in caplog.records if "Duration filter" in r.message]
    assert len(messages) == 1 and f"dropped {len(rows) - kept} utterance" in messages[0]


def test_unknown_characters_warned_once_per_character(tmp_path, caplog):
    wav = os.path.join(AN4, "wav", "an46-mmap-b.wav")
    rows = [{"audio_filepath": wav, "duration": 1.0, "text": t} for t in ("héllo wörld", "hé hé", "ö 3")]
    with caplog.at_level("WARNING", logger="nemo_asr"):
        data = layer(write_manifest(tmp_path / "m.json", rows), shuffle=False)
    warnings = [r.message for r in caplog.records if "not in the labels" in r.message]
    assert len(warnings) == 2  # é and ö, each once
    tokens = data.dataset.tokens
    assert "".join(LABELS[i] for i in tokens[2]) == "ö three".replace("ö", "")
    unnormalised = layer(write_manifest(tmp_path / "n.json", rows[:1]), normalize_transcripts=False)
    assert "".join(LABELS[i] for i in unnormalised.dataset.tokens[0]) == "hllo wrld"


def test_text_normalisation():
    assert number_to_words(1234567) == "one million two hundred thirty four thousand five hundred sixty seven"
    assert clean_text("Mr. O'Neil's 2nd car cost $12.05 in 1999!") == \
        "mister o'neil's second car cost twelve dollars five cents in nineteen ninety nine"
    assert clean_text("50% of 3.14") == "fifty percent of three point one four"


def test_audio_formats_resampling_mono_int_values_trim(tmp_path):
    wave = tone(1.0, 8000)
    sf.write(tmp_path / "a.wav", wave, 8000)
    up = load_audio(str(tmp_path / "a.wav"), 16000)
    assert abs(len(up) - 16000) <= 2 and abs(np.abs(up).max() - 0.3) < 0.02
    sf.write(tmp_path / "s.flac", tone(0.5, 16000, channels=2), 16000)
    assert load_audio(str(tmp_path / "s.flac"), 16000).shape == (8000,)
    assert np.abs(load_audio(str(tmp_path / "s.flac"), 16000)).max() < 1e-3  # L and -L average to ~0
    sf.write(tmp_path / "o.ogg", tone(0.5), 16000, format="OGG", subtype="VORBIS")
    assert abs(len(load_audio(str(tmp_path / "o.ogg"), 16000)) - 8000) < 200
    sf.write(tmp_path / "i.wav", tone(0.5), 16000, subtype="PCM_16")
    floats = load_audio(str(tmp_path / "i.wav"), 16000)
    ints = load_audio(str(tmp_path / "i.wav"), 16000, int_values=True)
    assert np.allclose(floats, ints, atol=1e-6)
    padded = np.concatenate([np.zeros(8000, np.float32), tone(0.5), np.zeros(8000, np.float32)])
    sf.write(tmp_path / "p.wav", padded, 16000)
    trimmed = load_audio(str(tmp_path / "p.wav"), 16000, trim=True)
    assert 8000 <= len(trimmed) <= 8000 + 2 * 2048  # librosa trims in 512-sample hops of 2048-sample frames
    offset = load_audio(str(tmp_path / "p.wav"), 16000, offset=0.5, duration=0.5)
    assert len(offset) == 8000 and np.allclose(offset, tone(0.5), atol=1e-4)


def test_perturbations_preserve_length_semantics(tmp_path):
    wave = tone(1.0)
    noise_manifest = write_manifest(tmp_path / "noise.json", [
        {"audio_filepath": os.path.join(AN4, "wav", "an46-mmap-b.wav"), "duration": 1.0}])
    for kind, params in [("gain", {}), ("white_noise", {"min_snr_db": 10, "max_snr_db": 20}),
                         ("shift", {"min_shift_ms": -50, "max_shift_ms": 50}),
                         ("noise", {"manifest_path": noise_manifest, "min_snr_db": 5, "max_snr_db": 5})]:
        augmentor = AudioAugmentor.from_config([dict(type=kind, prob=1.0, **params)], 16000, seed=1)
        out = augmentor(wave)
        assert out.shape == wave.shape and out.dtype == np.float32 and not np.allclose(out, wave), kind
    fast = AudioAugmentor.from_config([{"type": "speed", "min_speed_rate": 1.25, "max_speed_rate": 1.25}], 16000)
    assert abs(len(fast(wave)) - 16000 / 1.25) <= 2
    with pytest.raises(ValueError, match="unknown type 'reverb'"):
        AudioAugmentor.from_config([{"type": "reverb"}], 16000)
    config = tmp_path / "perturb.yaml"
    config.write_text("perturbations:\n  - {type: speed, prob: 1.0, min_speed_rate: 0.8, max_speed_rate: 0.8}\n")
    slow = layer(os.path.join(AN4, "train_manifest.json"), shuffle=False, perturb_config=str(config))
    audio, audio_len, _, _ = next(iter(slow.make_dataloader(training=False)))
    # the length output follows the perturbed audio (1.0 s at rate 0.8 -> 1.25 s)
    assert abs(int(audio_len[0]) - 20000) <= 2
    # a YAML whose noise manifest is missing, or with bad arguments: the error names the YAML and the entry
    broken = tmp_path / "broken.yaml"
    broken.write_text("perturbations:\n  - {type: gain}\n  - {type: noise, manifest_path: gone.json}\n")
    with pytest.raises(ManifestError, match=rf"^{re.escape(str(broken))}: perturbation 1 \(noise\): "
                                            r"Manifest gone.json does not exist"):
        AudioAugmentor.from_config(str(broken), 16000)
    broken.write_text("perturbations:\n  - {type: gain, loudness: 3}\n")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(broken))}: perturbation 0 \(gain\): .*loudness"):
        AudioAugmentor.from_config(str(broken), 16000)


def test_bucketing_cuts_padding(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i, seconds in enumerate(rng.uniform(0.2, 3.0, size=32)):
        sf.write(tmp_path / f"{i}.wav", tone(seconds), 16000)
        rows.append({"audio_filepath": f"{i}.wav", "duration": round(float(seconds), 4), "text": "a"})
    manifest = write_manifest(tmp_path / "m.json", rows)

    def padding_fraction(**kwargs):
        data = layer(manifest, batch_size=4, **kwargs)
        padded = valid = 0
        for audio, audio_len, _, _ in data.make_dataloader(seed=3):
            padded += audio.numel()
            valid += int(audio_len.sum())
        return 1 - valid / padded, valid

    plain, plain_valid = padding_fraction()
    bucketed, bucket_valid = padding_fraction(bucketing=True, bucket_batches=8)
    assert plain_valid == bucket_valid  # same data, only the grouping changes
    assert bucketed < plain / 2


# ---------------------------------------------------------------- manifests: encodings, paths, permissions
def an4_rows(name="train_manifest.json"):
    """AN4 rows with absolute audio paths, so a manifest written anywhere finds the files."""
    rows = [json.loads(line) for line in open(os.path.join(AN4, name))]
    return [dict(r, audio_filepath=os.path.join(AN4, r["audio_filepath"])) for r in rows]


def test_manifest_with_utf8_byte_order_mark_is_read(tmp_path):
    rows = an4_rows()[:3]
    path = tmp_path / "bom.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    data = layer(str(path), shuffle=False)
    assert [e.text for e in data.dataset.entries] == [r["text"] for r in rows]


def test_non_utf8_manifest_names_file_and_line_and_says_to_re_encode(tmp_path):
    rows = an4_rows()[:3]
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    lines[1] = lines[1].replace(rows[1]["text"], "caf\u00e9")  # é, written as Latin-1 below
    path = tmp_path / "latin1.json"
    path.write_bytes("\n".join(lines).encode("latin-1") + b"\n")
    with pytest.raises(nemo_asr.ManifestError, match=r"latin1\.json:2: not UTF-8 text \(byte 0xe9 .*re-encode "
                                                     r"the file as UTF-8 .*iconv -f latin1 -t utf-8"):
        layer(str(path))


def test_manifest_paths_with_commas_lists_and_missing_pieces(tmp_path):
    rows = an4_rows()
    folder = tmp_path / "data, v2"
    folder.mkdir()
    comma = folder / "train,clean.json"
    write_manifest(comma, rows)
    assert len(layer(str(comma))) == len(rows)  # an existing file is one manifest, commas and all
    test = os.path.join(AN4, "test_manifest.json")
    assert len(layer([str(comma), test])) == len(rows) + 10  # a list is taken as is
    assert len(layer(f"{os.path.join(AN4, 'train_manifest.json')},{test}")) == 40  # NeMo 0.x comma list
    missing = tmp_path / "nope.json"
    with pytest.raises(nemo_asr.ManifestError, match=rf"Manifest {missing} does not exist \(one of the "
                                                     r"comma-separated manifests in"):
        layer(f"{test},{missing}")
    with pytest.raises(nemo_asr.ManifestError, match=rf"Manifest {missing} does not exist"):
        layer([test, str(missing)])


def test_manifest_folder_is_reported_as_a_folder(tmp_path):
    with pytest.raises(nemo_asr.ManifestError, match=rf"Manifest {tmp_path} is a folder, not a manifest file"):
        layer(str(tmp_path))


def _read_without_privileges(path):
    """``repr`` of what reading manifest ``path`` raises, as a user without root's right to read anything.

    Root reads every file, so under root a forked child drops to ``nobody``
    first: a real permission error, not a simulated one.
    """
    from nemo_asr.parts.manifest import read_entries

    if os.geteuid() != 0:
        try:
            read_entries([path])
        except Exception as err:  # noqa: BLE001 - the test inspects it
            return f"{type(err).__name__}: {err}"
        return "no error"
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_end)
        try:
            os.setgid(65534)
            os.setuid(65534)
            read_entries([path])
            message = "no error"
        except Exception as err:  # noqa: BLE001
            message = f"{type(err).__name__}: {err}"
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(pid, 0)
    return message


def test_unreadable_manifest_says_permission_denied_naming_the_file():
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="perm_")  # in /tmp: searchable by every user, unlike tmp_path's parents
    try:
        os.chmod(folder, 0o755)
        path = os.path.join(folder, "secret.json")
        write_manifest(path, an4_rows()[:1])
        os.chmod(path, 0o000)
        message = _read_without_privileges(path)
        assert message.startswith("ManifestError: "), message
        assert f"Manifest {path}: permission denied; make it readable" in message
        os.chmod(folder, 0o700)  # now the folder itself cannot be searched
        os.chmod(path, 0o644)
        if os.geteuid() == 0:
            message = _read_without_privileges(path)
            assert f"Manifest {path}: permission denied" in message and "cannot be searched" in message, message
    finally:
        os.chmod(folder, 0o755)
        shutil.rmtree(folder)


@pytest.mark.slow
def test_training_script_reports_a_latin1_manifest_in_one_line(tmp_path):
    import subprocess

    from conftest import PYTHON, subprocess_env

    path = tmp_path / "latin1.json"
    row = dict(an4_rows()[0], text="na\u00efve")
    path.write_bytes(json.dumps(row, ensure_ascii=False).encode("latin-1") + b"\n")
    result = subprocess.run([PYTHON, os.path.join(REPO, "examples", "asr", "jasper.py"), "--model_config",
                             os.path.join(REPO, "tests", "data", "configs", "tiny_quartznet.yaml"),
                             "--train_dataset", str(path), "--work_dir", str(tmp_path), "--max_steps", "1"],
                            capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"jasper.py: error: {path}:1: not UTF-8 text"), result.stderr
    assert "re-encode the file as UTF-8" in lines[-1] and "--debug" in lines[-1]
