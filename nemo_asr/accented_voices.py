"""English from festival's Italian, Czech and Finnish voices: more speakers recorded from real voices.

Festival's only English voices in Debian's main archive are ``ked`` and two speakers flite has too. Its Italian,
Czech and Finnish voices are diphone voices cut from recordings of eight more people (three women and a boy
among them), but they read English text with their own language's letter-to-sound rules ("knight" as
k-n-i-g-h-t). Here each English word of the corpus gets a pronunciation instead: its phones from festival's
CMU lexicon (``festlex-cmu``), mapped phone by phone to the nearest phones of the voice's language, and added to
the voice's lexicon before it speaks. The result is English with a foreign accent (no "th", no schwa in
Italian, Czech ``w`` as ``u``...), in the speaker's own voice, with the voice's own rhythm and melody.

Measured with the demo model trained on the ``recorded`` voice set (26 epochs): on 20 sentences each, the
mapped pronunciations gave 59 % greedy WER against 75 % for the Italian voice reading the text itself, and 80 %
against 90 % for the Czech one.

Trained on in the demo's engine-holdout split (``--demo_voice_set accented``), they made greedy WER on flite's
unheard voices better and beam search with an LM worse (README, *Robustness*).

Pitch: these voices have their own intonation models, which do not read ``int_lr_params``, so the corpus's
per-utterance pitch does not apply to them; the speaking rate does (``Duration_Stretch``).
"""
import hashlib
import json
import re
import subprocess
import tempfile

# radio (CMU) phone -> phones of the voice's language, nearest by ear; several for a diphthong, none for a phone
# with no counterpart (Italian has no /h/)
_ITALIAN = {
    "aa": "a", "ae": "E", "ah": "a", "ao": "O", "aw": "a w", "ax": "a", "axr": "e r", "ay": "a j", "eh": "E",
    "er": "e r", "ey": "e j", "ih": "i", "iy": "i", "ow": "o w", "oy": "O j", "uh": "u", "uw": "u",
    "b": "b", "ch": "tS", "d": "d", "dh": "d", "f": "f", "g": "g", "hh": "", "jh": "dZ", "k": "k", "l": "l",
    "m": "m", "n": "n", "ng": "ng g", "p": "p", "r": "r", "s": "s", "sh": "S", "t": "t", "th": "t", "v": "v",
    "w": "w", "y": "j", "z": "z", "zh": "Z"}
_CZECH = {
    "aa": "a:", "ae": "e", "ah": "a", "ao": "o:", "aw": "a u", "ax": "e", "axr": "e r", "ay": "a j", "eh": "e",
    "er": "e r", "ey": "e j", "ih": "i", "iy": "i:", "ow": "o u", "oy": "o j", "uh": "u", "uw": "u:",
    "b": "b", "ch": "c~", "d": "d", "dh": "d", "f": "f", "g": "g", "hh": "h", "jh": "dz~", "k": "k", "l": "l",
    "m": "m", "n": "n", "ng": "n g", "p": "p", "r": "r", "s": "s", "sh": "s~", "t": "t", "th": "t", "v": "v",
    "w": "u", "y": "j", "z": "z", "zh": "z~"}
# Finnish: the voices' "&" (ae) and "w" stop festival ("wrong type of argument"), and lj has no diphones with "S"
_FINNISH = {
    "aa": "a:", "ae": "e", "ah": "a", "ao": "o:", "aw": "a u", "ax": "@", "axr": "@ r", "ay": "a i", "eh": "e",
    "er": "@ r", "ey": "e i", "ih": "i", "iy": "i:", "ow": "o u", "oy": "o i", "uh": "u", "uw": "u:",
    "b": "b", "ch": "t s", "d": "d", "dh": "d", "f": "f", "g": "g", "hh": "h", "jh": "t s", "k": "k", "l": "l",
    "m": "m", "n": "n", "ng": "N", "p": "p", "r": "r", "s": "s", "sh": "s", "t": "t", "th": "T", "v": "v",
    "w": "v", "y": "j", "z": "s", "zh": "s"}
_ITALIAN_VOWELS = {"i", "e", "E", "a", "o", "O", "u"}

# festival voice -> (phone table, whether stressed vowels take the "1" suffix (Italian), Debian package)
VOICES = {
    "pc_diphone": (_ITALIAN, True, "festvox-itapc16k"),
    "lp_diphone": (_ITALIAN, True, "festvox-italp16k"),
    "czech_dita": (_CZECH, False, "festvox-czech-dita"),
    "czech_krb": (_CZECH, False, "festvox-czech-krb"),
    "czech_machac": (_CZECH, False, "festvox-czech-machac"),
    "czech_ph": (_CZECH, False, "festvox-czech-ph"),
    "suo_fi_lj_diphone": (_FINNISH, False, "festvox-suopuhe-lj"),
    "hy_fi_mv_diphone": (_FINNISH, False, "festvox-suopuhe-mv"),
}
PACKAGES = sorted(package for _, _, package in VOICES.values())

_ENTRY = re.compile(r'^\("((?:[^"\\]|\\.)*)" \S+ (\(.*\))\)$')
_SYLLABLE = re.compile(r"\(\(([^()]*)\) (\d)\)")


def cmu_pronunciations(words):
    """``{word: [(phones, stress), ...]}`` from festival's CMU lexicon, one syllable per pair (radio phones;
    a word missing from the lexicon gets its letter-to-sound rules' pronunciation, as festival would say it)."""
    for word in words:
        if not re.fullmatch(r"[a-z']+", word):
            raise ValueError(f"cannot look up {word!r}: lower-case letters and apostrophes only")
    with tempfile.NamedTemporaryFile("w", suffix=".scm") as script:
        script.write('(lex.select "cmu")\n')
        script.writelines(f'(print (lex.lookup "{word}" nil))\n' for word in words)
        script.flush()
        result = subprocess.run(["festival", "-b", script.name], capture_output=True, text=True)
    pronunciations = {}
    for line in result.stdout.splitlines():
        match = _ENTRY.match(line.strip())
        if match:
            pronunciations[match.group(1)] = [(phones.split(), int(stress))
                                              for phones, stress in _SYLLABLE.findall(match.group(2))]
    missing = [w for w in words if not pronunciations.get(w)]
    if result.returncode != 0 or missing:
        raise RuntimeError(f"festival's CMU lexicon gave no pronunciation for {', '.join(missing[:5]) or 'any word'}"
                           f" ({result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'no error'});"
                           f" install festlex-cmu (scripts/install_system_deps.sh)")
    return pronunciations


def maps_digest():
    """A short hash of every voice's phone map, for the corpus cache's key."""
    text = json.dumps({voice: [table, marks] for voice, (table, marks, _) in sorted(VOICES.items())}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def map_syllable(voice, phones, stress):
    """The voice's phones for one syllable of radio ``phones``."""
    table, marks_stress, _ = VOICES[voice]
    out = []
    for phone in phones:
        for target in table[phone].split():
            out.append(target + "1" if marks_stress and stress and target in _ITALIAN_VOWELS else target)
    return out


def lexicon_entries(voice, pronunciations):
    """Festival commands adding every word of ``pronunciations`` to ``voice``'s lexicon, mapped to its
    phones; evaluate them after selecting the voice."""
    lines = []
    for word, syllables in sorted(pronunciations.items()):
        mapped = [(map_syllable(voice, phones, stress), stress) for phones, stress in syllables]
        body = " ".join(f"(({' '.join(phones)}) {stress})" for phones, stress in mapped if phones)
        lines.append(f"(lex.add.entry '(\"{word}\" nil ({body})))\n")
    return "".join(lines)
