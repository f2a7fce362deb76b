"""Greedy CTC decoding (best class per frame); collapsing is done by ``helpers``."""
import collections

import torch

from nemo_core import LengthsType, LogprobsType, NeuralType, NonTrainableNM, PredictionsType

from .parts.masks import lengths_mask


class GreedyCTCDecoder(NonTrainableNM):
    """Argmax per frame; frames past ``log_probs_length`` become blank.

    Padded frames are not constrained by the CTC loss and may hold any class,
    so decoding them would append spurious characters. When
    ``log_probs_length`` is not wired, the lengths produced alongside the
    encoder output these log-probs come from (e.g. ``encoded_lengths``) are
    used automatically.
    """

    @property
    def input_ports(self):
        return collections.OrderedDict(
            log_probs=NeuralType(("B", "T", "D"), LogprobsType()),
            log_probs_length=NeuralType(("B",), LengthsType(), optional=True),
        )

    @property
    def output_ports(self):
        return collections.OrderedDict(predictions=NeuralType(("B", "T"), PredictionsType()))

    def complete_inputs(self, inputs):
        log_probs = inputs.get("log_probs")
        if "log_probs_length" not in inputs and log_probs is not None:
            lengths = log_probs.find_upstream(lambda t: isinstance(t.ntype.elements_type, LengthsType))
            if lengths is not None:
                inputs["log_probs_length"] = lengths
        return inputs

    def forward(self, log_probs, log_probs_length=None):
        with torch.no_grad():
            predictions = log_probs.argmax(dim=-1)
            if log_probs_length is not None:
                padded = lengths_mask(log_probs_length.to(predictions.device), predictions.shape[1])
                predictions = predictions.masked_fill(padded, log_probs.shape[-1] - 1)
            return predictions
