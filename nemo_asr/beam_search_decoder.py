"""CTC beam search with an optional KenLM n-gram LM (via pyctcdecode + kenlm)."""
import collections
import math
import os

import torch

from nemo_core import LengthsType, LogprobsType, NeuralType, NonTrainableNM


def prune_log_probs(log_probs, cutoff_prob=1.0, cutoff_top_n=40, floor=-1.0e4):
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

    Output ``predictions``: per utterance a list of ``(score, text)``, best first.
    ``lm_path=None`` gives plain beam search. ``num_cpus > 1`` decodes a batch
    in parallel processes.
    """

    def __init__(self, vocab, beam_width, alpha, beta, lm_path=None, num_cpus=1, cutoff_prob=1.0,
                 cutoff_top_n=40, placement=None, name=None):
        super().__init__(placement=placement, name=name)
        try:
            from pyctcdecode import build_ctcdecoder
        except ImportError as err:
            raise ImportError("BeamSearchDecoderWithLM needs pyctcdecode (and kenlm for an LM): "
                              "pip install pyctcdecode kenlm") from err
        if lm_path is not None and not os.path.isfile(lm_path):
            raise FileNotFoundError(f"Language model {lm_path} does not exist")
        self.vocab = list(vocab)
        self.beam_width, self.alpha, self.beta = int(beam_width), float(alpha), float(beta)
        self.num_cpus = int(num_cpus or 1)
        self.cutoff_prob, self.cutoff_top_n = float(cutoff_prob), int(cutoff_top_n)
        try:
            self._decoder = build_ctcdecoder(self.vocab + [""], kenlm_model_path=lm_path, alpha=self.alpha,
                                             beta=self.beta)
        except (OSError, RuntimeError) as err:
            raise ValueError(f"Cannot load language model {lm_path}: {err}") from err
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

    def _beams(self, frames):
        beams = self._decoder.decode_beams(frames, beam_width=self.beam_width, token_min_logp=-math.inf,
                                           beam_prune_logp=-math.inf)
        return [(float(beam[-1]), beam[0]) for beam in beams]

    def forward(self, log_probs, log_probs_length):
        pruned = prune_log_probs(log_probs.detach().float(), self.cutoff_prob, self.cutoff_top_n)
        utterances = [pruned[i, : int(n)].cpu().numpy() for i, n in enumerate(log_probs_length)]
        if self.num_cpus > 1 and len(utterances) > 1:
            if self._pool is None:
                import multiprocessing

                self._pool = multiprocessing.get_context("fork").Pool(self.num_cpus)
            return self._pool.map(self._beams, utterances)
        return [self._beams(frames) for frames in utterances]

    def __getstate__(self):  # the pool cannot travel to worker processes
        state = self.__dict__.copy()
        state["_pool"] = None
        return state
