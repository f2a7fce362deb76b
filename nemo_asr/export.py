"""The whole acoustic pipeline as one exportable graph:
(audio, audio length) -> (log-probs, encoded lengths).

Feature extraction uses the convolution STFT (``stft_conv``) so it exports
to ONNX, and no time padding (``pad_to=0``), which inference does not need.
"""
import copy

import torch

from .parts.features import FilterbankFeatures
from .parts.jasper import ctc_log_probs, run_blocks


class AcousticPipeline(torch.nn.Module):
    """Plain torch module: features + encoder + decoder, in eval mode."""

    def __init__(self, preprocessor, encoder, decoder):
        super().__init__()
        source = preprocessor.featurizer
        if not isinstance(source, FilterbankFeatures):
            raise ValueError("Only mel/spectrogram preprocessors can be exported in a pipeline")
        features = copy.deepcopy(source)
        if features.stft_conv is None:
            from .parts.features import ConvSTFT

            features.stft_conv = ConvSTFT(features.n_fft, features.hop_length, features.window)
        features.pad_to = 0
        self.features = features
        self.blocks = encoder.encoder
        self.decoder_layers = decoder.decoder_layers
        self.eval()

    def forward(self, audio_signal, length):
        spec, spec_len = self.features(audio_signal, length)
        encoded, encoded_len = run_blocks(self.blocks, spec, spec_len)
        return ctc_log_probs(self.decoder_layers, encoded), encoded_len


def export_pipeline(preprocessor, encoder, decoder, output, d_format="onnx", opset=17, example_seconds=2.0):
    """Export the pipeline to ONNX (dynamic batch and time) or TorchScript."""
    from nemo_core.deployment import export_onnx

    model = AcousticPipeline(preprocessor, encoder, decoder).to("cpu")
    samples = int(example_seconds * 16000)
    audio = torch.randn(2, samples) * 0.1
    length = torch.tensor([samples, samples * 3 // 4])
    with torch.no_grad():
        if d_format == "torchscript":
            torch.jit.trace(model, (audio, length), check_trace=False).save(output)
            return output
        if d_format != "onnx":
            raise ValueError(f"d_format must be 'onnx' or 'torchscript', got {d_format!r}")
        return export_onnx(model, (audio, length), output, ["audio_signal", "length"],
                           ["log_probs", "encoded_lengths"],
                           {"audio_signal": {0: "batch", 1: "samples"}, "length": {0: "batch"},
                            "log_probs": {0: "batch", 1: "frames"}, "encoded_lengths": {0: "batch"}}, opset)
