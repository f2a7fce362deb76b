import io
import os
import re
import sys

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


class FakeTerminal(io.StringIO):
    """stderr that says it is a terminal, so tqdm (``disable=None``) draws its bar into it."""

    def isatty(self):
        return True


def test_beam_words_and_frames_describe_the_beam_text_not_the_greedy_one():
    from nemo_asr.inference import beam_decoder, beam_search_with_words
    from nemo_asr.parts.ctc_offsets import word_offsets

    greedy = word_offsets(AMBIGUOUS[0].argmax(-1).tolist(), LABELS, 0.02)
    assert [w["word"] for w in greedy] == ["hat"]  # what the greedy alignment says
    # unpruned, so the LM can override the acoustics even where they are sure ("hat" -> "hot" below)
    decoder = beam_decoder(LABELS, LM, beam_width=8, alpha=1.0, beta=0.0, pruning={})
    (beams,) = decoder.decode(AMBIGUOUS, torch.tensor([5]), word_frames=True)
    assert beams[0][1] == "hot" and beams[0][2] == [("hot", 0, 5)]
    two = frames([{"h": 0.9}, {"o": 0.9}, {"t": 0.9}, {" ": 0.9}, {"_": 0.9}, {"h": 0.9}, {"a": 0.9},
                  {"t": 0.9}, {"t": 0.9}, {"_": 0.9}])
    best = beam_search_with_words([AMBIGUOUS[0], two], decoder, frame_seconds=0.04, progress=False)
    assert best[0] == ("hot", [{"word": "hot", "start": 0.0, "end": 0.2}])
    text, words = best[1]
    assert [w["word"] for w in words] == text.split() == ["hot", "hot"]  # the LM wins over "hat" here too
    # frames 5..9, the repeated t included (pyctcdecode may start a word on the blank before it: merged beams)
    assert 0.16 <= words[1]["start"] <= 0.2 and words[1]["end"] == 0.36


def test_set_weights_equals_a_new_decoder_and_beam_search_shows_progress(monkeypatch):
    from nemo_asr.inference import beam_decoder, beam_search

    batch = [AMBIGUOUS[0], AMBIGUOUS[0, :3]]
    decoder = beam_decoder(LABELS, LM, beam_width=8, alpha=0.0, beta=0.0, num_cpus=2)
    assert beam_search(batch, LABELS, LM, 8, 0.0, 0.0, decoder=decoder, progress=False) == ["hat", "ha"]
    decoder.set_weights(1.0, 0.0)  # the forked workers must not keep the old weights
    expected = beam_search(batch, LABELS, LM, 8, 1.0, 0.0, progress=False)
    assert beam_search(batch, None, None, None, None, None, decoder=decoder, progress=False) == expected
    decoder.close()
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    beam_search(batch, LABELS, None, 4, 0.0, 0.0)
    assert "beam search:" in terminal.getvalue() and "/2 " in terminal.getvalue()


@pytest.mark.parametrize("missing", ["kenlm", "pyctcdecode"])
def test_missing_lm_packages_name_the_extra(monkeypatch, missing):
    from nemo_core.utils.cli import MissingExtraError

    monkeypatch.setitem(sys.modules, missing, None)  # import fails as if not installed
    with pytest.raises(MissingExtraError, match=re.escape(f"{missing!r} package") + r".*\[lm\]'"):
        BeamSearchDecoderWithLM(LABELS, 4, 1.0, 0.0, lm_path=LM)


def test_decoder_module_imports_without_lm_packages(monkeypatch):
    """``nemo_asr.BeamSearchDecoderWithLM`` can be exported unconditionally: the module's code
    runs without kenlm and pyctcdecode, and only constructing the decoder names the extra."""
    import importlib.util

    from nemo_core.utils.cli import MissingExtraError

    monkeypatch.setitem(sys.modules, "kenlm", None)
    monkeypatch.setitem(sys.modules, "pyctcdecode", None)
    path = os.path.join(REPO, "nemo_asr", "beam_search_decoder.py")
    spec = importlib.util.spec_from_file_location("nemo_asr._beam_search_decoder_fresh", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # a fresh run of the module's code with both packages missing
    with pytest.raises(MissingExtraError, match=re.escape("pip install 'nemo-typed-modules[lm]'")):
        module.BeamSearchDecoderWithLM(LABELS, 4, 0.0, 0.0)


def test_pruned_tokens_are_never_expanded():
    """``cutoff_top_n=1`` keeps only each frame's best token: no beam can hold the runner-up vowel."""
    full = BeamSearchDecoderWithLM(LABELS, beam_width=8, alpha=0.0, beta=0.0)
    pruned = BeamSearchDecoderWithLM(LABELS, beam_width=8, alpha=0.0, beta=0.0, cutoff_top_n=1)
    lengths = torch.tensor([5])
    assert "hot" in [text for _, text in full(log_probs=AMBIGUOUS, log_probs_length=lengths)[0]]
    assert [text for _, text in pruned(log_probs=AMBIGUOUS, log_probs_length=lengths)[0]] == ["hat"]
    # beam pruning: beams far below the best are dropped as well
    narrow = BeamSearchDecoderWithLM(LABELS, beam_width=8, alpha=0.0, beta=0.0, beam_prune_logp=-0.5)
    texts = [text for _, text in narrow(log_probs=AMBIGUOUS, log_probs_length=lengths)[0]]
    assert texts[0] == "hat" and len(texts) < len(full(log_probs=AMBIGUOUS, log_probs_length=lengths)[0])


def test_tools_prune_the_search_so_the_lm_cannot_pull_in_what_the_acoustics_ruled_out():
    """The tools' default pruning (``DEFAULT_PRUNING``, the after-training table's too) keeps an LM from
    choosing a character the acoustic model gave 0.05 %; the unpruned search lets a strong LM do it."""
    from nemo_asr.inference import DEFAULT_PRUNING, beam_decoder

    sure = frames([{"h": 0.9}, {"_": 0.9}, {"a": 10.0, "o": 0.005}, {"_": 0.9}, {"t": 0.9}])[None]
    assert 0.999 < sure[0, 2].exp().max() and DEFAULT_PRUNING["cutoff_prob"] == 0.999
    texts = {}
    for name, pruning in (("default", None), ("none", {})):
        decoder = beam_decoder(LABELS, LM, beam_width=8, alpha=2.0, beta=0.0, pruning=pruning)
        texts[name] = decoder.decode(sure, torch.tensor([5]))[0][0][1]
    assert texts == {"default": "hat", "none": "hot"}


@pytest.mark.parametrize("argv, message", [
    (["--cutoff_prob", "0"], "--cutoff_prob 0: give a share of the mass in (0, 1]"),
    (["--cutoff_prob", "1.5"], "--cutoff_prob 1.5: give a share"),
    (["--beam_prune_logp", "0"], "--beam_prune_logp 0: give a negative log-prob margin"),
])
def test_pruning_options_are_checked_with_the_option_named(argv, message):
    import argparse

    from nemo_asr.inference import add_pruning_args, pruning_options
    from nemo_core.utils.cli import UserError

    parser = argparse.ArgumentParser()
    add_pruning_args(parser)
    assert pruning_options(parser.parse_args([])) == {"cutoff_prob": 0.999, "beam_prune_logp": -10.0}
    assert pruning_options(parser.parse_args(["--cutoff_prob", "1", "--beam_prune_logp=-inf"])) == {
        "cutoff_prob": 1.0, "beam_prune_logp": float("-inf")}
    with pytest.raises(UserError, match=re.escape(message)):
        pruning_options(parser.parse_args(argv))
