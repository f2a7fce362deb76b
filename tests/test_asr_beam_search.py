import os

import pytest
import torch

pytest.importorskip("pyctcdecode")

import nemo_asr  # noqa: E402
from nemo_asr.beam_search_decoder import BeamSearchDecoderWithLM, prune_log_probs  # noqa: E402

from conftest import REPO  # noqa: E402

LM = os.path.join(REPO, "tests", "data", "lm", "hot_hat.arpa")
LABELS = [" "] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["'"]
BLANK = len(LABELS)


def frames(spec):
    """Log-probs from per-frame {char: prob} (``_`` is blank), rest spread thinly."""
    rows = []
    for probs in spec:
        p = torch.full((BLANK + 1,), 1e-4)
        for ch, v in probs.items():
            p[BLANK if ch == "_" else LABELS.index(ch)] = v
        rows.append((p / p.sum()).log())
    return torch.stack(rows)


AMBIGUOUS = frames([{"h": 0.9}, {"_": 0.9}, {"a": 0.55, "o": 0.45}, {"_": 0.9}, {"t": 0.9}])[None]


def test_beam_search_without_lm_follows_acoustics():
    decoder = BeamSearchDecoderWithLM(LABELS, beam_width=8, alpha=0.0, beta=0.0)
    (beams,) = decoder(log_probs=AMBIGUOUS, log_probs_length=torch.tensor([5]))
    assert beams[0][1] == "hat" and "hot" in [text for _, text in beams]


def test_language_model_corrects_ambiguous_vowel_and_batches_in_parallel():
    decoder = BeamSearchDecoderWithLM(LABELS, beam_width=8, alpha=1.0, beta=0.0, lm_path=LM)
    (beams,) = decoder(log_probs=AMBIGUOUS, log_probs_length=torch.tensor([5]))
    assert beams[0][1] == "hot"
    parallel = BeamSearchDecoderWithLM(LABELS, beam_width=8, alpha=1.0, beta=0.0, lm_path=LM, num_cpus=2)
    both = parallel(log_probs=torch.cat([AMBIGUOUS, AMBIGUOUS]), log_probs_length=torch.tensor([5, 5]))
    assert [beams[0][1] for beams in both] == ["hot", "hot"]
    plain = BeamSearchDecoderWithLM(LABELS, beam_width=8, alpha=0.0, beta=0.0)
    cut = plain(log_probs=torch.cat([AMBIGUOUS, AMBIGUOUS]), log_probs_length=torch.tensor([5, 3]))
    assert [beams[0][1] for beams in cut] == ["hat", "ha"]  # the second stops after 3 frames


def test_pruning_and_errors(tmp_path):
    log_probs = torch.tensor([[[0.5, 0.3, 0.15, 0.05]]]).log()
    kept = prune_log_probs(log_probs, cutoff_prob=0.75, cutoff_top_n=10) > -1e3
    assert kept.tolist() == [[[True, True, False, False]]]
    kept = prune_log_probs(log_probs, cutoff_prob=1.0, cutoff_top_n=1) > -1e3
    assert kept.tolist() == [[[True, False, False, False]]]
    with pytest.raises(FileNotFoundError, match="nope.arpa"):
        BeamSearchDecoderWithLM(LABELS, 4, 1.0, 0.0, lm_path=str(tmp_path / "nope.arpa"))
    (tmp_path / "bad.arpa").write_text("not an arpa file")
    with pytest.raises(ValueError, match="Cannot load language model .*bad.arpa"):
        BeamSearchDecoderWithLM(LABELS, 4, 1.0, 0.0, lm_path=str(tmp_path / "bad.arpa"))
    assert nemo_asr.word_error_rate(["hot"], ["hot"])[0] == 0.0
