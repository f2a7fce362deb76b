"""Transcript normalisation: lower case, numbers and common abbreviations to
words, punctuation removed. Written for this project (English)."""
import re

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = [(10 ** 12, "trillion"), (10 ** 9, "billion"), (10 ** 6, "million"), (1000, "thousand")]
_ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                      "nine": "ninth", "twelve": "twelfth"}

ABBREVIATIONS = {
    "mr": "mister", "mrs": "misses", "ms": "miss", "dr": "doctor", "st": "saint", "co": "company",
    "jr": "junior", "sr": "senior", "lt": "lieutenant", "gen": "general", "col": "colonel",
    "capt": "captain", "prof": "professor", "sgt": "sergeant", "ft": "fort", "mt": "mount",
    "no": "number", "vs": "versus", "etc": "et cetera", "approx": "approximately", "dept": "department",
}
SYMBOLS = {"&": " and ", "%": " percent ", "+": " plus ", "@": " at ", "=": " equals "}


def number_to_words(n):
    """Cardinal English words for a non-negative integer."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_to_words(rest))
    for value, word in _SCALES:
        if n >= value:
            rest = n % value
            return number_to_words(n // value) + " " + word + ("" if rest == 0 else " " + number_to_words(rest))
    raise ValueError(n)


def ordinal_to_words(n):
    words = number_to_words(n).split(" ")
    last = words[-1]
    if last in _ORDINAL_IRREGULAR:
        words[-1] = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _year_to_words(n):
    if 2000 <= n < 2010:
        return number_to_words(n)
    high, low = divmod(n, 100)
    if low == 0:
        return number_to_words(high) + " hundred"
    return number_to_words(high) + (" oh " if low < 10 else " ") + number_to_words(low)


def _expand_number(match):
    text = match.group(0)
    if match.group("money"):
        amount = match.group("money")
        dollars, _, cents = amount.partition(".")
        words = number_to_words(int(dollars.replace(",", ""))) + (" dollar" if dollars == "1" else " dollars")
        if cents and int(cents):
            words += " " + number_to_words(int(cents)) + (" cent" if cents == "01" else " cents")
        return " " + words + " "
    if match.group("ordinal"):
        return " " + ordinal_to_words(int(match.group("ordinal"))) + " "
    if match.group("decimal"):
        whole, frac = match.group("decimal").split(".")
        return " " + number_to_words(int(whole)) + " point " + " ".join(_ONES[int(d)] for d in frac) + " "
    digits = text.replace(",", "")
    value = int(digits)
    if len(digits) == 4 and "," not in text and 1100 <= value < 2100:
        return " " + _year_to_words(value) + " "
    return " " + number_to_words(value) + " "


_NUMBER_RE = re.compile(
    r"\$(?P<money>\d[\d,]*(?:\.\d{1,2})?)|(?P<ordinal>\d+)(?:st|nd|rd|th)\b|(?P<decimal>\d+\.\d+)|\d[\d,]*\d|\d"
)
_ABBREV_RE = re.compile(r"\b(" + "|".join(ABBREVIATIONS) + r")\.", re.IGNORECASE)


def clean_text(text, keep_characters="'"):
    """Normalise a transcript for character-level CTC targets."""
    text = _ABBREV_RE.sub(lambda m: ABBREVIATIONS[m.group(1).lower()], text)
    for symbol, word in SYMBOLS.items():
        text = text.replace(symbol, word)
    text = _NUMBER_RE.sub(_expand_number, text)
    text = text.lower()
    text = re.sub(r"[-_/]", " ", text)
    keep = re.escape(keep_characters)
    text = re.sub(rf"[^\w\s{keep}]", "", text)
    return re.sub(r"\s+", " ", text).strip()
