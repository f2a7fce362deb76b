"""CTC loss as a LossNM."""
import collections
import logging

import torch

from nemo_core import LabelsType, LengthsType, LogprobsType, LossNM, LossType, NeuralType

from .parts.masks import lengths_mask

REDUCTIONS = ("mean_batch", "mean", "sum", "none")
WARN_FIRST, WARN_EVERY = 5, 100

_logger = logging.getLogger("nemo_asr")


def ctc_required_frames(targets, target_length):
    """(B,) frames CTC needs per utterance: its labels plus one blank between each repeated pair.

    ``targets`` (B, S) padded label ids, ``target_length`` (B,). Vectorised
    twin of ``parts.data_check.ctc_required_frames``.
    """
    valid = ~lengths_mask(target_length, targets.shape[1])
    repeats = (targets[:, 1:] == targets[:, :-1]) & valid[:, 1:]
    return target_length + repeats.sum(dim=1)


class CTCLossNM(LossNM):
    """CTC over (B, T, C) log-probs with the blank as the last class (``num_classes``).

    ``reduction``: ``mean_batch`` (NeMo 0.x: per-utterance losses averaged over
    the batch), ``mean`` (each divided by its target length, then averaged),
    ``sum`` or ``none``.

    Utterances CTC cannot align (more required frames than ``input_length``)
    are counted each batch and warned about (the first 5 such batches, then
    every 100th, with the running total): their loss is infinite, or zero
    (with a zero gradient) under ``zero_infinity=True``. ``AudioToTextDataLayer.
    drop_ctc_infeasible`` removes them before training.
    """

    def __init__(self, num_classes, zero_infinity=False, reduction="mean_batch", placement=None, name=None):
        super().__init__(placement=placement, name=name)
        if reduction not in REDUCTIONS:
            raise ValueError(f"Unknown reduction {reduction!r}; valid: {', '.join(REDUCTIONS)}")
        self._blank = num_classes
        self._reduction = reduction
        self._zero_infinity = zero_infinity
        self._criterion = torch.nn.CTCLoss(blank=num_classes, reduction="none", zero_infinity=zero_infinity)
        self._infeasible_batches = 0
        self._infeasible_total = 0

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
        self._count_infeasible(targets, input_length, target_length)
        losses = self._criterion(log_probs.float().transpose(0, 1), targets.long(), input_length, target_length)
        if self._reduction == "mean_batch":
            return losses.mean()
        if self._reduction == "mean":
            return (losses / target_length.clamp(min=1).to(losses.dtype)).mean()
        if self._reduction == "sum":
            return losses.sum()
        return losses

    def _count_infeasible(self, targets, input_length, target_length):
        """Count this batch's unalignable utterances; warn, rate-limited, with the running total."""
        with torch.no_grad():
            infeasible = int((ctc_required_frames(targets.long(), target_length) > input_length).sum())
        if not infeasible:
            return
        self._infeasible_batches += 1
        self._infeasible_total += infeasible
        seen = self._infeasible_batches
        if seen <= WARN_FIRST or seen % WARN_EVERY == 0:
            effect = ("contribute zero loss and gradient (zero_infinity=True)" if self._zero_infinity
                      else "give an infinite loss (zero_infinity=False)")
            _logger.warning(
                "%s: CTC cannot align %d of %d utterance(s) in this batch (transcript needs more frames than "
                "input_length); they %s. Running total: %d utterance(s) in %d batch(es); "
                "AudioToTextDataLayer.drop_ctc_infeasible removes them before training",
                self.name, infeasible, len(target_length), effect, self._infeasible_total, seen)
