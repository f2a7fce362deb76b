"""English from festival's Italian, Czech and Finnish voices: more speakers recorded from real voices.

Festival's only English voices in Debian's main archive are ``ked`` and two speakers flite has too. Its Italian,
Czech and Finnish voices are diphone voices cut from recordings of more people; seven of them are used here
(two women and a boy among them). They read English text with their own language's letter-to-sound rules
("knight" as k-n-i-g-h-t). Here each English word of the corpus gets a pronunciation instead: its phones from festival's
CMU lexicon (``festlex-cmu``), mapped phone by phone to the nearest phones of the voice's language, and added to
the voice's lexicon before it speaks. The result is English with a foreign accent (no "th", no schwa in
Italian, Czech ``w`` as ``v``...), in the speaker's own voice, with the voice's own rhythm and melody.

Measured with the demo model trained on the ``recorded`` voice set (26 epochs), with the first version of the
maps: on 20 sentences each, the mapped pronunciations gave 59 % greedy WER against 75 % for the Italian voice
reading the text itself, and 80 % against 90 % for the Czech one.

Trained on in the demo's engine-holdout split (``--demo_voice_set accented``, first maps), they made greedy WER
on flite's unheard voices better and beam search with an LM worse (README, *Robustness*).

Pitch: these voices have their own intonation models, which do not read ``int_lr_params``, so the corpus's
per-utterance pitch does not apply to them; the speaking rate does (``Duration_Stretch``).
"""
import hashlib
import json
import re
import subprocess
import tempfile

from nemo_core.utils.cli import UserError

# radio (CMU) phone -> phones of the voice's language, nearest by ear; several for a diphthong, none for a phone
# with no counterpart (Italian has no /h/). Every mapped word is said without a gap: a pair of phones a voice has
# no recording of would be silence (festival's "default diphone"), so diphthongs end in vowels in Italian (its
# off-glides "j"/"w" have no diphones before consonants), Czech uses short "a"/"o" and "v" for "w", and
# ``_WORD_REPAIRS`` add a sound where a language never joins two (tests/test_data_scripts.py checks every word).
_ITALIAN = {
    "aa": "a", "ae": "E", "ah": "a", "ao": "O", "aw": "a u", "ax": "a", "axr": "e r", "ay": "a i", "eh": "E",
    "er": "e r", "ey": "e i", "ih": "i", "iy": "i", "ow": "o u", "oy": "O i", "uh": "u", "uw": "u",
    "b": "b", "ch": "tS", "d": "d", "dh": "d", "f": "f", "g": "g", "hh": "", "jh": "dZ", "k": "k", "l": "l",
    "m": "m", "n": "n", "ng": "ng g", "p": "p", "r": "r", "s": "s", "sh": "S", "t": "t", "th": "t", "v": "v",
    "w": "w", "y": "j", "z": "z", "zh": "Z"}
_CZECH = {
    "aa": "a", "ae": "e", "ah": "a", "ao": "o", "aw": "a u", "ax": "e", "axr": "e r", "ay": "a j", "eh": "e",
    "er": "e r", "ey": "e j", "ih": "i", "iy": "i:", "ow": "o u", "oy": "o j", "uh": "u", "uw": "u:",
    "b": "b", "ch": "c~", "d": "d", "dh": "d", "f": "f", "g": "g", "hh": "h", "jh": "dz~", "k": "k", "l": "l",
    "m": "m", "n": "n", "ng": "n g", "p": "p", "r": "r", "s": "s", "sh": "s~", "t": "t", "th": "t", "v": "v",
    "w": "v", "y": "j", "z": "z", "zh": "z~"}
# Finnish: the voice's "&" (ae) and "w" stop festival ("wrong type of argument"). Finnish's female voice (lj,
# festvox-suopuhe-lj) is left out: it has no diphones for most word-final consonants or a word-initial "l" or
# "o", so 39 of the corpus's 171 words had silent gaps.
_FINNISH = {
    "aa": "a:", "ae": "e", "ah": "a", "ao": "o:", "aw": "a u", "ax": "@", "axr": "@ r", "ay": "a i", "eh": "e",
    "er": "@ r", "ey": "e i", "ih": "i", "iy": "i:", "ow": "o u", "oy": "o i", "uh": "u", "uw": "u:",
    "b": "b", "ch": "t s", "d": "d", "dh": "d", "f": "f", "g": "g", "hh": "h", "jh": "t s", "k": "k", "l": "l",
    "m": "m", "n": "n", "ng": "N", "p": "p", "r": "r", "s": "s", "sh": "s", "t": "t", "th": "T", "v": "v",
    "w": "v", "y": "j", "z": "s", "zh": "s"}
_ITALIAN_VOWELS = {"i", "e", "E", "a", "o", "O", "u"}
_CZECH_VOWELS = {"a", "a:", "e", "e:", "i", "i:", "o", "o:", "u", "u:"}
# per language, (what a word needs, the sound added): Italian ends no word in "dZ" ("bridge" -> "bridge-e"),
# Czech joins no "i" to a following vowel without a "j" ("radio" -> "rei-di-jou")
_WORD_REPAIRS = {
    "italian": ("final", {"dZ"}, "e"),
    "czech": ("glide", ({"i", "i:"}, _CZECH_VOWELS), "j"),
    "finnish": None,
}
_TABLES = {"italian": _ITALIAN, "czech": _CZECH, "finnish": _FINNISH}

# festival voice -> (language, Debian package)
VOICES = {
    "pc_diphone": ("italian", "festvox-itapc16k"),
    "lp_diphone": ("italian", "festvox-italp16k"),
    "czech_dita": ("czech", "festvox-czech-dita"),
    "czech_krb": ("czech", "festvox-czech-krb"),
    "czech_machac": ("czech", "festvox-czech-machac"),
    "czech_ph": ("czech", "festvox-czech-ph"),
    "hy_fi_mv_diphone": ("finnish", "festvox-suopuhe-mv"),
}
PACKAGES = sorted(package for _, package in VOICES.values())

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
    if result.returncode != 0:
        last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit status {result.returncode}"
        raise UserError(f"festival failed looking words up in its CMU lexicon ({last}); "
                        f"install festival and festlex-cmu (scripts/install_system_deps.sh)")
    missing = [w for w in words if not pronunciations.get(w)]
    if missing:
        raise UserError(f"festival's CMU lexicon gave no pronunciation for {', '.join(missing[:5])}"
                        f"{' and others' if len(missing) > 5 else ''}; install festlex-cmu "
                        f"(scripts/install_system_deps.sh)")
    return pronunciations


MAP_VERSION = 2  # bump when map_word's rules change in code rather than in the tables


def maps_digest():
    """A short hash of the voices, their phone maps and repairs, for the corpus cache's key."""
    def plain(value):
        if isinstance(value, (set, frozenset)):
            return sorted(value)
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        return value

    text = json.dumps(plain({"version": MAP_VERSION, "voices": VOICES, "tables": _TABLES, "repairs": _WORD_REPAIRS,
                             "italian_vowels": _ITALIAN_VOWELS}), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def map_syllable(voice, phones, stress):
    """The voice's phones for one syllable of radio ``phones`` (Italian marks a stressed syllable's first vowel
    with "1")."""
    language = VOICES[voice][0]
    out = [target for phone in phones for target in _TABLES[language][phone].split()]
    if language == "italian" and stress:
        first = next((i for i, target in enumerate(out) if target in _ITALIAN_VOWELS), None)
        if first is not None:
            out[first] += "1"
    return out


def map_word(voice, syllables):
    """The voice's ``[(phones, stress)]`` for a word's radio ``syllables``, with its language's
    ``_WORD_REPAIRS``; syllables left without a phone (an Italian "h") are dropped."""
    mapped = [(map_syllable(voice, phones, stress), stress) for phones, stress in syllables]
    mapped = [(phones, stress) for phones, stress in mapped if phones]
    repair = _WORD_REPAIRS[VOICES[voice][0]]
    if repair and mapped:
        kind, where, sound = repair
        if kind == "final" and mapped[-1][0][-1] in where:  # consonants: never marked "1"
            mapped[-1] = (mapped[-1][0] + [sound], mapped[-1][1])
        elif kind == "glide":
            before, after = where
            for index in range(1, len(mapped)):
                if mapped[index - 1][0][-1] in before and mapped[index][0][0] in after:
                    mapped[index] = ([sound] + mapped[index][0], mapped[index][1])
    return mapped


def lexicon_entries(voice, pronunciations):
    """Festival commands adding every word of ``pronunciations`` to ``voice``'s lexicon, mapped to its
    phones; evaluate them after selecting the voice."""
    lines = []
    for word, syllables in sorted(pronunciations.items()):
        body = " ".join(f"(({' '.join(phones)}) {stress})" for phones, stress in map_word(voice, syllables))
        lines.append(f"(lex.add.entry '(\"{word}\" nil ({body})))\n")
    return "".join(lines)
