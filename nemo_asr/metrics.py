"""Word and character error rates (Levenshtein distance over words / characters)."""


def edit_distance(hyp, ref):
    """Minimum substitutions + insertions + deletions turning ``hyp`` into ``ref``."""
    if len(hyp) < len(ref):
        hyp, ref = ref, hyp
    previous = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, 1):
        current = [i]
        for j, r in enumerate(ref, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (h != r)))
        previous = current
    return previous[-1]


def _error_rate(hypotheses, references, split):
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    errors = words = 0
    for hyp, ref in zip(hypotheses, references):
        ref_tokens = split(ref)
        errors += edit_distance(split(hyp), ref_tokens)
        words += len(ref_tokens)
    return (errors / words if words else float("inf") if errors else 0.0), errors, words


def word_error_rate(hypotheses, references, use_cer=False):
    """Corpus-level WER (or CER): total edits / total reference words.

    Returns ``(rate, edits, reference_words)``; NeMo 0.x returned the rate
    alone, so use ``word_error_rate(...)[0]`` for that.
    """
    return _error_rate(hypotheses, references, list if use_cer else str.split)


def char_error_rate(hypotheses, references):
    return _error_rate(hypotheses, references, list)
