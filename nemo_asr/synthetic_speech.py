"""Build a synthetic spoken corpus with text-to-speech engines from Debian
packages (``espeak-ng``, ``flite`` and, for the ``recorded`` and ``accented``
voice sets, ``festival`` with its ``ked`` voice and, for ``accented``, its
Italian, Czech and Finnish voices speaking English: ``nemo_asr.accented_voices``),
for demos and tests.

Each utterance gets a sentence from a small grammar written for this project,
a voice (engine + base voice + variant), a speaking rate and a pitch, and
optionally white noise. Output: 16 kHz mono WAV files plus ``train``, ``dev``
and ``test`` manifests. Dev and test use voices *and* sentences that never
occur in training (espeak-ng accents and variants held out; flite's five
voices all serve training). Deterministic for a seed, parallel, and cached: a second
run with the same settings only checks the files. The corpus folder also gets
32 synthetic room impulse responses (``impulse_manifest.json``) for
reverberation augmentation.

Install the engines with ``scripts/install_system_deps.sh``
(``apt-get install espeak-ng flite festival festvox-kdlpc16k``, and for the ``accented`` voice
set the packages of ``nemo_asr.accented_voices.PACKAGES``). Command line:
``scripts/make_synthetic_speech.py``; the demo (``examples/asr/quartznet.py``)
calls ``build_corpus``.
"""
import argparse
import hashlib
import json
import logging
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import soundfile as sf

from nemo_asr import accented_voices
from nemo_asr.parts.data_prep import write_manifest
from nemo_core.deployment import write_atomic
from nemo_core.utils.cli import UserError, add_debug_flag, one_line_errors

logger = logging.getLogger("make_synthetic_speech")
SAMPLE_RATE = 16000
VERSION = 3  # bump when generation changes, so caches are rebuilt

# ------------------------------------------------------------ word lists
NAMES = ["anna", "ben", "clara", "david", "emma", "frank", "grace", "henry", "iris", "jack", "kate", "leo",
         "maria", "nora", "oscar", "paula", "ruth", "sam", "tina", "victor"]
OBJECTS = ["lamp", "radio", "window", "door", "heater", "kettle", "fan", "screen", "printer", "camera",
           "speaker", "oven", "clock", "light", "alarm"]
PLACES = ["kitchen", "garden", "office", "garage", "bedroom", "hallway", "station", "library", "market",
          "harbor", "museum", "bakery", "school", "park", "bridge"]
COLORS = ["red", "blue", "green", "yellow", "black", "white", "brown", "purple", "orange", "gray"]
ANIMALS = ["cat", "dog", "horse", "rabbit", "bird", "fish", "mouse", "sheep", "goat", "duck"]
FOODS = ["apples", "bread", "cheese", "coffee", "eggs", "rice", "soup", "tea", "milk", "honey"]
VERBS_DEVICE = ["turn on", "turn off", "open", "close", "check", "clean", "move", "fix"]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
           "twelve", "twenty", "thirty", "forty", "fifty", "hundred"]
ADJECTIVES = ["small", "large", "old", "new", "quiet", "bright", "warm", "cold", "fast", "slow"]

TEMPLATES = [
    "please {verb} the {object} in the {place}",
    "{name} will meet {name2} at the {place} on {day}",
    "buy {number} bags of {food} for {name}",
    "the {color} {animal} is in the {place}",
    "set the {object} to {number} percent",
    "{name} has {number} {adjective} {animal}s",
    "call {name} on {day} about the {object}",
    "is the {adjective} {object} in the {place}",
    "{name} likes {food} and {food2}",
    "move the {color} {object} to the {place}",
    "we need {number} {color} {object}s by {day}",
    "the {place} opens at {number} on {day}",
]
FIELDS = {"name": NAMES, "name2": NAMES, "object": OBJECTS, "place": PLACES, "color": COLORS, "animal": ANIMALS,
          "food": FOODS, "food2": FOODS, "verb": VERBS_DEVICE, "day": DAYS, "number": NUMBERS,
          "adjective": ADJECTIVES}


def make_sentence(rng):
    template = rng.choice(TEMPLATES)
    values = {key: rng.choice(words) for key, words in FIELDS.items()}
    return " ".join(template.format(**values).split())


def vocabulary():
    words = set()
    for template in TEMPLATES:
        words.update(w for w in template.replace("{", " {").split() if not w.startswith("{"))
    for values in FIELDS.values():
        for value in values:
            words.update(value.split())
    words.update(f"{a}s" for a in ANIMALS + OBJECTS)
    return sorted(words)


# ---------------------------------------------------------------- voices
ESPEAK_VOICES = ["en-us", "en-gb", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-scotland", "en-gb-x-gbcwmd"]
ESPEAK_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2"]
# ``--voice_set wide`` adds these variants (espeak-ng's named speakers and the other Klatt
# synthesiser settings; not the whispering, croaking or robotic ones) to the training voices: 3x the speakers
WIDE_ESPEAK_VARIANTS = ["m8", "klatt3", "klatt4", "klatt6", "adam", "Alex", "Alicia", "Andy", "Annie", "aunty",
                        "belinda", "benjamin", "caleb", "david", "ed", "edward", "Gene", "grandma", "grandpa", "john",
                        "Lee", "linda", "max", "Michael", "Mike", "norbert", "paul", "quincy", "rob", "robert",
                        "shelby", "steph", "travis", "victor", "zac"]
# ``--voice_set recorded`` also trains on festival's ked, a diphone voice made from recorded speech (every other
# voice here but flite's is formant synthesis). Festival's two other English voices in Debian's main archive,
# kal and slt, are speakers flite has too, so they would leak flite's voices into an engine-holdout split.
FESTIVAL_VOICES = ["ked_diphone"]
# ``--voice_set accented`` adds seven more speakers recorded from real voices: festival's Italian, Czech and Finnish
# voices reading the corpus's English words through a phone map (``nemo_asr.accented_voices``)
ACCENTED_VOICES = list(accented_voices.VOICES)
# name: (espeak-ng variants, festival voices) for training
VOICE_SETS = {"base": (ESPEAK_VARIANTS, []), "wide": (ESPEAK_VARIANTS + WIDE_ESPEAK_VARIANTS, []),
              "recorded": (ESPEAK_VARIANTS + WIDE_ESPEAK_VARIANTS, FESTIVAL_VOICES),
              "accented": (ESPEAK_VARIANTS + WIDE_ESPEAK_VARIANTS, FESTIVAL_VOICES + ACCENTED_VOICES)}
FLITE_VOICES = ["kal16", "awb", "slt", "rms", "kal"]
# Held-out voices: espeak accents and variants never used in training. flite
# has only five voices, too few to hold one out and still generalise to it
# (measured: 53% WER on an unseen flite voice vs 18% on unseen espeak
# accents), so all flite voices serve training, at ``--flite_share``.
HELD_OUT = {
    "dev": {"espeak": (["en-gb-scotland"], ["m4", "f4"]), "flite": []},
    "test": {"espeak": (["en-gb-x-gbcwmd"], ["m5", "f5"]), "flite": []},
}


def voices_for(split, engines, holdout_engine=None, voice_set="base"):
    """(engine, voice, variant) triples of ``split``. With ``holdout_engine`` the split is by engine instead:
    every voice of the other engine trains, every voice of ``holdout_engine`` is dev and test (a voice family the
    model never heard; measures robustness rather than accuracy). ``voice_set``: the espeak-ng variants and
    festival voices of training (``VOICE_SETS``); the held-out voices of dev and test are the same in every set
    (festival's voices serve training only)."""
    variants, festival_voices = VOICE_SETS[voice_set]
    festival = [("festival", v, "") for v in festival_voices] if split == "train" else []
    if holdout_engine is not None:
        everything = ([("espeak", v, var) for v in ESPEAK_VOICES for var in variants]
                      + [("flite", v, "") for v in FLITE_VOICES] + festival)
        held_out = split != "train"
        return [v for v in everything if (v[0] == holdout_engine) == held_out and v[0] in engines]
    if split == "train":
        held_voices = {v for s in HELD_OUT.values() for v in s["espeak"][0]}
        held_variants = {v for s in HELD_OUT.values() for v in s["espeak"][1]}
        held_flite = {v for s in HELD_OUT.values() for v in s["flite"]}
        espeak = [("espeak", v, var) for v in ESPEAK_VOICES if v not in held_voices
                  for var in variants if var not in held_variants]
        flite = [("flite", v, "") for v in FLITE_VOICES if v not in held_flite]
    else:
        voices, variants = HELD_OUT[split]["espeak"]
        espeak = [("espeak", v, var) for v in voices for var in variants]
        flite = [("flite", v, "") for v in HELD_OUT[split]["flite"]]
    return [v for v in espeak + flite + festival if v[0] in engines]


ENGINE_BINARIES = {"espeak": "espeak-ng", "flite": "flite", "festival": "text2wave"}


def available_engines():
    return [name for name, binary in ENGINE_BINARIES.items() if shutil.which(binary)]


def festival_command(voice, rate, pitch, output, lexicon=None):
    """text2wave (festival) rendering the text on its stdin with ``voice`` at speaking ``rate`` and a mean F0 set
    from ``pitch`` (25-75, as espeak-ng's ``-p``; 90-150 Hz, like flite's; the accented voices keep their own).
    ``lexicon``: a file of festival commands evaluated after the voice is selected (``lexicon_path``)."""
    f0 = int(60 + pitch * 1.2)
    return ["text2wave", "-eval", f"(voice_{voice})", *(["-eval", lexicon] if lexicon else []),
            "-eval", f"(Parameter.set 'Duration_Stretch {1.0 / rate:.3f})",
            "-eval", f"(set! int_lr_params '((target_f0_mean {f0}) (target_f0_std {f0 // 6}) "
                     "(model_f0_mean 170) (model_f0_std 34)))", "-o", output]


def has_accented(voice_set):
    """Whether ``voice_set`` trains on accented voices (``nemo_asr.accented_voices``)."""
    return bool(set(VOICE_SETS[voice_set][1]) & set(accented_voices.VOICES))


def lexicon_path(output_dir, voice):
    """Where a corpus keeps the English pronunciations of an accented voice (None for any other voice)."""
    if voice not in accented_voices.VOICES:
        return None
    return os.path.join(os.path.abspath(output_dir), "lexicons", f"{voice}.scm")  # absolute: -eval runs "(..." as code


def write_lexicons(output_dir, voices):
    """The corpus vocabulary's pronunciations for each accented voice among ``voices``, at ``lexicon_path``."""
    voices = [v for v in voices if lexicon_path(output_dir, v)]
    if not voices:
        return
    pronunciations = accented_voices.cmu_pronunciations(vocabulary())
    os.makedirs(os.path.join(output_dir, "lexicons"), exist_ok=True)
    for voice in voices:
        entries = accented_voices.lexicon_entries(voice, pronunciations)

        def write(tmp, entries=entries):
            with open(tmp, "w") as handle:
                handle.write(entries)

        write_atomic(lexicon_path(output_dir, voice), write)


# ------------------------------------------------------------- synthesis
def synthesize(job):
    """Render one utterance to a 16 kHz WAV; returns its manifest row. ``job``: (path, text, (engine, voice,
    variant), rate, pitch, SNR in dB or None, noise seed[, festival lexicon file or None])."""
    from nemo_asr.parts.audio import resample

    path, text, (engine, voice, variant), rate, pitch, snr_db, seed, *lexicon = job
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "raw.wav")
        if engine == "espeak":
            name = f"{voice}+{variant}" if variant else voice
            cmd = ["espeak-ng", "-v", name, "-s", str(int(160 * rate)), "-p", str(int(pitch)), "-w", raw, text]
        elif engine == "festival":
            cmd = festival_command(voice, rate, pitch, raw, *lexicon)
        else:
            cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={1.0 / rate:.3f}",
                   "--setf", f"int_f0_target_mean={int(60 + pitch * 1.2)}", "-t", text, "-o", raw]
        result = subprocess.run(cmd, capture_output=True, text=True, input=text if engine == "festival" else None)
        if result.returncode != 0 or not os.path.exists(raw):
            raise UserError(f"{' '.join(cmd)} failed: {result.stderr.strip() or f'exit status {result.returncode}'}; "
                            f"check the {engine} installation (scripts/install_system_deps.sh) or pass --engines")
        samples, sr = sf.read(raw, dtype="float32", always_2d=True)
    samples = resample(samples.mean(axis=1), sr, SAMPLE_RATE)
    peak = float(np.abs(samples).max()) or 1.0
    samples = 0.8 * samples / peak
    if snr_db is not None:
        rms = float(np.sqrt(np.mean(samples ** 2))) + 1e-9
        noise = np.random.default_rng(seed).standard_normal(len(samples)).astype(np.float32)
        samples = samples + noise * rms / 10 ** (snr_db / 20)
    sf.write(path, samples, SAMPLE_RATE, subtype="PCM_16")
    return {"audio_filepath": os.path.basename(os.path.dirname(path)) + "/" + os.path.basename(path),
            "duration": round(len(samples) / SAMPLE_RATE, 4), "text": text,
            "voice": f"{engine}:{voice}{'+' + variant if variant else ''}"}


def plan(args, engines):
    """All jobs, derived from the seed only (so the corpus is deterministic)."""
    if has_accented(args.voice_set) and args.festival_share + args.accented_share > 1:
        raise UserError(f"--festival_share {args.festival_share} and --accented_share {args.accented_share} add up to "
                        f"more than all of the training utterances; lower one of them")
    rng = random.Random(args.seed)
    sizes = {"train": args.train, "dev": args.dev, "test": args.test}
    used, jobs = set(), []
    for split in ("test", "dev", "train"):  # held-out sentences first, then train avoids them
        voices = voices_for(split, engines, args.holdout_engine, args.voice_set)
        if not voices:
            if args.holdout_engine:
                raise UserError(f"No voices for the {split} split: --holdout_engine {args.holdout_engine} needs both "
                                f"espeak-ng and flite installed and in --engines")
            raise UserError(f"No voices for the {split} split with engines {', '.join(engines)}; the held-out "
                            f"voices of dev and test are espeak-ng voices: install espeak-ng or include it in "
                            f"--engines")
        english = [v for v in voices if v[0] == "festival" and v[1] not in accented_voices.VOICES]
        accented = [v for v in voices if v[0] == "festival" and v[1] in accented_voices.VOICES]
        count = 0
        while count < sizes[split]:
            sentence = make_sentence(rng)
            if sentence in used:
                continue
            used.add(sentence)
            if split == "train":
                engines_here = {v[0] for v in voices}
                engine = "espeak" if "espeak" in engines_here else (sorted(engines_here - {"festival"})
                                                                     or ["festival"])[0]
                if "flite" in engines_here and "espeak" in engines_here and not args.holdout_engine:
                    engine = "flite" if rng.random() < args.flite_share else "espeak"
                pool = [v for v in voices if v[0] == engine]
                if "festival" in engines_here and len(engines_here) > 1:
                    draw = rng.random()  # one draw: the English voice at --festival_share, then the accented ones
                    if draw < args.festival_share and english:
                        pool = english
                    elif accented and draw < args.festival_share + args.accented_share:
                        pool = accented
                voice = rng.choice(pool)
            else:
                voice = voices[count % len(voices)]
            rate = rng.uniform(0.8, 1.25)
            pitch = rng.uniform(25, 75)
            snr = rng.uniform(*args.snr_db) if args.noise_prob and rng.random() < args.noise_prob else None
            path = os.path.join(args.output_dir, split, f"{split}_{count:05d}.wav")
            lexicon = lexicon_path(args.output_dir, voice[1]) if voice[0] == "festival" else None
            jobs.append((split, (path, sentence, voice, rate, pitch, snr, rng.getrandbits(31), lexicon)))
            count += 1
    return jobs


def config_hash(args, engines):
    keys = dict(seed=args.seed, train=args.train, dev=args.dev, test=args.test, noise_prob=args.noise_prob,
                flite_share=args.flite_share, snr_db=list(args.snr_db),
                engines=[e for e in engines if e != "festival" or VOICE_SETS[args.voice_set][1]], version=VERSION)
    if args.holdout_engine:  # only when set, so the hash of every earlier corpus stays the same
        keys["holdout_engine"] = args.holdout_engine
    if args.voice_set != "base":  # likewise
        keys["voice_set"] = args.voice_set
    if VOICE_SETS[args.voice_set][1]:
        keys["festival_share"] = args.festival_share
    if has_accented(args.voice_set):  # a changed phone map rebuilds the corpus
        keys["phone_maps"] = accented_voices.maps_digest()
        keys["accented_share"] = args.accented_share
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


def _installed_engines(args):
    engines = [e for e in available_engines() if e in args.engines]
    if not engines:
        raise UserError(f"None of the engines {', '.join(args.engines)} is installed; run "
                        f"scripts/install_system_deps.sh (apt-get install espeak-ng flite festival festvox-kdlpc16k)")
    return engines


def _manifests(output_dir):
    return {s: os.path.join(output_dir, f"{s}_manifest.json") for s in ("train", "dev", "test")}


def _is_built(args, engines):
    """Whether ``args.output_dir`` holds a corpus for these settings: its ``corpus.json`` stamp (written
    once the rest is) names their hash, and the manifests are there."""
    try:
        with open(os.path.join(args.output_dir, "corpus.json")) as handle:
            info = json.load(handle)
    except (OSError, ValueError):
        return False
    return (info.get("config_hash") == config_hash(args, engines)
            and all(os.path.exists(m) for m in _manifests(args.output_dir).values()))


def _check_festival(args, engines):
    """A voice set with festival voices needs festival and those voices: refused in one line up front."""
    voices = VOICE_SETS[args.voice_set][1]
    if not voices:
        return
    packages = ["festival", "festvox-kdlpc16k"] + (accented_voices.PACKAGES if has_accented(args.voice_set) else [])
    install = f"run scripts/install_system_deps.sh (apt-get install {' '.join(packages)})"
    if "festival" not in engines:
        raise UserError(f"--voice_set {args.voice_set} needs festival (text2wave) with its voices "
                        f"{', '.join(voices)}: {install} and keep festival in --engines")
    with tempfile.TemporaryDirectory() as tmp:
        for voice in voices:
            out = os.path.join(tmp, "out.wav")
            result = subprocess.run(festival_command(voice, 1.0, 50, out), capture_output=True, text=True,
                                    input="test")
            if result.returncode != 0 or not os.path.exists(out):
                raise UserError(f"festival cannot speak with voice {voice} "
                                f"({result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'no output'}); "
                                f"{install}")


def build(args):
    engines = _installed_engines(args)
    _check_festival(args, engines)  # before the stamp of a cached corpus is touched
    digest = config_hash(args, engines)
    stamp = os.path.join(args.output_dir, "corpus.json")
    manifests = _manifests(args.output_dir)
    if _is_built(args, engines):
        logger.info("Cached corpus in %s matches these settings; nothing to do", args.output_dir)
        write_room_impulses(args.output_dir, args.seed)  # corpora cached before impulses existed get them
        return manifests
    if os.path.exists(stamp):  # another corpus's: it stops vouching for the folder while this one is built
        os.remove(stamp)
    jobs = plan(args, engines)  # first: settings it refuses leave no folders behind
    for split in manifests:
        os.makedirs(os.path.join(args.output_dir, split), exist_ok=True)
    write_lexicons(args.output_dir, VOICE_SETS[args.voice_set][1])  # _check_festival: festival is there
    rows = {s: [] for s in manifests}
    from tqdm import tqdm

    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        results = pool.imap(synthesize, [job for _, job in jobs], chunksize=8)
        for (split, _), row in tqdm(zip(jobs, results), total=len(jobs), desc="synthesising",
                                    disable=not sys.stderr.isatty()):
            rows[split].append(row)
    for split, path in manifests.items():
        write_manifest(rows[split], path)
    summary = {s: {"utterances": len(r), "hours": round(sum(x["duration"] for x in r) / 3600, 3),
                   "voices": sorted({x["voice"] for x in r})} for s, r in rows.items()}
    with open(os.path.join(args.output_dir, "vocabulary.txt"), "w") as handle:
        handle.write("\n".join(vocabulary()) + "\n")
    with open(os.path.join(args.output_dir, "train_text.txt"), "w") as handle:
        handle.writelines(r["text"] + "\n" for r in rows["train"])
    write_room_impulses(args.output_dir, args.seed)

    def write_stamp(tmp):
        with open(tmp, "w") as handle:
            json.dump({"config_hash": digest, "engines": engines, "splits": summary}, handle, indent=1)

    write_atomic(stamp, write_stamp)  # last, whole or not at all: the corpus is complete
    for split, info in summary.items():
        logger.info("%s: %d utterances, %.2f h, %d voices", split, info["utterances"], info["hours"], len(info["voices"]))
    return manifests


# ------------------------------------------------------- room impulses
IMPULSES = 32
IMPULSE_RT60_S = (0.15, 0.6)


def room_impulse(rng, rt60, sample_rate=SAMPLE_RATE):
    """A synthetic room impulse response with reverberation time ``rt60`` (s): the direct sound, a few
    early reflections (2-25 ms) and an exponentially decaying diffuse tail, -60 dB after ``rt60``."""
    n = int(rt60 * sample_rate)
    t = np.arange(n) / sample_rate
    impulse = 0.25 * rng.standard_normal(n) * np.exp(-6.908 * t / rt60)
    for delay, gain in zip(rng.uniform(0.002, 0.025, 5), rng.uniform(0.2, 0.7, 5)):
        impulse[int(delay * sample_rate)] += gain * rng.choice([-1.0, 1.0])
    impulse[0] = max(1.0, 1.2 * float(np.abs(impulse[1:]).max()))  # the direct sound is the peak
    return impulse.astype(np.float32)


def write_room_impulses(output_dir, seed=0, count=IMPULSES):
    """``count`` synthetic room impulses (RT60 drawn from ``IMPULSE_RT60_S``) in ``<output_dir>/impulses/``
    and their manifest ``impulse_manifest.json`` (paths relative to it), for the ``impulse`` perturbation.
    Deterministic for ``seed``; kept when already written. Returns the manifest's path."""
    manifest = os.path.join(output_dir, "impulse_manifest.json")
    if os.path.exists(manifest):
        return manifest
    folder = os.path.join(output_dir, "impulses")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        rt60 = float(rng.uniform(*IMPULSE_RT60_S))
        name = f"room_{index:02d}.wav"
        impulse = room_impulse(rng, rt60)
        sf.write(os.path.join(folder, name), impulse / np.abs(impulse).max(), SAMPLE_RATE, subtype="FLOAT")
        rows.append({"audio_filepath": f"impulses/{name}", "duration": round(len(impulse) / SAMPLE_RATE, 4),
                     "rt60": round(rt60, 3)})
    return write_manifest(rows, manifest)  # the manifest appears only once every file is written


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="make_synthetic_speech.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--train", type=count, default=2000, help="training utterances")
    parser.add_argument("--dev", type=count, default=200)
    parser.add_argument("--test", type=count, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise_prob", type=float, default=0.3, help="share of utterances with white noise")
    parser.add_argument("--snr_db", type=float, nargs=2, default=(15.0, 40.0))
    parser.add_argument("--flite_share", type=share, default=0.1, help="share of training utterances from flite")
    parser.add_argument("--festival_share", type=share, default=0.2,
                        help="share of training utterances from festival's voices (voice sets recorded and "
                             "accented only; "
                             "--flite_share then applies to the rest)")
    parser.add_argument("--engines", nargs="+", default=["espeak", "flite", "festival"],
                        choices=sorted(ENGINE_BINARIES))
    parser.add_argument("--holdout_engine", default=None, choices=["espeak", "flite"],
                        help="split by engine: train on the other engine's voices, dev/test on this one's "
                             "(a robustness split; default: held-out espeak accents and variants)")
    parser.add_argument("--voice_set", default="base", choices=sorted(VOICE_SETS),
                        help="training voices: base (14 espeak-ng variants, default), wide (49: 35 more speakers), "
                             "recorded (wide plus festival's ked, a voice made from recorded speech, at "
                             "--festival_share) or accented (recorded plus festival's two Italian, four Czech and "
                             "one Finnish voice speaking English, at --accented_share)")
    parser.add_argument("--accented_share", type=share, default=0.2,
                        help="share of training utterances from festival's accented voices (voice set accented "
                             "only; on top of --festival_share, whose sum must stay at most 1)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    add_debug_flag(parser)
    return parser.parse_args(argv)


def share(text):
    """argparse type: a share of the training utterances, 0 to 1."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def count(text):
    """argparse type: a number of utterances (0 or more)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def run(args):
    """Build (or find cached) the corpus of parsed ``args``, logging to stderr; returns the manifests."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return build(args)


def _corpus_args(caller, output_dir, train, dev, test, options):
    argv = ["--output_dir", output_dir, "--train", str(train), "--dev", str(dev), "--test", str(test)]
    args = parse_args(argv)
    for key, value in options.items():
        if not hasattr(args, key):
            raise TypeError(f"{caller}() got an unknown option {key!r}")
        setattr(args, key, value)
    return args


def build_corpus(output_dir, train, dev, test, **options):
    """Build (or find cached) a corpus in ``output_dir``; ``options``: any other command-line option by its
    name (``seed``, ``noise_prob``, ``engines``...). Returns the manifests by split."""
    return run(_corpus_args("build_corpus", output_dir, train, dev, test, options))


def corpus_ready(output_dir, train, dev, test, **options):
    """Whether ``build_corpus`` with these arguments has finished in ``output_dir`` (a corpus built with
    other settings, or one being rebuilt, is not ready), room impulses included: for processes that
    wait while another one builds it."""
    args = _corpus_args("corpus_ready", output_dir, train, dev, test, options)
    return (_is_built(args, _installed_engines(args))
            and os.path.exists(os.path.join(output_dir, "impulse_manifest.json")))


def main(argv=None):
    args = parse_args(argv)
    with one_line_errors("make_synthetic_speech.py", args.debug):
        return run(args)


if __name__ == "__main__":
    main()
