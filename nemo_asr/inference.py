"""Build a recogniser from a model config + checkpoint folder and run it over
manifests: shared by ``jasper_infer.py`` and ``transcribe``."""
import torch

from .data_layer import AudioToTextDataLayer
from .greedy_ctc_decoder import GreedyCTCDecoder
from .helpers import post_process_predictions, post_process_transcripts
from .model_config import modules_from_config


class Recognizer:
    """Preprocessor + encoder + decoder from a NeMo-style model config."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.labels = cfg["labels"]
        self.sample_rate = cfg.get("sample_rate", 16000)
        self.preprocessor, self.encoder, self.decoder = modules_from_config(cfg)
        self.greedy = GreedyCTCDecoder()
        hop = self.preprocessor.featurizer.hop_length / self.sample_rate
        self.frame_seconds = hop * self.encoder.total_stride

    def load(self, folder, pattern=""):
        """Restore encoder and decoder from the newest complete checkpoint set in ``folder``."""
        from nemo_core.checkpointing import restore_modules

        restore_modules([self.encoder, self.decoder], folder, pattern)
        return self

    def runner(self, backend, precision="fp32", model_path=None, workdir=None):
        """An ``InferenceRunner`` for these (loaded) weights; exports a file when needed."""
        import os

        from .export import AcousticPipeline, export_pipeline
        from .inference_runner import InferenceRunner

        if backend == "pytorch":
            return InferenceRunner("pytorch", model=AcousticPipeline(self.preprocessor, self.encoder, self.decoder),
                                   precision=precision)
        if model_path is None:
            suffix = "onnx" if backend == "onnxruntime" else "ts"
            model_path = os.path.join(workdir, f"model.{suffix}")
            export_pipeline(self.preprocessor, self.encoder, self.decoder, model_path,
                            "onnx" if backend == "onnxruntime" else "torchscript")
        return InferenceRunner(backend, path=model_path, precision=precision)

    def data_layer(self, manifest, batch_size):
        return AudioToTextDataLayer(manifest_filepath=manifest, labels=self.labels, batch_size=batch_size,
                                    sample_rate=self.sample_rate, shuffle=False, min_duration=None,
                                    max_duration=None)

    def tensors(self, layer):
        audio, audio_len, transcript, transcript_len = layer()
        spec, spec_len = self.preprocessor(input_signal=audio, length=audio_len)
        encoded, encoded_len = self.encoder(audio_signal=spec, length=spec_len)
        log_probs = self.decoder(encoder_output=encoded)
        predictions = self.greedy(log_probs=log_probs, log_probs_length=encoded_len)
        return log_probs, encoded_len, predictions, transcript, transcript_len

    def run(self, nf, manifest, batch_size, load_dir=None, verbose=True, runner=None):
        """Per-utterance log-probs (valid frames), greedy hypotheses, references, frame labels.

        Without ``runner`` the framework's infer action runs the DAG (restoring
        ``load_dir``); with one, batches go through that backend instead.
        """
        layer = self.data_layer(manifest, batch_size)
        if runner is None:
            log_probs, lengths, predictions, transcripts, transcript_lengths = nf.infer(
                list(self.tensors(layer)), checkpoint_dir=load_dir, verbose=verbose)
        else:
            log_probs, lengths, predictions, transcripts, transcript_lengths = [], [], [], [], []
            for audio, audio_len, transcript, transcript_len in layer.make_dataloader(training=False):
                lp, n = runner(audio, audio_len)
                log_probs.append(lp)
                lengths.append(n)
                predictions.append(self.greedy(log_probs=lp, log_probs_length=n))
                transcripts.append(transcript)
                transcript_lengths.append(transcript_len)
        utterance_log_probs, frame_labels = [], []
        for lp, n, pred in zip(log_probs, lengths, predictions):
            for i in range(lp.shape[0]):
                utterance_log_probs.append(lp[i, : int(n[i])].float())
                frame_labels.append(pred[i, : int(n[i])].tolist())
        return {
            "log_probs": utterance_log_probs,
            "hypotheses": post_process_predictions(predictions, self.labels),
            "references": post_process_transcripts(transcripts, transcript_lengths, self.labels),
            "frame_labels": frame_labels,
            "entries": layer.dataset.entries,
        }


def beam_search(log_probs, labels, lm_path, beam_width, alpha, beta, num_cpus=1):
    """Best beam-search text per utterance (list of (T, C) log-prob tensors)."""
    from .beam_search_decoder import BeamSearchDecoderWithLM

    decoder = BeamSearchDecoderWithLM(labels, beam_width, alpha, beta, lm_path=lm_path, num_cpus=num_cpus)
    texts = []
    for start in range(0, len(log_probs), 64):
        chunk = log_probs[start:start + 64]
        padded = torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True)
        lengths = torch.tensor([t.shape[0] for t in chunk])
        texts.extend(beams[0][1] if beams else "" for beams in decoder(log_probs=padded, log_probs_length=lengths))
    return texts
