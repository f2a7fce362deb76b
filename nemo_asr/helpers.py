"""Functions for the tutorial's callbacks: decode predictions, log WER."""
import logging

import torch

from .metrics import word_error_rate

_logger = logging.getLogger("nemo_asr")


def post_process_predictions(predictions, labels):
    """Greedy CTC collapse: merge repeats, drop blanks (index ``len(labels)``)."""
    blank = len(labels)
    hypotheses = []
    for batch in predictions:
        for row in batch.long().cpu().tolist():
            chars, previous = [], blank
            for p in row:
                if p != previous and p != blank:
                    chars.append(labels[p])
                previous = p
            hypotheses.append("".join(chars))
    return hypotheses


def post_process_transcripts(transcript_list, transcript_len_list, labels):
    references = []
    for transcripts, lengths in zip(transcript_list, transcript_len_list):
        for row, length in zip(transcripts.long().cpu().tolist(), lengths.long().cpu().tolist()):
            references.append("".join(labels[c] for c in row[:length] if 0 <= c < len(labels)))
    return references


def monitor_asr_train_progress(tensors, labels, eval_metric="WER", tb_logger=None, logger=None):
    """For ``SimpleLossLoggerCallback``: tensors = [loss, predictions, transcript, transcript_len]."""
    logger = logger or _logger
    loss, predictions, transcripts, lengths = tensors[:4]
    references = post_process_transcripts([transcripts], [lengths], labels)
    hypotheses = post_process_predictions([predictions], labels)
    rate = word_error_rate(hypotheses, references, use_cer=eval_metric == "CER")[0]
    tag = f"training_batch_{eval_metric}"
    if tb_logger is not None:
        tb_logger.add_scalar(tag, rate)
    logger.info("Loss: %.4f", float(loss))
    logger.info("%s: %5.2f%%", tag, rate * 100)
    logger.info("Prediction: %s", hypotheses[0])
    logger.info("Reference: %s", references[0])
    return rate


def process_evaluation_batch(tensors, global_vars, labels):
    """For ``EvaluatorCallback``: collect loss, hypotheses and references of one batch."""
    for key in ("EvalLoss", "predictions", "transcripts"):
        global_vars.setdefault(key, [])
    transcripts = lengths = None
    for name, values in tensors.items():
        if name.startswith("loss"):
            global_vars["EvalLoss"].extend(v.float().mean() for v in values)
        elif name.startswith("predictions"):
            global_vars["predictions"].extend(post_process_predictions(values, labels))
        elif name.startswith("transcript_length"):
            lengths = values
        elif name.startswith("transcript"):
            transcripts = values
    if transcripts is not None and lengths is not None:
        global_vars["transcripts"].extend(post_process_transcripts(transcripts, lengths, labels))


def process_evaluation_epoch(global_vars, eval_metric="WER", tag=None, logger=None):
    """Loss and WER over the whole eval set; returns ``{tag: value}`` for TensorBoard."""
    logger = logger or _logger
    loss = torch.stack(global_vars["EvalLoss"]).mean().item() if global_vars.get("EvalLoss") else float("nan")
    rate, edits, words = word_error_rate(global_vars["predictions"], global_vars["transcripts"],
                                         use_cer=eval_metric == "CER")
    suffix = f"_{tag}" if tag else ""
    logger.info("Evaluation loss%s: %.4f", suffix, loss)
    logger.info("Evaluation %s%s: %.2f%% (%d edits / %d reference words)", eval_metric, suffix,
                rate * 100, edits, words)
    return {f"Evaluation_Loss{suffix}": loss, f"Evaluation_{eval_metric}{suffix}": rate}
