#!/usr/bin/env python
"""Build an n-gram language model (ARPA, or KenLM binary) from a text file
with one sentence per line.

Uses KenLM's ``lmplz`` (and ``build_binary`` for ``.binary``/``.bin``
outputs) when they are on PATH; otherwise a pure-Python interpolated
modified Kneser-Ney estimator (``nemo_asr/parts/ngram_lm.py``), fine for
corpora up to a few million words. Text is normalised like transcripts
(lower case, numbers spelled out) unless ``--no_normalize``.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from nemo_asr.parts.cleaners import clean_text  # noqa: E402
from nemo_asr.parts.ngram_lm import KneserNeyLM  # noqa: E402


def read_sentences(path, normalize):
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            text = clean_text(line) if normalize else line.strip()
            if text:
                yield text.split()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="text, one sentence per line")
    parser.add_argument("--output", required=True, help="*.arpa, or *.binary / *.bin (needs build_binary)")
    parser.add_argument("--order", type=int, default=3)
    parser.add_argument("--no_normalize", action="store_true")
    parser.add_argument("--backend", choices=["auto", "kenlm", "python"], default="auto")
    args = parser.parse_args(argv)
    binary = args.output.endswith((".binary", ".bin"))
    use_kenlm = args.backend == "kenlm" or (args.backend == "auto" and shutil.which("lmplz"))
    if binary and not shutil.which("build_binary"):
        parser.error("a binary output needs KenLM's build_binary on PATH; write an .arpa instead "
                     "(kenlm's Python module and pyctcdecode load ARPA files)")
    sentences = list(read_sentences(args.input, not args.no_normalize))
    if not sentences:
        parser.error(f"{args.input} has no text")
    with tempfile.TemporaryDirectory() as tmp:
        arpa = os.path.join(tmp, "lm.arpa") if binary else args.output
        if use_kenlm:
            if not shutil.which("lmplz"):
                parser.error("--backend kenlm needs lmplz on PATH")
            text = os.path.join(tmp, "text.txt")
            with open(text, "w") as handle:
                handle.writelines(" ".join(s) + "\n" for s in sentences)
            with open(text) as src, open(arpa, "w") as dst:
                subprocess.run(["lmplz", "-o", str(args.order), "--discount_fallback"], stdin=src, stdout=dst,
                               check=True)
            how = "lmplz"
        else:
            KneserNeyLM(sentences, order=args.order).write_arpa(arpa)
            how = "pure-Python modified Kneser-Ney"
        if binary:
            subprocess.run(["build_binary", arpa, args.output], check=True)
    words = sum(len(s) for s in sentences)
    print(f"{args.order}-gram LM from {len(sentences)} sentences ({words} words) with {how}: {args.output}")
    return args.output


if __name__ == "__main__":
    main()
