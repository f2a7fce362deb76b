"""CTC beam search with an optional KenLM n-gram LM (via pyctcdecode + kenlm).

Importing this module needs neither package (``nemo_asr.BeamSearchDecoderWithLM``
is always importable): constructing the decoder checks for them and names
the ``lm`` extra to install.
"""
import collections
import functools
import math
import os

import torch

from nemo_core import LengthsType, LogprobsType, NeuralType, NonTrainableNM
from nemo_core.utils.cli import require


class LanguageModelError(ValueError):
    """A language model file cannot be loaded; the message names it."""

    user_error = True  # one line on the command line (nemo_core.utils.cli)


PRUNED_FLOOR = -1.0e4  # the log-prob a pruned token gets
SKIP_BELOW_LOGP = math.log(1e-15) + 0.5  # just above pyctcdecode's clipping floor: pruned tokens are skipped


def prune_log_probs(log_probs, cutoff_prob=1.0, cutoff_top_n=40, floor=PRUNED_FLOOR):
    """Per frame keep the most likely tokens until their probability mass
    reaches ``cutoff_prob``, at most ``cutoff_top_n`` of them (DeepSpeech's
    pruning); the rest get ``floor``. Vectorised over (B, T)."""
    sorted_lp, order = log_probs.sort(dim=-1, descending=True)
    mass_before = sorted_lp.exp().cumsum(dim=-1) - sorted_lp.exp()
    rank = torch.arange(log_probs.shape[-1], device=log_probs.device)
    keep_sorted = (rank < cutoff_top_n) & ((mass_before < cutoff_prob) | (rank == 0))
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return log_probs.masked_fill(~keep, floor)


class BeamSearchDecoderWithLM(NonTrainableNM):
    """Beam search over (B, T, C) log-probs (blank last), optionally fused with
    an ARPA or KenLM binary LM: score = log P_ctc + alpha * log P_lm + beta * words.

    Output ``predictions``: per utterance a list of ``(score, text)``, best first
    (``decode(..., word_frames=True)`` adds each beam's words with their frame
    spans). ``lm_path=None`` gives plain beam search. ``num_cpus > 1`` decodes
    a batch in parallel processes. Pruning (default: none): per frame only the
    tokens within ``cutoff_prob`` of the mass, at most ``cutoff_top_n``, are
    expanded; beams more than ``-beam_prune_logp`` below the best are dropped. Needs ``pyctcdecode`` (and ``kenlm`` with an
    LM): ``pip install 'nemo-typed-modules[lm]'``.
    """

    def __init__(self, vocab, beam_width, alpha, beta, lm_path=None, num_cpus=1, cutoff_prob=1.0,
                 cutoff_top_n=40, beam_prune_logp=-math.inf, placement=None, name=None):
        super().__init__(placement=placement, name=name)
        if lm_path is not None:
            lm_path = os.fspath(lm_path)
            if not os.path.isfile(lm_path):
                kind = "is a folder, not a file" if os.path.isdir(lm_path) else "does not exist"
                raise FileNotFoundError(f"Language model {lm_path} {kind}: give an ARPA or KenLM binary file "
                                        "(scripts/build_lm.py builds one)")
            # pyctcdecode imports without kenlm and then fails inside with a NameError: check first
            require("kenlm", "lm", f"Beam search with the language model {lm_path}")
        build_ctcdecoder = require("pyctcdecode", "lm", "CTC beam search (BeamSearchDecoderWithLM)").build_ctcdecoder
        self.vocab = list(vocab)
        self.beam_width, self.alpha, self.beta = int(beam_width), float(alpha), float(beta)
        self.num_cpus = int(num_cpus or 1)
        self.cutoff_prob, self.cutoff_top_n = float(cutoff_prob), int(cutoff_top_n)
        self.beam_prune_logp = float(beam_prune_logp)
        try:
            self._decoder = build_ctcdecoder(self.vocab + [""], kenlm_model_path=lm_path, alpha=self.alpha,
                                             beta=self.beta)
        except (OSError, RuntimeError) as err:
            raise LanguageModelError(f"Cannot load language model {lm_path}: {err}; is it an ARPA or KenLM "
                                     "binary file?") from err
        self._pool = None

    def set_weights(self, alpha, beta):
        """Change the LM weight and word bonus without reloading the LM (e.g. to tune them)."""
        self.alpha, self.beta = float(alpha), float(beta)
        self._decoder.reset_params(alpha=self.alpha, beta=self.beta)
        self.close()  # forked workers hold the old weights

    def close(self):
        """Stop the worker processes (``num_cpus > 1``); the next batch starts new ones."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None

    @property
    def input_ports(self):
        return collections.OrderedDict(
            log_probs=NeuralType(("B", "T", "D"), LogprobsType()),
            log_probs_length=NeuralType(("B",), LengthsType()),
        )

    @property
    def output_ports(self):
        return collections.OrderedDict(predictions=NeuralType())

    def _beams(self, frames, word_frames=False):
        # pyctcdecode clips log-probs at log(1e-15) (MIN_TOKEN_CLIP_P); tokens pruned by prune_log_probs land
        # there and are not expanded at all, so pruning saves time (so are tokens below 1e-15: never a beam's)
        beams = self._decoder.decode_beams(frames, beam_width=self.beam_width, token_min_logp=SKIP_BELOW_LOGP,
                                           beam_prune_logp=self.beam_prune_logp)
        # pyctcdecode's beam: (text, lm state, [(word, (first frame, end frame))], logit score, combined score)
        if word_frames:
            return [(float(beam[-1]), beam[0], [(word, int(start), int(end)) for word, (start, end) in beam[2]])
                    for beam in beams]
        return [(float(beam[-1]), beam[0]) for beam in beams]

    def decode(self, log_probs, log_probs_length, word_frames=False):
        """Beams of each utterance, best first: ``(score, text)``, or with ``word_frames``
        ``(score, text, [(word, first_frame, end_frame)])`` (end exclusive, frames of ``log_probs``)."""
        pruned = prune_log_probs(log_probs.detach().float(), self.cutoff_prob, self.cutoff_top_n)
        utterances = [pruned[i, : int(n)].cpu().numpy() for i, n in enumerate(log_probs_length)]
        one = functools.partial(self._beams, word_frames=word_frames)
        if self.num_cpus > 1 and len(utterances) > 1:
            if self._pool is None:
                import multiprocessing

                self._pool = multiprocessing.get_context("fork").Pool(self.num_cpus)
            return self._pool.map(one, utterances)
        return [one(frames) for frames in utterances]

    def forward(self, log_probs, log_probs_length):
        return self.decode(log_probs, log_probs_length)

    def __getstate__(self):  # the pool cannot travel to worker processes
        state = self.__dict__.copy()
        state["_pool"] = None
        return state
