"""Data preparation scripts on small trees the tests write themselves."""
import importlib.util
import json
import os
import shutil
import subprocess
import tarfile

import numpy as np
import pytest
import soundfile as sf

from conftest import PYTHON, REPO, subprocess_env

SCRIPTS = os.path.join(REPO, "scripts")
AN4 = os.path.join(REPO, "tests", "data", "an4_subset")
HAVE_TTS = bool(shutil.which("espeak-ng") or shutil.which("flite"))


def run(script, *args, timeout=600):
    cmd = [PYTHON, os.path.join(SCRIPTS, script), *map(str, args)]
    result = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def rows(path):
    return [json.loads(line) for line in open(path)]


def tone(seconds, sr, freq=300.0):
    t = np.arange(int(seconds * sr)) / sr
    return (0.2 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_librispeech_tree(root, subset="dev-clean"):
    """LibriSpeech layout: <subset>/<speaker>/<chapter>/<spk>-<ch>-<utt>.flac + .trans.txt."""
    expected = {}
    for speaker, chapter in (("84", "121123"), ("174", "50561")):
        folder = os.path.join(root, "LibriSpeech", subset, speaker, chapter)
        os.makedirs(folder)
        lines = []
        for utt in range(2):
            uid = f"{speaker}-{chapter}-{utt:04d}"
            sf.write(os.path.join(folder, uid + ".flac"), tone(0.5 + utt * 0.25, 16000), 16000)
            text = f"HELLO SPEAKER {speaker} NUMBER {utt}"
            lines.append(f"{uid} {text}")
            expected[uid] = (text.lower(), 0.5 + utt * 0.25)
        with open(os.path.join(folder, f"{speaker}-{chapter}.trans.txt"), "w") as handle:
            handle.write("\n".join(lines) + "\n")
    return expected


@pytest.mark.parametrize("as_archive", [False, True])
def test_get_librispeech_data_from_tree_or_archive(tmp_path, as_archive):
    source = tmp_path / "downloads"
    expected = make_librispeech_tree(source)
    if as_archive:
        with tarfile.open(source / "dev-clean.tar.gz", "w:gz") as tar:
            tar.add(source / "LibriSpeech", arcname="LibriSpeech")
        shutil.rmtree(source / "LibriSpeech")
    data = tmp_path / "data"
    run("get_librispeech_data.py", "--data_root", data, "--data_sets", "dev_clean", "--archive_dir", source,
        "--workers", 2)
    manifest = rows(data / "dev_clean.json")
    assert len(manifest) == 4
    for row in manifest:
        uid = os.path.splitext(os.path.basename(row["audio_filepath"]))[0]
        text, seconds = expected[uid]
        assert row["text"] == text and abs(row["duration"] - seconds) < 1e-3
        info = sf.info(row["audio_filepath"])
        assert info.samplerate == 16000 and info.format == "WAV"


def test_get_librispeech_rejects_unknown_subset(tmp_path):
    cmd = [PYTHON, os.path.join(SCRIPTS, "get_librispeech_data.py"), "--data_root", str(tmp_path),
           "--data_sets", "dev_dirty"]
    result = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True)
    assert result.returncode != 0 and "unknown data set(s) dev_dirty" in result.stderr


def test_process_an4_data_converts_sphere(tmp_path):
    root = tmp_path / "an4root"
    for split, speaker, utts in (("train", "fash", ["an251-fash-b", "an253-fash-b"]), ("test", "fcaw", ["an406-fcaw-b"])):
        folder = root / "an4" / "wav" / f"an4{'' if split == 'train' else 'test'}_clstk" / speaker
        folder.mkdir(parents=True)
        fileids, transcripts = [], []
        for i, utt in enumerate(utts):
            sf.write(folder / f"{utt}.sph", tone(0.4 + 0.1 * i, 16000), 16000, format="NIST", subtype="PCM_16")
            fileids.append(f"an4{'' if split == 'train' else 'test'}_clstk/{speaker}/{utt}")
            transcripts.append(f"<s> RUBOUT G M E {i} </s> ({utt})")
        etc = root / "an4" / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        (etc / f"an4_{split}.fileids").write_text("\n".join(fileids) + "\n")
        (etc / f"an4_{split}.transcription").write_text("\n".join(transcripts) + "\n")
    run("process_an4_data.py", "--data_root", root, "--workers", 1)
    train = rows(root / "an4_converted" / "train_manifest.json")
    assert [r["text"] for r in train] == ["rubout g m e 0", "rubout g m e 1"]
    assert abs(train[1]["duration"] - 0.5) < 1e-3 and len(rows(root / "an4_converted" / "test_manifest.json")) == 1


def test_merge_manifests_with_duration_filter(tmp_path):
    out = tmp_path / "merged.json"
    result = run("merge_manifests.py", "--manifests", os.path.join(AN4, "train_manifest.json"),
                 os.path.join(AN4, "test_manifest.json"), "--output", out, "--max_duration", 0.9)
    merged = rows(out)
    test_rows = rows(os.path.join(AN4, "test_manifest.json"))
    assert len(merged) == sum(r["duration"] <= 0.9 for r in test_rows)  # all train clips are 1.0 s
    assert all(os.path.isabs(r["audio_filepath"]) and os.path.exists(r["audio_filepath"]) for r in merged)
    assert f"{len(merged)} utterances" in result.stdout


def test_speed_perturb_manifest(tmp_path):
    run("speed_perturb_manifest.py", "--input_manifest", os.path.join(AN4, "test_manifest.json"),
        "--output_dir", tmp_path, "--rates", 0.9, 1.1, "--workers", 2)
    out = rows(tmp_path / "test_manifest_speed_perturbed.json")
    original = rows(os.path.join(AN4, "test_manifest.json"))
    assert len(out) == 3 * len(original)
    slow, fast = out[len(original)], out[2 * len(original)]
    assert abs(slow["duration"] - original[0]["duration"] / 0.9) < 0.01
    assert abs(fast["duration"] - original[0]["duration"] / 1.1) < 0.01
    assert slow["text"] == original[0]["text"]


def test_build_lm_pure_python_is_loadable_by_kenlm(tmp_path):
    kenlm = pytest.importorskip("kenlm")
    text = tmp_path / "text.txt"
    text.write_text("Set the lamp to 50%.\nset the radio to ten percent\nopen the door\n")
    run("build_lm.py", "--input", text, "--output", tmp_path / "lm.arpa", "--order", 3, "--backend", "python")
    model = kenlm.Model(str(tmp_path / "lm.arpa"))
    assert model.order == 3
    assert model.score("set the lamp to fifty percent") > model.score("percent fifty to lamp the set")


@pytest.mark.skipif(not HAVE_TTS, reason="needs espeak-ng or flite (scripts/install_system_deps.sh)")
def test_synthetic_corpus_holds_out_voices_and_sentences(tmp_path):
    args = ["--output_dir", tmp_path / "corpus", "--train", 24, "--dev", 6, "--test", 6, "--seed", 3, "--workers", 2]
    run("make_synthetic_speech.py", *args)
    splits = {s: rows(tmp_path / "corpus" / f"{s}_manifest.json") for s in ("train", "dev", "test")}
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [24, 6, 6]
    train_voices = {r["voice"] for r in splits["train"]}
    train_text = {r["text"] for r in splits["train"]}
    for split in ("dev", "test"):
        assert not train_voices & {r["voice"] for r in splits[split]}
        assert not train_text & {r["text"] for r in splits[split]}
    for row in splits["dev"]:
        info = sf.info(tmp_path / "corpus" / row["audio_filepath"])
        assert info.samplerate == 16000 and abs(info.duration - row["duration"]) < 1e-3 and info.duration > 0.5
    stamp = (tmp_path / "corpus" / "corpus.json").read_text()
    again = run("make_synthetic_speech.py", *args)  # cached: nothing regenerated
    assert "Cached corpus" in again.stderr and (tmp_path / "corpus" / "corpus.json").read_text() == stamp
    # what waiting ranks poll: ready only for these very settings, with the stamp whole and impulses written
    from nemo_asr.synthetic_speech import corpus_ready

    corpus = str(tmp_path / "corpus")
    assert corpus_ready(corpus, 24, 6, 6, seed=3) and not corpus_ready(corpus, 24, 6, 6, seed=4)
    assert not corpus_ready(corpus, 24, 6, 7, seed=3)
    (tmp_path / "corpus" / "impulse_manifest.json").rename(tmp_path / "impulses.json")
    assert not corpus_ready(corpus, 24, 6, 6, seed=3)
    (tmp_path / "impulses.json").rename(tmp_path / "corpus" / "impulse_manifest.json")
    (tmp_path / "corpus" / "corpus.json").write_text(stamp[:20])  # cut short
    assert not corpus_ready(corpus, 24, 6, 6, seed=3)
    (tmp_path / "corpus" / "corpus.json").write_text(stamp)
    other = tmp_path / "corpus2"
    run("make_synthetic_speech.py", *[other if a == tmp_path / "corpus" else a for a in args])
    assert rows(other / "train_manifest.json") == splits["train"]  # deterministic for a seed
    first = splits["train"][0]["audio_filepath"]
    assert np.array_equal(sf.read(other / first)[0], sf.read(tmp_path / "corpus" / first)[0])


def test_wide_voice_set_adds_training_speakers_and_keeps_dev_and_test_voices_held_out():
    from nemo_asr.synthetic_speech import ACCENTED_VOICES, WIDE_ESPEAK_VARIANTS, voices_for

    engines = ["espeak", "flite"]
    wide, base = voices_for("train", engines, voice_set="wide"), voices_for("train", engines)
    assert set(base) < set(wide) and len(wide) - len(base) == 5 * len(WIDE_ESPEAK_VARIANTS)
    for split in ("dev", "test"):  # the same held-out voices whatever the training set
        held = voices_for(split, engines)
        assert held == voices_for(split, engines, voice_set="wide") and not set(held) & set(wide)
        assert held == voices_for(split, engines + ["festival"], voice_set="recorded")
        assert not {accent for _, accent, _ in held} & {accent for _, accent, _ in wide}
    recorded = voices_for("train", engines + ["festival"], voice_set="recorded")
    assert set(recorded) - set(wide) == {("festival", "ked_diphone", "")}
    accented = voices_for("train", engines + ["festival"], voice_set="accented")
    assert set(accented) - set(recorded) == {("festival", v, "") for v in ACCENTED_VOICES} and len(ACCENTED_VOICES) == 7
    for split in ("dev", "test"):
        assert voices_for(split, engines + ["festival"], voice_set="accented") == voices_for(split, engines)
    installed = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True).stdout \
        if shutil.which("espeak-ng") else None
    if installed is not None:  # every added variant is one espeak-ng has (an unknown one would fall back silently)
        names = {line.split()[-1].rsplit("/", 1)[-1] for line in installed.splitlines()[1:] if line.strip()}
        assert set(WIDE_ESPEAK_VARIANTS) <= names, set(WIDE_ESPEAK_VARIANTS) - names


def test_room_impulses_decay_like_a_room_and_travel_with_their_manifest(tmp_path):
    from nemo_asr.parts.perturb import AudioAugmentor
    from nemo_asr.synthetic_speech import IMPULSE_RT60_S, write_room_impulses

    manifest = write_room_impulses(str(tmp_path / "corpus"), seed=5, count=4)
    listed = rows(manifest)
    assert [row["audio_filepath"] for row in listed] == [f"impulses/room_{i:02d}.wav" for i in range(4)]
    for row in listed:
        impulse, rate = sf.read(tmp_path / "corpus" / row["audio_filepath"])
        assert rate == 16000 and IMPULSE_RT60_S[0] <= row["rt60"] <= IMPULSE_RT60_S[1]
        assert np.argmax(np.abs(impulse)) == 0  # the direct sound first: speech stays aligned with its text
        energy = np.cumsum(impulse[::-1] ** 2)[::-1]  # Schroeder decay: about -60 dB at RT60
        at_half = 10 * np.log10(energy[len(impulse) // 2] / energy[0])
        assert -40 < at_half < -15, at_half
    assert write_room_impulses(str(tmp_path / "corpus"), seed=5, count=4) == manifest  # kept, not rewritten
    # a perturbation YAML next to the manifest names it relatively, from any working directory
    (tmp_path / "corpus" / "perturb.yaml").write_text(
        "perturbations:\n- {type: impulse, prob: 1.0, manifest_path: impulse_manifest.json}\n")
    augmentor = AudioAugmentor.from_config(str(tmp_path / "corpus" / "perturb.yaml"), 16000, seed=0)
    click = np.zeros(16000, dtype=np.float32)
    click[100] = 1.0
    wet = augmentor(click)
    assert wet.shape == click.shape and np.argmax(np.abs(wet)) == 100 and np.count_nonzero(np.abs(wet) > 1e-3) > 100


@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("flite")), reason="needs espeak-ng and flite")
def test_engine_holdout_split_trains_on_one_engine_and_tests_on_the_other(tmp_path):
    run("make_synthetic_speech.py", "--output_dir", tmp_path, "--train", 8, "--dev", 3, "--test", 3,
        "--holdout_engine", "flite", "--workers", 2)
    engines = {s: {r["voice"].split(":")[0] for r in rows(tmp_path / f"{s}_manifest.json")}
               for s in ("train", "dev", "test")}
    assert engines == {"train": {"espeak"}, "dev": {"flite"}, "test": {"flite"}}


@pytest.mark.skipif(not all(shutil.which(b) for b in ("espeak-ng", "flite", "text2wave")),
                    reason="needs espeak-ng, flite and festival (scripts/install_system_deps.sh)")
def test_recorded_voice_set_trains_on_festival_too_and_still_holds_flite_out(tmp_path):
    import librosa

    run("make_synthetic_speech.py", "--output_dir", tmp_path, "--train", 20, "--dev", 2, "--test", 2,
        "--holdout_engine", "flite", "--voice_set", "recorded", "--festival_share", "0.5", "--workers", 2)
    voices = {s: {r["voice"] for r in rows(tmp_path / f"{s}_manifest.json")} for s in ("train", "dev", "test")}
    assert {v.split(":")[0] for v in voices["train"]} == {"espeak", "festival"}
    assert "festival:ked_diphone" in voices["train"]
    assert {v.split(":")[0] for v in voices["dev"] | voices["test"]} == {"flite"}
    # festival's rendering follows the corpus's pitch and rate: a higher pitch setting gives a higher F0
    from nemo_asr.synthetic_speech import synthesize

    f0 = {}
    for pitch in (25, 75):
        path = tmp_path / "train" / f"ked_{pitch}.wav"
        row = synthesize((str(path), "the red cat is in the garden", ("festival", "ked_diphone", ""), 1.0, pitch,
                          None, 0))
        assert row["voice"] == "festival:ked_diphone" and row["duration"] > 1.0
        audio, rate = sf.read(path)
        track, _, _ = librosa.pyin(audio, fmin=50, fmax=300, sr=rate)
        f0[pitch] = np.nanmedian(track)
    assert 80 < f0[25] < 110 and 130 < f0[75] < 170, f0
    # without festival the set is refused in one clear line, not silently trained without it, and the
    # cached corpus keeps its stamp (still valid for a run with festival)
    stamp = (tmp_path / "corpus.json").read_text()
    cmd = [PYTHON, os.path.join(SCRIPTS, "make_synthetic_speech.py"), "--output_dir", str(tmp_path), "--train", "20",
           "--dev", "2", "--test", "2", "--holdout_engine", "flite", "--voice_set", "recorded", "--festival_share",
           "0.5", "--engines", "espeak", "flite"]
    result = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "needs festival" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "corpus.json").read_text() == stamp
    # holding espeak-ng out instead: flite trains, festival only at its share
    from nemo_asr.synthetic_speech import parse_args, plan

    args = parse_args(["--output_dir", str(tmp_path / "x"), "--train", "200", "--holdout_engine", "espeak",
                       "--voice_set", "recorded"])
    engines = [job[2][0] for split, job in plan(args, ["espeak", "flite", "festival"]) if split == "train"]
    assert 0.1 < engines.count("festival") / len(engines) < 0.3 and engines.count("espeak") == 0


def test_the_plans_of_published_corpora_do_not_change():
    """The demo corpora behind the README's figures are rebuilt from their seed: their plans (sentence, voice,
    rate, pitch, noise of every utterance) must stay what they were when measured (digests from commit f8b56da)."""
    import hashlib

    from nemo_asr.synthetic_speech import parse_args, plan

    expected = {("base", None): "3c87e6f0c3aa", ("wide", None): "b79bd7369b69", ("recorded", "flite"): "543782fc6366"}
    for (voice_set, holdout), digest in expected.items():
        argv = ["--output_dir", "corpus", "--train", "3000", "--voice_set", voice_set]
        jobs = plan(parse_args(argv + (["--holdout_engine", holdout] if holdout else [])), ["espeak", "flite", "festival"])
        text = json.dumps([(split, list(job[:7])) for split, job in jobs])
        assert hashlib.sha256(text.encode()).hexdigest()[:12] == digest, voice_set


def test_accented_voices_map_each_english_syllable_to_the_voice_s_phones():
    from nemo_asr.accented_voices import _TABLES, VOICES, lexicon_entries, map_syllable, map_word

    stella = {"stella": [(["s", "t", "eh"], 1), (["l", "ax"], 0)]}
    # Italian marks the stressed vowel; Czech has no stressed phones
    assert lexicon_entries("pc_diphone", stella) == "(lex.add.entry '(\"stella\" nil (((s t E1) 1) ((l a) 0))))\n"
    assert lexicon_entries("czech_dita", stella) == "(lex.add.entry '(\"stella\" nil (((s t e) 1) ((l e) 0))))\n"
    # no /h/ in Italian; a diphthong is two vowels, the first one stressed
    assert map_syllable("lp_diphone", ["hh", "ay"], 1) == ["a1", "i"]
    assert map_syllable("hy_fi_mv_diphone", ["th", "ih", "ng"], 0) == ["T", "i", "N"]
    # word repairs: Italian ends no word in "dZ"; Czech glides from "i" into a vowel; a syllable left empty goes
    assert map_word("pc_diphone", [(["b", "r", "ih", "jh"], 1)]) == [(["b", "r", "i1", "dZ", "e"], 1)]
    radio = [(["r", "ey"], 1), (["d", "iy"], 0), (["ow"], 0)]
    assert map_word("czech_ph", radio) == [(["r", "e", "j"], 1), (["d", "i:"], 0), (["j", "o", "u"], 0)]
    assert map_word("pc_diphone", [(["hh"], 1), (["ow"], 0)]) == [(["o", "u"], 0)]
    # every table maps exactly the phones festival's CMU lexicon uses (39 CMU phones, unstressed "ah" as "ax")
    cmu = set("aa ae ah ao aw ax axr ay b ch d dh eh er ey f g hh ih iy jh k l m n ng ow oy p r s sh t th uh uw v w y "
              "z zh".split())
    assert {language: set(table) for language, table in _TABLES.items()} == dict.fromkeys(_TABLES, cmu)
    assert {language for language, _ in VOICES.values()} == set(_TABLES)
    # shares: each 0-1, and the English and accented festival voices together at most all of training
    from nemo_asr.synthetic_speech import parse_args, plan
    from nemo_core.utils.cli import UserError

    with pytest.raises(SystemExit):
        parse_args(["--output_dir", "x", "--accented_share", "1.5"])
    args = parse_args(["--output_dir", "x", "--voice_set", "accented", "--festival_share", "0.7", "--accented_share",
                       "0.5"])
    with pytest.raises(UserError, match="add up to more than all"):
        plan(args, ["espeak", "flite", "festival"])
    args.festival_share, args.accented_share = 0.1, 0.3
    train = [job[2] for split, job in plan(args, ["espeak", "flite", "festival"]) if split == "train"]
    ked = sum(v[1] == "ked_diphone" for v in train) / len(train)
    accented = sum(v[1] in VOICES for v in train) / len(train)
    assert 0.07 < ked < 0.13 and 0.26 < accented < 0.34, (ked, accented)


def accented_voices_installed():
    from nemo_asr.accented_voices import PACKAGES

    if not all(shutil.which(b) for b in ("festival", "text2wave", "espeak-ng")):
        return False
    status = subprocess.run(["dpkg-query", "-W", "-f", "${Status}\n", *PACKAGES], capture_output=True, text=True)
    return status.returncode == 0 and status.stdout.count("install ok installed") == len(PACKAGES)


HAVE_ACCENTED = accented_voices_installed()


def festival_print(tmp_path, *commands):
    script = tmp_path / "print.scm"
    script.write_text("\n".join(commands) + "\n")
    result = subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()


@pytest.mark.skipif(not HAVE_ACCENTED, reason="needs festival's Italian, Czech and Finnish voices "
                                              "(scripts/install_system_deps.sh)")
def test_accented_voices_say_every_corpus_word_with_their_own_phones_and_the_mapped_pronunciation(tmp_path):
    from nemo_asr.accented_voices import VOICES, cmu_pronunciations, lexicon_entries, map_word
    from nemo_asr.synthetic_speech import vocabulary

    pronunciations = cmu_pronunciations(vocabulary())
    assert set(pronunciations) == set(vocabulary())
    assert pronunciations["thursday"][0] == (["th", "er", "z"], 1)
    for voice in VOICES:
        inventory = festival_print(tmp_path, f"(voice_{voice})", "(print (mapcar car (car (cdr (car "
                                   "(PhoneSet.description '(phones)))))))")[-1]
        inventory = set(inventory.strip("()").split())
        used = {p for syllables in pronunciations.values() for phones, _ in map_word(voice, syllables) for p in phones}
        assert used <= inventory, (voice, used - inventory)
        # every word is said without a gap: festival puts silence where the voice has no recording of a phone
        # pair ("using default diphone"). "fishs" is the grammar's own misspelt plural (README, known limits).
        lexicon = tmp_path / f"{voice}.scm"
        lexicon.write_text(lexicon_entries(voice, pronunciations))
        script = tmp_path / "say.scm"
        script.write_text("\n".join([f"(voice_{voice})", f'(load "{lexicon}")'] + [
            f'(format stderr "WORD {word}\\n")\n(utt.synth (Utterance Text "{word}"))' for word in vocabulary()]))
        said = subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True, timeout=300)
        word, gaps = None, []
        for line in said.stderr.splitlines():
            word = line[5:] if line.startswith("WORD ") else word
            if "default diphone" in line and word != "fishs":
                gaps.append((word, line.split(" for ")[-1]))
        assert said.returncode == 0 and word == vocabulary()[-1] and not gaps, (voice, gaps, said.stderr[-300:])
    # the voice says a word as the map has it, not by its own letter-to-sound rules ("t u r z d a1 i")
    lexicon = tmp_path / "pc.scm"
    lexicon.write_text(lexicon_entries("pc_diphone", pronunciations))
    said = festival_print(tmp_path, "(voice_pc_diphone)", f'(load "{lexicon}")',
                          '(set! u (utt.synth (Utterance Text "thursday")))',
                          "(print (mapcar item.name (utt.relation.items u 'Segment)))")[-1]
    assert said.split()[1:4] == ['"t"', '"e1"', '"r"'], said
    # the corpus: the accented voices at --accented_share, each with its lexicon; dev and test as before
    run("make_synthetic_speech.py", "--output_dir", tmp_path / "c", "--train", 24, "--dev", 1, "--test", 1,
        "--voice_set", "accented", "--festival_share", 0, "--accented_share", 1, "--engines", "espeak", "festival",
        "--workers", 2)
    train = rows(tmp_path / "c" / "train_manifest.json")
    voices = {r["voice"] for r in train}
    assert {v.split(":")[0] for v in voices} == {"festival"} and len(voices) >= 6, voices
    assert all(r["duration"] > 1.0 for r in train)
    assert "festival:ked_diphone" not in voices
    assert sorted(os.listdir(tmp_path / "c" / "lexicons")) == sorted(f"{v}.scm" for v in VOICES)
    assert (tmp_path / "c" / "lexicons" / "czech_krb.scm").read_text() == lexicon_entries("czech_krb", pronunciations)
    assert {r["voice"].split(":")[0] for r in rows(tmp_path / "c" / "dev_manifest.json")} == {"espeak"}
    # each accented job carries its lexicon, which festival loads right after selecting the voice
    from nemo_asr.synthetic_speech import festival_command, lexicon_path, parse_args, plan

    args = parse_args(["--output_dir", str(tmp_path / "c"), "--train", "40", "--voice_set", "accented"])
    festival_jobs = [job for _, job in plan(args, ["espeak", "festival"]) if job[2][0] == "festival"]
    assert {job[2][1] for job in festival_jobs} & set(VOICES)
    for job in festival_jobs:
        assert job[7] == lexicon_path(str(tmp_path / "c"), job[2][1])
        assert (job[7] is None) == (job[2][1] == "ked_diphone")
    command = festival_command("czech_ph", 1.0, 50, "out.wav", lexicon_path("c", "czech_ph"))
    assert command[1:5] == ["-eval", "(voice_czech_ph)", "-eval", os.path.abspath("c/lexicons/czech_ph.scm")]


@pytest.mark.skipif(not shutil.which("text2wave"), reason="needs festival (scripts/install_system_deps.sh)")
def test_a_festival_voice_that_is_not_installed_is_refused_before_anything_is_built(tmp_path, monkeypatch):
    from nemo_asr import synthetic_speech
    from nemo_core.utils.cli import UserError

    monkeypatch.setitem(synthetic_speech.VOICE_SETS, "recorded", ([], ["no_such_diphone"]))
    args = synthetic_speech.parse_args(["--output_dir", str(tmp_path / "c"), "--voice_set", "recorded"])
    with pytest.raises(UserError, match="cannot speak with voice no_such_diphone.*festvox-kdlpc16k"):
        synthetic_speech.build(args)
    assert not (tmp_path / "c").exists()


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_TTS, reason="needs espeak-ng or flite (scripts/install_system_deps.sh)")
def test_demo_runs_end_to_end_on_a_tiny_corpus(tmp_path):
    cmd = [PYTHON, os.path.join(REPO, "examples", "asr", "quartznet.py"), "--work_dir", str(tmp_path),
           "--demo_utterances", "16", "4", "4", "--num_epochs", "1", "--batch_size", "8",
           "--demo_voice_set", "wide", "--demo_augment", "--lm_grid_grow", "1"]
    result = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| dev_manifest |" in result.stdout and "| test_manifest |" in result.stdout
    summary = json.loads((tmp_path / "quartznet_demo" / "results.json").read_text())
    assert set(summary["eval"]) == {"dev_manifest", "test_manifest"}
    # beam search with a 3-gram LM from the training transcripts, tuned on dev, next to greedy
    lm = summary["beam_lm"]
    assert lm["order"] == 3 and lm["tuned_on"] == "dev_manifest" and set(lm["wer"]) == set(summary["eval"])
    assert os.path.isfile(lm["lm_path"]) and lm["grow"] == 1 and lm["beam_width"] == 64
    # the 3 x 3 grid first, then any pairs grown past its edges in the one round --lm_grid_grow allows
    assert [(row["alpha"], row["beta"]) for row in lm["grid"][:9]] == [
        (alpha, beta) for alpha in (1.0, 1.5, 2.5) for beta in (0.5, 2.0, 4.0)] and len(lm["grid"]) <= 16
    # the LM pass recognises the same utterances with the same weights as the final evaluation
    assert lm["greedy_wer"] == {tag: row["wer"] for tag, row in summary["eval"].items()}
    assert "beam 64 + 3-gram LM WER" in result.stdout and "(tuned here)" in result.stdout
    # --demo_augment: trained with speed, the corpus's room impulses and noise; --demo_voice_set wide: its own corpus
    from ruamel.yaml import YAML

    resolved = YAML(typ="safe").load((tmp_path / "quartznet_demo" / "config.yaml").read_text())
    assert resolved["args"]["perturb_config"] == str(tmp_path / "demo_corpus_wide" / "perturb.yaml")
    assert len(rows(tmp_path / "demo_corpus_wide" / "impulse_manifest.json")) == 32


def test_demo_without_the_lm_extra_reports_greedy_only_and_says_how_to_add_beam_search(monkeypatch, capsys):
    quartznet = load_quartznet_script()
    monkeypatch.setattr(quartznet, "lm_extra_installed", lambda: False)  # as after pip install -e ".[asr]"
    parser, regular = quartznet.build_parser()
    assert quartznet.resolve_defaults(parser.parse_args([]), regular, demo=True).lm_order == 0
    assert "pip install -e '.[lm]' adds beam search" in capsys.readouterr().out
    # asked for by name, the LM table is not dropped: jasper.py then names the missing extra
    assert quartznet.resolve_defaults(parser.parse_args(["--lm_order", "4"]), regular, demo=True).lm_order == 4


def load_quartznet_script():
    spec = importlib.util.spec_from_file_location("quartznet", os.path.join(REPO, "examples", "asr", "quartznet.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_defaults_never_override_what_the_user_typed():
    quartznet = load_quartznet_script()
    parser, regular = quartznet.build_parser()
    typed = ["--amp_opt_level", "O0", "--lr_policy=CosineAnnealing", "--num_epo", "2", "--lr", "0.02"]
    args = quartznet.resolve_defaults(parser.parse_args(typed), regular, demo=True)
    # typed values stand even where they equal the script's own defaults (O0, CosineAnnealing), abbreviated or not
    assert (args.amp_opt_level, args.lr_policy, args.num_epochs, args.lr) == ("O0", "CosineAnnealing", 2, 0.02)
    assert (args.batch_size, args.random_seed, args.bucketing, args.warmup_steps) == (16, 0, True, 200)
    assert args.model_config.endswith("quartznet_demo.yaml")
    untyped = quartznet.resolve_defaults(parser.parse_args([]), regular, demo=True)
    assert untyped.lr_policy == "SquareRootAnnealing" and untyped.num_epochs == 13 and untyped.lr == 0.015
    assert untyped.amp_opt_level == ("O1" if quartznet.demo_mixed_precision_pays() else "O0")
    # with a dataset of one's own, the demo's schedule does not apply: jasper.py's defaults do
    own = quartznet.resolve_defaults(parser.parse_args(["--train_dataset", "t.json"]), regular, demo=False)
    assert own.model_config.endswith("quartznet15x5.yaml") and own.lr == regular["lr"] != 0.015
    assert own.exp_name == regular["exp_name"] and own.bucketing == regular["bucketing"]
    assert untyped.lm_order == (3 if quartznet.lm_extra_installed() else 0) and own.lm_order == 0
    # the demo's corpus and augmentation: base voices, no augmentation unless asked for
    assert (untyped.demo_voice_set, untyped.demo_augment, untyped.perturb_config) == (None, None, None)
    # the demo corpus options are an error with a dataset of one's own, not silently ignored
    with pytest.raises(SystemExit):
        quartznet.main(["--train_dataset", "t.json", "--demo_holdout_engine", "flite"])
