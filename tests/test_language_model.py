"""nemo_asr.language_model: an n-gram LM from transcripts, alpha/beta tuned on one set and applied
to the others (behind ``jasper.py --lm_order`` and ``scripts/tune_lm_params.py``)."""
import pytest

pytest.importorskip("pyctcdecode")
pytest.importorskip("kenlm")

from nemo_asr.inference import beam_decoder, beam_search  # noqa: E402
from nemo_asr.language_model import evaluate_with_lm, write_transcript_lm  # noqa: E402
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


def test_transcript_lm_fixes_what_greedy_gets_wrong_and_the_tuned_weights_carry_over(tmp_path):
    training = ["the cat sat", "a cat ran", "the dog sat", "a dog ran", "the cat ran", "a dog sat"] * 3
    lm_path, sentences, words = write_transcript_lm(training + ["", "   "], tmp_path / "lm.arpa", order=2)
    assert (sentences, words) == (18, 54) and "\\2-grams:" in (tmp_path / "lm.arpa").read_text()
    confusions = {"c": "k", "g": "t"}  # "cat" sounds like "kat", "dog" like "dot": words the LM never saw
    dev = ["the cat sat", "a dog ran"]
    test = ["the dog sat", "a cat ran", "the cat ran"]
    runs = {tag: {"log_probs": [spoken(text, confusions) for text in texts], "references": texts}
            for tag, texts in (("dev", dev), ("test", test))}
    result = evaluate_with_lm(runs, LABELS, str(lm_path), "dev",
                              alphas=(0.0, 0.25, 1.0), betas=(0.0, 1.0), beam_width=16, num_cpus=1, progress=False,
                              pruning={})
    grid = {(row["alpha"], row["beta"]): row["wer"] for row in result["grid"]}
    assert list(grid) == [(a, b) for a in (0.0, 0.25, 1.0) for b in (0.0, 1.0)]
    # too little LM weight keeps the confusions, too much overrides the acoustics: the tuned pair is between
    assert grid[(0.0, 0.0)] > 0.0 and grid[(1.0, 0.0)] > 0.0 and (result["alpha"], result["beta"]) == (0.25, 0.0)
    assert result["wer"]["dev"] == min(grid.values()) == 0.0  # every confusion fixed by the tuned weights...
    assert result["wer"]["test"] == 0.0 and list(result["wer"]) == ["dev", "test"]  # ...and on the other set
    plain = beam_search(runs["test"]["log_probs"], decoder=beam_decoder(LABELS, None, 16, 0.0, 0.0), progress=False)
    assert word_error_rate(plain, test)[0] == 3 / 9  # without the LM: dog, cat, cat all wrong


def test_no_words_is_a_clear_error(tmp_path):
    with pytest.raises(NgramError, match="No words in the 2 transcripts"):
        write_transcript_lm(["", " "], tmp_path / "lm.arpa")
