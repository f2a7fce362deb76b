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

# alpha (LM weight) and beta (word bonus) tried first: 9 pairs, enough for a small LM; the grid then grows
# past an edge while the best pair sits on it (``grid_search(grow=...)``), up to DEFAULT_GROW rounds
DEFAULT_ALPHAS = (1.0, 1.5, 2.5)
DEFAULT_BETAS = (0.5, 2.0, 4.0)
DEFAULT_GROW = 3


SAVED_KEYS = ("log_probs", "references", "labels")


def load_saved_logprobs(path, dataset=None, flag="--dataset"):
    """``(saved, tag)`` from a file written by ``jasper_infer.py --save_logprobs``: ``saved`` is
    ``{dataset tag: {"log_probs", "references", "labels"}}`` and ``tag`` is ``dataset``, or the first
    saved one when it is None. A missing, unreadable or foreign file, or a ``dataset`` the file does
    not hold (asked for with ``flag``), is a ``UserError`` naming it (the reader of
    ``scripts/tune_lm_params.py`` and ``benchmarks/lm_search.py``)."""
    import torch

    from nemo_core.utils.cli import UserError

    if not os.path.isfile(path):
        raise UserError(f"--logprobs {path} does not exist: write it with jasper_infer.py --save_logprobs")
    try:
        saved = torch.load(path, weights_only=False)
    except Exception as err:
        raise UserError(f"--logprobs {path} cannot be read ({type(err).__name__}: {err}); "
                        "is it a file written by jasper_infer.py --save_logprobs?") from err
    if not isinstance(saved, dict) or not saved or not all(
            isinstance(v, dict) and all(k in v for k in SAVED_KEYS) for v in saved.values()):
        raise UserError(f"--logprobs {path} is not a file written by jasper_infer.py --save_logprobs")
    tag = dataset or next(iter(saved))
    if tag not in saved:
        raise UserError(f"{flag} {tag}: {path} holds {', '.join(saved)}")
    return saved, tag


def write_transcript_lm(texts, path, order=3):
    """Estimate an ``order``-gram modified Kneser-Ney LM from ``texts`` (one transcript each,
    words separated by spaces) and write it as ARPA to ``path``; returns ``(path, sentences, words)``."""
    sentences = [words for words in (text.split() for text in texts) if words]
    if not sentences:
        raise NgramError(f"No words in the {len(texts)} transcripts given: cannot estimate an LM for {path}")
    KneserNeyLM(sentences, order=order).write_arpa(path)
    return path, len(sentences), sum(len(s) for s in sentences)


def grown(values, best, lowest=None):
    """The values a grid axis gains when its best value is at one of its ends: one more step beyond
    that end, the step being the spacing of the two values there (``(1, 1.5, 2.5)`` with the best at
    1 gains 0.5; at 2.5 it gains 3.5). Never below ``lowest`` (clipped to it once, then no further);
    nothing for an axis of fewer than two values, a best value inside the axis, or a step so small
    that, rounded, it lands on a value the axis has."""
    values = sorted(values)
    if len(values) < 2:
        return []
    if best == values[0]:
        step = values[0] - (values[1] - values[0])
        if lowest is not None and step < lowest:
            step = lowest if values[0] > lowest else None
    elif best == values[-1]:
        step = values[-1] + (values[-1] - values[-2])
    else:
        return []
    return [] if step is None or round(step, 6) in values else [round(step, 6)]


def best_pair(rows):
    """The first row of least WER among ``grid_search`` rows: a pair decoded later must beat, not tie,
    the earlier ones."""
    return min(rows, key=lambda row: row["wer"])


def growth(rows):
    """``(alphas, betas)`` the grid of ``rows`` would gain in one more round of growing (both empty
    when its best pair lies inside the grid, or on an edge it cannot grow past: alpha 0)."""
    best = best_pair(rows)
    return (grown({row["alpha"] for row in rows}, best["alpha"], lowest=0.0),
            grown({row["beta"] for row in rows}, best["beta"]))


def on_edge(rows):
    """Whether the best pair of ``rows`` still lies on an edge the grid could grow past: the best
    weights may lie beyond the grid searched (grow it further or widen it)."""
    more_alphas, more_betas = growth(rows)
    return bool(more_alphas or more_betas)


def grid_search(decoder, log_probs, references, alphas, betas, on_result=None, progress=True, grow=0):
    """WER of beam search (``decoder``, from ``nemo_asr.inference.beam_decoder``) for every
    ``(alpha, beta)`` pair over ``log_probs`` (list of (T, C) tensors) against ``references``.

    The LM stays loaded; only its weights change. ``grow``: up to that many more rounds in which,
    while the best pair so far lies on an edge of the grid, that axis gains one more value beyond the
    edge (``grown``; alpha never below 0) and only the new pairs are decoded -- a fixed grid whose
    best pair sits at its edge has not found the best weights. Returns ``[{"alpha", "beta", "wer"}]``
    in the order decoded: the grid of the sorted, distinct ``alphas`` x ``betas`` (alpha-major),
    then each round's new pairs. The best is ``best_pair(rows)``; ``on_edge(rows)`` says whether it
    still lies on an edge after the last round. ``on_result(row)`` is called after each pair (e.g. to
    print it).
    """
    from tqdm import tqdm

    alphas, betas = sorted(set(alphas)), sorted(set(betas))
    results, done = [], set()
    with tqdm(total=0, desc="alpha/beta grid", unit="pair", leave=False,
              disable=None if progress else True) as bar:
        for round_ in range(grow + 1):
            if round_:
                more_alphas, more_betas = growth(results)
                if not more_alphas and not more_betas:
                    break
                alphas, betas = sorted(alphas + more_alphas), sorted(betas + more_betas)
            pending = [pair for pair in itertools.product(alphas, betas) if pair not in done]
            bar.total += len(pending)
            bar.refresh()
            for alpha, beta in pending:
                decoder.set_weights(alpha, beta)
                texts = beam_search(log_probs, decoder=decoder, progress=False)
                results.append({"alpha": alpha, "beta": beta, "wer": word_error_rate(texts, references)[0]})
                done.add((alpha, beta))
                bar.update()
                if on_result is not None:
                    on_result(results[-1])
    return results


def evaluate_with_lm(runs, labels, lm_path, tune_on, alphas=DEFAULT_ALPHAS, betas=DEFAULT_BETAS, beam_width=64,
                     num_cpus=None, progress=True, pruning=DEFAULT_PRUNING, grow=DEFAULT_GROW):
    """Tune alpha/beta on ``runs[tune_on]`` (``grid_search`` over ``alphas`` x ``betas``, growing past
    an edge up to ``grow`` rounds), then beam-search every run with the best pair.

    ``runs``: ``{tag: {"log_probs": [(T, C) tensors], "references": [texts]}}`` (what
    ``Recognizer.run`` returns). Returns ``{"alpha", "beta", "beam_width", "pruning", "grow", "on_edge",
    "grid", "wer": {tag: WER}}`` (``on_edge``: the best pair still lies on an edge of the grown grid);
    the WER of ``tune_on`` is optimistic (its own tuning set), the others are not. ``pruning``: keyword
    arguments of ``BeamSearchDecoderWithLM`` (``cutoff_prob``, ``cutoff_top_n``, ``beam_prune_logp``).
    """
    pruning = DEFAULT_PRUNING if pruning is None else pruning
    decoder = beam_decoder(labels, lm_path, beam_width, alphas[0], betas[0], num_cpus=num_cpus or os.cpu_count(),
                           pruning=pruning)
    try:
        grid = grid_search(decoder, runs[tune_on]["log_probs"], runs[tune_on]["references"], alphas, betas,
                           progress=progress, grow=grow)
        best = best_pair(grid)
        decoder.set_weights(best["alpha"], best["beta"])
        wers = {tune_on: best["wer"]}
        for tag, run in runs.items():
            if tag != tune_on:
                texts = beam_search(run["log_probs"], decoder=decoder, progress=progress)
                wers[tag] = word_error_rate(texts, run["references"])[0]
    finally:
        decoder.close()
    return {"alpha": best["alpha"], "beta": best["beta"], "beam_width": beam_width, "pruning": dict(pruning),
            "grow": grow, "on_edge": on_edge(grid), "grid": grid,
            "wer": {tag: wers[tag] for tag in runs}}
