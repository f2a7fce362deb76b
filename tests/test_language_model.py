"""nemo_asr.language_model: an n-gram LM from transcripts, alpha/beta tuned on one set and applied
to the others (behind ``jasper.py --lm_order`` and ``scripts/tune_lm_params.py``)."""
import pytest

pytest.importorskip("pyctcdecode")
pytest.importorskip("kenlm")

from nemo_asr.inference import beam_decoder, beam_search  # noqa: E402
from nemo_asr.language_model import evaluate_with_lm, grown, write_transcript_lm  # noqa: E402
from nemo_asr.metrics import word_error_rate  # noqa: E402
from nemo_asr.parts.ngram_lm import NgramError  # noqa: E402

from test_asr_beam_search import LABELS, frames  # noqa: E402


def spoken(text, confusions):
    """Log-probs of ``text`` spelled one letter per frame with blanks between, where each letter in
    ``confusions`` (letter -> rival) is acoustically a little less likely than its rival."""
    spec = []
    for ch in text:
        rival = confusions.get(ch)
        spec.append({ch: 0.45, rival: 0.55} if rival else {ch: 0.9})
        spec.append({"_": 0.9})
    return frames(spec)


TRAINING = ["the cat sat", "a cat ran", "the dog sat", "a dog ran", "the cat ran", "a dog sat"] * 3
CONFUSIONS = {"c": "k", "g": "t"}  # "cat" sounds like "kat", "dog" like "dot": words the LM never saw
DEV = ["the cat sat", "a dog ran"]
TEST = ["the dog sat", "a cat ran", "the cat ran"]


def confused_runs():
    return {tag: {"log_probs": [spoken(text, CONFUSIONS) for text in texts], "references": texts}
            for tag, texts in (("dev", DEV), ("test", TEST))}


def test_transcript_lm_fixes_what_greedy_gets_wrong_and_the_tuned_weights_carry_over(tmp_path):
    lm_path, sentences, words = write_transcript_lm(TRAINING + ["", "   "], tmp_path / "lm.arpa", order=2)
    assert (sentences, words) == (18, 54) and "\\2-grams:" in (tmp_path / "lm.arpa").read_text()
    runs = confused_runs()
    result = evaluate_with_lm(runs, LABELS, str(lm_path), "dev",
                              alphas=(0.0, 0.25, 1.0), betas=(0.0, 1.0), beam_width=16, num_cpus=1, progress=False,
                              pruning={}, grow=0)
    grid = {(row["alpha"], row["beta"]): row["wer"] for row in result["grid"]}
    assert list(grid) == [(a, b) for a in (0.0, 0.25, 1.0) for b in (0.0, 1.0)]
    # too little LM weight keeps the confusions, too much overrides the acoustics: the tuned pair is between
    assert grid[(0.0, 0.0)] > 0.0 and grid[(1.0, 0.0)] > 0.0 and (result["alpha"], result["beta"]) == (0.25, 0.0)
    assert result["wer"]["dev"] == min(grid.values()) == 0.0  # every confusion fixed by the tuned weights...
    assert result["wer"]["test"] == 0.0 and list(result["wer"]) == ["dev", "test"]  # ...and on the other set
    plain = beam_search(runs["test"]["log_probs"], decoder=beam_decoder(LABELS, None, 16, 0.0, 0.0), progress=False)
    assert word_error_rate(plain, TEST)[0] == 3 / 9  # without the LM: dog, cat, cat all wrong


def test_an_axis_grows_one_step_beyond_the_edge_its_best_value_is_on():
    assert grown((1.0, 1.5, 2.5), 1.0, lowest=0.0) == [0.5]  # the spacing at that edge, not elsewhere
    assert grown((2.5, 1.0, 1.5), 2.5) == [3.5]  # order of the values given does not matter
    assert grown((0.5, 2.0, 4.0), 0.5) == [-1.0]  # beta may go negative (a word penalty)
    assert grown((1.0, 1.5, 2.5), 1.5) == [] and grown((2.0,), 2.0) == []  # inside; one value: no spacing
    assert grown((0.25, 1.0), 0.25, lowest=0.0) == [0.0] and grown((0.0, 0.5), 0.0, lowest=0.0) == []
    assert grown((0.1, 0.2, 0.3), 0.3) == [0.4]  # rounded, not 0.4000000000000001
    assert grown((0.1, 0.1000001), 0.1) == []  # a step that rounds onto a value the axis has adds nothing


def test_the_grid_grows_past_an_edge_until_the_best_pair_is_inside(tmp_path):
    lm_path, _, _ = write_transcript_lm(TRAINING, tmp_path / "lm.arpa", order=2)
    runs = confused_runs()

    def tune(grow):
        return evaluate_with_lm(runs, LABELS, str(lm_path), "dev", alphas=(0.5, 0.75), betas=(0.0, 1.0),
                                beam_width=16, num_cpus=1, progress=False, pruning={}, grow=grow)

    fixed = tune(0)  # too much LM weight everywhere on the grid given: its best pair is at its low-alpha edge
    assert len(fixed["grid"]) == 4 and fixed["alpha"] == 0.5 and fixed["wer"]["dev"] > 0
    result = tune(3)
    pairs = [(row["alpha"], row["beta"]) for row in result["grid"]]
    assert pairs[:4] == [(0.5, 0.0), (0.5, 1.0), (0.75, 0.0), (0.75, 1.0)]  # the grid given comes first
    # round 1: alpha 0.25 and beta -1 (the best pair sat on both low edges); round 2: alpha 0 (0.25 was best);
    # then the best pair is inside the grid and growing stops, one round before the limit
    assert sorted(pairs[4:9]) == [(0.25, -1.0), (0.25, 0.0), (0.25, 1.0), (0.5, -1.0), (0.75, -1.0)]
    assert sorted(pairs[9:]) == [(0.0, -1.0), (0.0, 0.0), (0.0, 1.0)]
    # (0.25, 1.0) ties (0.25, 0.0) and comes later: the first of least WER is the best
    assert (result["alpha"], result["beta"], result["grow"]) == (0.25, 0.0, 3)
    assert result["wer"] == {"dev": 0.0, "test": 0.0}  # the grown grid found what the fixed one missed
    assert fixed["on_edge"] and not result["on_edge"]
    limited = tune(1)  # one round: the best pair (alpha 0.25) is still on the edge, and the result says so
    assert limited["alpha"] == 0.25 and len(limited["grid"]) == 9 and limited["on_edge"]


def test_alpha_grows_down_to_zero_and_no_further(tmp_path):
    lm_path, _, _ = write_transcript_lm(TRAINING, tmp_path / "lm.arpa", order=2)
    result = evaluate_with_lm(confused_runs(), LABELS, str(lm_path), "dev", alphas=(0.3, 0.75), betas=(0.0,),
                              beam_width=16, num_cpus=1, progress=False, pruning={}, grow=3)
    # 0.3 is best, one step below it would be -0.15: the grid takes alpha 0 instead, then stops there
    assert [row["alpha"] for row in result["grid"]] == [0.3, 0.75, 0.0]
    assert result["alpha"] == 0.3 and not result["on_edge"]


def test_no_words_is_a_clear_error(tmp_path):
    with pytest.raises(NgramError, match="No words in the 2 transcripts"):
        write_transcript_lm(["", " "], tmp_path / "lm.arpa")


def test_lm_search_benchmark_compares_settings_on_saved_logprobs(tmp_path, capsys):
    import json
    import os
    import sys

    import torch

    from conftest import REPO

    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import lm_search

    lm_path, _, _ = write_transcript_lm(TRAINING, tmp_path / "lm.arpa", order=2)
    saved = {tag: dict(run, labels=LABELS) for tag, run in confused_runs().items()}  # as jasper_infer.py saves
    torch.save(saved, tmp_path / "lp.pt")
    out = tmp_path / "lm.json"
    args = ["--logprobs", str(tmp_path / "lp.pt"), "--lm_path", str(lm_path), "--num_cpus", "1", "--out", str(out)]
    rows = lm_search.main(args + ["--beam_widths", "4", "8", "--grow", "0", "2"])
    assert [(row["beam_width"], row["grow"]) for row in rows] == [(4, 0), (4, 2), (8, 0), (8, 2)]
    assert all(row["pairs"] == 9 for row in rows if row["grow"] == 0)  # the fixed 3 x 3 grid
    assert all(row["pairs"] > 9 for row in rows if row["grow"] == 2)  # its best pair (alpha 1) sat on the edge
    written = json.loads(out.read_text())
    assert written["tuned_on"] == "dev" and [row["wer"] for row in written["rows"]] == [row["wer"] for row in rows]
    assert "(tuned here)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        lm_search.main(args + ["--tune_on", "train"])
    assert stop.value.code == 1 and "--tune_on train" in capsys.readouterr().err
