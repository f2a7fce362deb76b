"""The CTC training/evaluation graph, wired once: data layer -> preprocessor ->
[spectrogram augmentation] -> encoder -> decoder -> CTC loss + greedy predictions.

``ctc_graph`` only records the DAG (``NmTensor`` s); an action (``nf.train``,
``nf.eval``, ``nf.infer``) runs it. Called again with the same modules and
another data layer it builds an evaluation DAG sharing their weights::

    train = ctc_graph(train_layer, preprocessor, encoder, decoder, loss=ctc_loss, augment=augment)
    dev = ctc_graph(dev_layer, preprocessor, encoder, decoder, loss=ctc_loss)
    nf.train([train.loss], callbacks=[EvaluatorCallback(eval_tensors=dev.monitored, ...)])
"""
from typing import NamedTuple

from nemo_core import NmTensor

from .greedy_ctc_decoder import GreedyCTCDecoder


class CTCGraph(NamedTuple):
    """The tensors of one CTC DAG (``loss`` is None when no loss module was given)."""

    log_probs: NmTensor
    encoded_lengths: NmTensor
    predictions: NmTensor
    transcript: NmTensor
    transcript_length: NmTensor
    loss: NmTensor | None

    @property
    def monitored(self):
        """``[loss, predictions, transcript, transcript length]``: what ``helpers.monitor_asr_train_progress``
        (``SimpleLossLoggerCallback``) and ``helpers.process_evaluation_batch`` (``EvaluatorCallback``) take."""
        return [self.loss, self.predictions, self.transcript, self.transcript_length]


def ctc_graph(data_layer, preprocessor, encoder, decoder, loss=None, augment=None, greedy=None):
    """Wire the CTC DAG over ``data_layer`` (audio, audio length, transcript, transcript length).

    ``loss``: a ``CTCLossNM`` (or any module with its ports), None for no
    loss tensor; ``augment``: a spectrogram augmentation applied between the
    preprocessor and the encoder (training); ``greedy``: the
    ``GreedyCTCDecoder`` to use (a new one when None; it holds no state). Works with any encoder with JasperEncoder's ports.
    """
    greedy = greedy if greedy is not None else GreedyCTCDecoder()
    audio, audio_len, transcript, transcript_len = data_layer()
    spec, spec_len = preprocessor(input_signal=audio, length=audio_len)
    if augment is not None:
        spec = augment(input_spec=spec)
    encoded, encoded_len = encoder(audio_signal=spec, length=spec_len)
    log_probs = decoder(encoder_output=encoded)
    predictions = greedy(log_probs=log_probs, log_probs_length=encoded_len)
    loss_tensor = None
    if loss is not None:
        loss_tensor = loss(log_probs=log_probs, targets=transcript, input_length=encoded_len,
                           target_length=transcript_len)
    return CTCGraph(log_probs, encoded_len, predictions, transcript, transcript_len, loss_tensor)
