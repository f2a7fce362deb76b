"""An n-gram language model from training transcripts, beam-search weights
tuned on a held-out set, and the WER it gives: the pieces behind
``jasper.py --lm_order`` (the greedy vs beam + LM table after training) and
``scripts/tune_lm_params.py``.

Needs the ``lm`` extra (``pyctcdecode``, ``kenlm``) for decoding; the LM
itself is estimated in pure Python (``parts/ngram_lm.py``).
"""
import itertools
import os

from .inference import DEFAULT_PRUNING, beam_decoder, beam_search
from .metrics import word_error_rate
from .parts.ngram_lm import KneserNeyLM, NgramError

# alpha (LM weight) and beta (word bonus) tried by default: 9 pairs, enough for a small LM
DEFAULT_ALPHAS = (1.0, 1.5, 2.5)
DEFAULT_BETAS = (0.5, 2.0, 4.0)


def write_transcript_lm(texts, path, order=3):
    """Estimate an ``order``-gram modified Kneser-Ney LM from ``texts`` (one transcript each,
    words separated by spaces) and write it as ARPA to ``path``; returns ``(path, sentences, words)``."""
    sentences = [words for words in (text.split() for text in texts) if words]
    if not sentences:
        raise NgramError(f"No words in the {len(texts)} transcripts given: cannot estimate an LM for {path}")
    KneserNeyLM(sentences, order=order).write_arpa(path)
    return path, len(sentences), sum(len(s) for s in sentences)


def grid_search(decoder, log_probs, references, alphas, betas, on_result=None, progress=True):
    """WER of beam search (``decoder``, from ``nemo_asr.inference.beam_decoder``) for every
    ``(alpha, beta)`` pair over ``log_probs`` (list of (T, C) tensors) against ``references``.

    The LM stays loaded; only its weights change. Returns ``[{"alpha", "beta", "wer"}]`` in grid
    order; ``on_result(row)`` is called after each pair (e.g. to print it).
    """
    from tqdm import tqdm

    results = []
    for alpha, beta in tqdm(list(itertools.product(alphas, betas)), desc="alpha/beta grid", unit="pair",
                            leave=False, disable=None if progress else True):
        decoder.set_weights(alpha, beta)
        texts = beam_search(log_probs, decoder=decoder, progress=False)
        results.append({"alpha": alpha, "beta": beta, "wer": word_error_rate(texts, references)[0]})
        if on_result is not None:
            on_result(results[-1])
    return results


def evaluate_with_lm(runs, labels, lm_path, tune_on, alphas=DEFAULT_ALPHAS, betas=DEFAULT_BETAS, beam_width=16,
                     num_cpus=None, progress=True, pruning=DEFAULT_PRUNING):
    """Tune alpha/beta on ``runs[tune_on]``, then beam-search every run with the best pair.

    ``runs``: ``{tag: {"log_probs": [(T, C) tensors], "references": [texts]}}`` (what
    ``Recognizer.run`` returns). Returns ``{"alpha", "beta", "beam_width", "grid", "wer": {tag: WER}}``;
    the WER of ``tune_on`` is optimistic (its own tuning set), the others are not. ``pruning``: keyword
    arguments of ``BeamSearchDecoderWithLM`` (``cutoff_prob``, ``cutoff_top_n``, ``beam_prune_logp``).
    """
    pruning = DEFAULT_PRUNING if pruning is None else pruning
    decoder = beam_decoder(labels, lm_path, beam_width, alphas[0], betas[0], num_cpus=num_cpus or os.cpu_count(),
                           pruning=pruning)
    try:
        grid = grid_search(decoder, runs[tune_on]["log_probs"], runs[tune_on]["references"], alphas, betas,
                           progress=progress)
        best = min(grid, key=lambda row: row["wer"])
        decoder.set_weights(best["alpha"], best["beta"])
        wers = {tune_on: best["wer"]}
        for tag, run in runs.items():
            if tag != tune_on:
                texts = beam_search(run["log_probs"], decoder=decoder, progress=progress)
                wers[tag] = word_error_rate(texts, run["references"])[0]
    finally:
        decoder.close()
    return {"alpha": best["alpha"], "beta": best["beta"], "beam_width": beam_width, "pruning": dict(pruning), "grid": grid,
            "wer": {tag: wers[tag] for tag in runs}}
