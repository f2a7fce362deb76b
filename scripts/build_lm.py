#!/usr/bin/env python
"""Build an n-gram language model (ARPA, or KenLM binary) from a text file
with one sentence per line.

Uses KenLM's ``lmplz`` (and ``build_binary`` for ``.binary``/``.bin``
outputs) when they are on PATH; otherwise a pure-Python interpolated
modified Kneser-Ney estimator (``nemo_asr/parts/ngram_lm.py``), fine for
corpora up to a few million words. Text is normalised like transcripts
(lower case, numbers spelled out) unless ``--no_normalize``. Errors are one
line on stderr with exit status 1 (``--debug`` shows the traceback).
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
from nemo_core.utils.cli import UserError, add_debug_flag, one_line_errors  # noqa: E402


def read_sentences(path, normalize, progress=True):
    """Sentences (lists of words) of ``path``, one per non-empty line; a tqdm bar over its bytes."""
    from tqdm import tqdm

    sentences = []
    with open(path, "rb") as raw, tqdm(total=os.path.getsize(path), desc=f"reading {os.path.basename(path)}",
                                       unit="B", unit_scale=True, leave=False,
                                       disable=None if progress else True) as bar:
        for number, line in enumerate(raw, 1):
            bar.update(len(line))
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as err:
                raise UserError(f"{path}:{number}: not UTF-8 text (byte {err.start}); "
                                "convert the corpus to UTF-8 (e.g. iconv -f latin1 -t utf-8)") from err
            text = clean_text(line) if normalize else line.strip()
            if text:
                sentences.append(text.split())
    return sentences


def run_tool(cmd, what, **kwargs):
    """Run a KenLM program; its failure becomes one ``UserError`` with the program's last stderr line."""
    try:
        subprocess.run(cmd, check=True, stderr=subprocess.PIPE, **kwargs)
    except subprocess.CalledProcessError as err:
        lines = (err.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        raise UserError(f"{what} failed (exit status {err.returncode}): "
                        f"{lines[-1] if lines else 'no message'}; command: {' '.join(map(str, cmd))}") from err


def main(argv=None):
    parser = argparse.ArgumentParser(prog=os.path.basename(__file__), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="text, one sentence per line")
    parser.add_argument("--output", required=True, help="*.arpa, or *.binary / *.bin (needs build_binary)")
    parser.add_argument("--order", type=int, default=3)
    parser.add_argument("--no_normalize", action="store_true")
    parser.add_argument("--backend", choices=["auto", "kenlm", "python"], default="auto")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    with one_line_errors(parser.prog, args.debug):
        return build(args)


def build(args):
    binary = args.output.endswith((".binary", ".bin"))
    use_kenlm = args.backend == "kenlm" or (args.backend == "auto" and shutil.which("lmplz"))
    if args.order < 2:
        raise UserError(f"--order {args.order}: an n-gram LM needs order 2 or more")
    if binary and not shutil.which("build_binary"):
        raise UserError(f"--output {args.output}: a binary output needs KenLM's build_binary on PATH; write an "
                        ".arpa instead (kenlm's Python module and pyctcdecode load ARPA files)")
    if args.backend == "kenlm" and not shutil.which("lmplz"):
        raise UserError("--backend kenlm needs KenLM's lmplz on PATH; --backend python needs nothing")
    if not os.path.isfile(args.input):
        kind = "is a folder" if os.path.isdir(args.input) else "does not exist"
        raise UserError(f"--input {args.input} {kind}: give a text file, one sentence per line")
    folder = os.path.dirname(os.path.abspath(args.output))
    if os.path.isdir(args.output) or not os.path.isdir(folder):
        raise UserError(f"cannot write --output {args.output}: "
                        f"{'it is a folder' if os.path.isdir(args.output) else f'folder {folder} does not exist'}")
    sentences = read_sentences(args.input, not args.no_normalize)
    if not sentences:
        raise UserError(f"--input {args.input} has no text")
    with tempfile.TemporaryDirectory() as tmp:
        arpa = os.path.join(tmp, "lm.arpa") if binary else args.output
        if use_kenlm:
            text = os.path.join(tmp, "text.txt")
            with open(text, "w", encoding="utf-8") as handle:
                handle.writelines(" ".join(s) + "\n" for s in sentences)
            with open(text) as src, open(arpa, "w") as dst:
                run_tool(["lmplz", "-o", str(args.order), "--discount_fallback"], "lmplz", stdin=src, stdout=dst)
            how = "lmplz"
        else:
            KneserNeyLM(sentences, order=args.order, progress=True).write_arpa(arpa)
            how = "pure-Python modified Kneser-Ney"
        if binary:
            run_tool(["build_binary", arpa, args.output], "build_binary")
    words = sum(len(s) for s in sentences)
    print(f"{args.order}-gram LM from {len(sentences)} sentences ({words} words) with {how}: {args.output}")
    return args.output


if __name__ == "__main__":
    main()
