"""Greedy CTC decoding (best class per frame); collapsing is done by ``helpers``."""
import collections

import torch

from nemo_core import LogprobsType, NeuralType, NonTrainableNM, PredictionsType


class GreedyCTCDecoder(NonTrainableNM):
    @property
    def input_ports(self):
        return collections.OrderedDict(log_probs=NeuralType(("B", "T", "D"), LogprobsType()))

    @property
    def output_ports(self):
        return collections.OrderedDict(predictions=NeuralType(("B", "T"), PredictionsType()))

    def forward(self, log_probs):
        with torch.no_grad():
            return log_probs.argmax(dim=-1)
