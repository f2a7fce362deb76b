"""CTC loss as a LossNM."""
import collections

import torch

from nemo_core import LabelsType, LengthsType, LogprobsType, LossNM, LossType, NeuralType

REDUCTIONS = ("mean_batch", "mean", "sum", "none")


class CTCLossNM(LossNM):
    """CTC over (B, T, C) log-probs with the blank as the last class (``num_classes``).

    ``reduction``: ``mean_batch`` (NeMo 0.x: per-utterance losses averaged over
    the batch), ``mean`` (each divided by its target length, then averaged),
    ``sum`` or ``none``.
    """

    def __init__(self, num_classes, zero_infinity=False, reduction="mean_batch", placement=None, name=None):
        super().__init__(placement=placement, name=name)
        if reduction not in REDUCTIONS:
            raise ValueError(f"Unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
        self._blank = num_classes
        self._reduction = reduction
        self._criterion = torch.nn.CTCLoss(blank=num_classes, reduction="none", zero_infinity=zero_infinity)

    @property
    def input_ports(self):
        return collections.OrderedDict(
            log_probs=NeuralType(("B", "T", "D"), LogprobsType()),
            targets=NeuralType(("B", "T"), LabelsType()),
            input_length=NeuralType(("B",), LengthsType()),
            target_length=NeuralType(("B",), LengthsType()),
        )

    @property
    def output_ports(self):
        return collections.OrderedDict(loss=NeuralType(None, LossType()))

    def forward(self, log_probs, targets, input_length, target_length):
        input_length = input_length.long()
        target_length = target_length.long()
        losses = self._criterion(log_probs.float().transpose(0, 1), targets.long(), input_length, target_length)
        if self._reduction == "mean_batch":
            return losses.mean()
        if self._reduction == "mean":
            return (losses / target_length.clamp(min=1).to(losses.dtype)).mean()
        if self._reduction == "sum":
            return losses.sum()
        return losses
