"""The whole acoustic pipeline as one exportable graph:
(audio, audio length) -> (log-probs, encoded lengths).

Feature extraction uses the convolution STFT (``stft_conv``) so it exports
to ONNX, and no time padding (``pad_to=0``), which inference does not need.
"""
import copy

import torch

from .parts.features import FilterbankFeatures
from .parts.jasper import ctc_log_probs, run_blocks


class EncoderDecoder(torch.nn.Module):
    """Plain torch module: (features, frames) -> (log-probs, encoded lengths)."""

    def __init__(self, encoder, decoder):
        super().__init__()
        self.blocks = encoder.encoder
        self.decoder_layers = decoder.decoder_layers
        self.eval()

    def forward(self, audio_signal, length):
        encoded, encoded_len = run_blocks(self.blocks, audio_signal, length)
        return ctc_log_probs(self.decoder_layers, encoded), encoded_len


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
        self.model = EncoderDecoder(encoder, decoder)
        self.eval()

    def forward(self, audio_signal, length):
        return self.model(*self.features(audio_signal, length))


def export_pipeline(preprocessor, encoder, decoder, output, d_format="onnx", opset=17, features_input=False):
    """Export to ONNX (dynamic batch and time) or TorchScript; from audio, or
    with ``features_input`` from features (encoder + decoder only)."""
    from nemo_core.deployment import export_onnx

    if features_input:
        model = EncoderDecoder(encoder, decoder).to("cpu")
        example = (torch.randn(2, preprocessor.num_features, 200), torch.tensor([200, 150]))
        time_axis = {0: "batch", 2: "frames"}
    else:
        model = AcousticPipeline(preprocessor, encoder, decoder).to("cpu")
        example = (torch.randn(2, 32000) * 0.1, torch.tensor([32000, 24000]))
        time_axis = {0: "batch", 1: "samples"}
    with torch.no_grad():
        if d_format == "torchscript":
            torch.jit.trace(model, example, check_trace=False).save(output)
            return output
        if d_format != "onnx":
            raise ValueError(f"d_format must be 'onnx' or 'torchscript', got {d_format!r}")
        return export_onnx(model, example, output, ["audio_signal", "length"], ["log_probs", "encoded_lengths"],
                           {"audio_signal": time_axis, "length": {0: "batch"},
                            "log_probs": {0: "batch", 1: "frames"}, "encoded_lengths": {0: "batch"}}, opset)
