"""Post-training int8 quantisation, two ways; feature extraction always stays float32
because its log/normalisation steps are precision-sensitive.

ONNX Runtime (``quantize_pipeline``, ``scripts/quantize.py --method ort_static``):
static QDQ on an exported pipeline: weights int8 per output channel,
activations uint8 calibrated (min-max) on real utterances. Only the
encoder's (and optionally the decoder's) convolutions are quantised.
``quantize_pipeline_dynamic`` (``--method ort_dynamic``): DeepSpeech2's LSTM
layers as ONNX Runtime's ``DynamicQuantizeLSTM`` (int8 weights, inputs
quantised per call; no calibration). Measured on the DeepSpeech2 demo model
(random weights, batch 1, 20 utterances): 1.9x ONNX Runtime fp32, greedy frame
labels equal on 99.1 % of frames; statically quantising its front-end
convolutions as well added nothing (1.92x), as the LSTMs hold most of its
multiply-adds.

PyTorch (``quantize_torch``, ``--method torch_dynamic|torch_static``):
``torch.ao.quantization`` in eager mode, module by module, on copies of the
encoder and decoder (the float modules are left alone), as in SpeechBrain's
quantisation tutorial. (torch 2.13 marks ``torch.ao.quantization`` deprecated
in favour of the separate ``torchao`` package; it still works, and
``quantize_torch`` silences those warnings.)

- ``torch_dynamic``: int8 weights, activations quantised per batch on the
  fly (no calibration), for RNNs (DeepSpeech2's LSTM/GRU stack) and
  ``nn.Linear`` layers (squeeze-excitation). Dynamic quantisation has no
  convolution kernels, so QuartzNet is left (nearly) float by it.
- ``torch_static``: convolutions with int8 weights (per output channel) and
  int8 activations whose ranges are calibrated (histogram observers) on
  real utterances: QuartzNet's pointwise (1x1, most of its multiply-adds),
  residual and dense convolutions, DeepSpeech2's 2-D front end. Each is
  wrapped in an ``Int8Island`` (quantise -> int8 conv -> dequantise), since
  the masking, norms and activations between them run in float. Depthwise
  convolutions (QuartzNet's time-channel separable kernels, DeepSpeech2's
  lookahead) stay float: fbgemm's int8 1-D depthwise convolution measured
  about 8x slower than the float one (QuartzNet demo, 1 thread). RNN and
  Linear layers, which eager static quantisation does not cover, get the
  dynamic treatment, so this is the tutorial's mixed recipe.

Measured on 30 AN4 utterances in batches of 10, 1 thread, demo-sized
models (random weights; a shared 2-core machine, so +-20 %): DeepSpeech2
demo torch_static 1.44x the float32 speed (torch_dynamic 1.11x), greedy
frame labels equal float32's on 97.7 % (98.8 %) of frames; QuartzNet demo
torch_static 1.0-1.1x, torch_dynamic 0.9x: an int8 pointwise convolution
alone ran 1.4x faster than float32, but each one pays a quantise and a
dequantise, and the depthwise convolutions, norms and masking around it
stay float. On the tiny QuartzNet trained on the AN4 subset, both methods
give the float32 greedy transcripts exactly (tests/test_quantization_torch.py).

The CTC head (the decoder's 1x1 convolution) stays float unless
``quantize_head=True`` (``torch_static``): its logits decide every
character, and it is a small share of the time.
"""
import copy
import logging
import os
import tempfile
import warnings

import numpy as np
import torch
from torch import nn


class _Batches:
    """CalibrationDataReader over (audio, lengths) numpy batches."""

    def __init__(self, batches):
        self._iter = iter(batches)

    def get_next(self):
        batch = next(self._iter, None)
        if batch is None:
            return None
        audio, lengths = batch
        return {"audio_signal": audio.astype(np.float32), "length": lengths.astype(np.int64)}

    def rewind(self):  # not needed for one min-max pass
        pass


def quantize_pipeline(fp32_path, int8_path, calibration_batches, quantize_decoder=True):
    """Write an int8 QDQ model of ``fp32_path``; returns ``int8_path``."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(_Batches, CalibrationDataReader):
        pass

    with tempfile.TemporaryDirectory() as tmp:
        prepared = os.path.join(tmp, "prepared.onnx")
        quant_pre_process(fp32_path, prepared, skip_symbolic_shape=True)
        graph = onnx.load(prepared).graph
        keep_float = [n.name for n in graph.node
                      if n.name.startswith("/features") or (not quantize_decoder and "/decoder_layers" in n.name)]
        quantize_static(prepared, int8_path, Reader(calibration_batches), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv"], nodes_to_exclude=keep_float)
    return int8_path


class QuantizationError(ValueError):
    """A model cannot be quantised the way asked; the message says why and what to use instead."""

    user_error = True  # one line on the command line (nemo_core.utils.cli)


# ONNX Runtime's dynamic int8 kernels that pay on CPU: LSTM (DynamicQuantizeLSTM) and matrix products
ORT_DYNAMIC_OPS = ("LSTM", "MatMul", "Gemm")


def quantize_pipeline_dynamic(fp32_path, int8_path):
    """Write a dynamic int8 model of ``fp32_path`` (``--method ort_dynamic``): the LSTM layers (and matrix
    products) get int8 weights, their inputs are quantised per call, so nothing is calibrated. Feature
    extraction stays float. For DeepSpeech2's LSTM stack; a model without such layers (QuartzNet's
    convolutions, GRUs, which ONNX Runtime has no int8 kernel for) raises ``QuantizationError``."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(fp32_path).graph
    targets = [n.name for n in graph.node if n.op_type in ORT_DYNAMIC_OPS and not n.name.startswith("/features")]
    if not targets:
        rnns = sorted({n.op_type for n in graph.node if n.op_type in ("GRU", "RNN")})
        why = f"its {'/'.join(rnns)} layers have no ONNX Runtime int8 kernel" if rnns else "its layers are convolutions"
        raise QuantizationError(f"{fp32_path}: dynamic int8 covers LSTM and matrix-product layers and this model has "
                                f"none ({why}); use --method ort_static (convolutions) or torch_dynamic")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    keep_float = [n.name for n in graph.node if n.name.startswith("/features")]
    with tempfile.TemporaryDirectory() as tmp:
        prepared = os.path.join(tmp, "prepared.onnx")
        quant_pre_process(fp32_path, prepared, skip_symbolic_shape=True)
        quantize_dynamic(prepared, int8_path, op_types_to_quantize=list(ORT_DYNAMIC_OPS),
                         weight_type=QuantType.QInt8, nodes_to_exclude=keep_float)
    return int8_path


# ---------------------------------------------------------------- PyTorch (torch.ao) int8
TORCH_METHODS = ("torch_dynamic", "torch_static")
RNN_TYPES = (nn.LSTM, nn.GRU)  # what quantize_dynamic covers; a plain nn.RNN stays float (warned)
CONV_TYPES = (nn.Conv1d, nn.Conv2d)


class Int8Island(nn.Module):
    """``QuantStub -> layer -> DeQuantStub``: float in and out, ``layer`` int8 once converted.

    Attributes the wrapper lacks are the layer's (``kernel_size``,
    ``stride``, ``padding``...), so length arithmetic that reads them off a
    convolution (``MaskedConv1d.get_seq_len``, ``total_stride``) still works.
    """

    def __init__(self, layer):
        super().__init__()
        self.quant, self.dequant = torch.ao.quantization.QuantStub(), torch.ao.quantization.DeQuantStub()
        self.layer = layer

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["layer"], name)

    def forward(self, x):
        return self.dequant(self.layer(self.quant(x)))


def _static_target(module):
    """Convolutions ``torch_static`` quantises: all but depthwise ones (see the module docstring)."""
    return type(module) in CONV_TYPES and not (module.groups > 1 and module.groups == module.in_channels)


def _swap(root, wanted, make):
    """Replace every submodule of ``root`` for which ``wanted(module)`` holds by ``make(module)``."""
    swaps = [(parent, name, child) for parent in root.modules() for name, child in parent.named_children()
             if wanted(child)]
    for parent, name, child in swaps:
        setattr(parent, name, make(child))


def quantized_layers(module):
    """``{name: count}`` of the int8 layers in ``module`` (``torch.ao.nn.quantized`` modules): static
    ones by class (``Conv1d``), dynamic ones prefixed (``dynamic.LSTM``)."""
    counts = {}
    for layer in module.modules():
        kind = type(layer)
        if kind.__module__.startswith("torch.ao.nn.quantized") and "Packed" not in kind.__name__ and not issubclass(
                kind, (torch.ao.nn.quantized.Quantize, torch.ao.nn.quantized.DeQuantize)):
            name = ("dynamic." if ".dynamic." in kind.__module__ else "") + kind.__name__
            counts[name] = counts.get(name, 0) + 1
    return counts


def feature_batches(preprocessor, audio_batches):
    """``[(features, frames)]`` of numpy ``(audio, lengths)`` batches, by ``preprocessor`` in eval mode."""
    was_training = preprocessor.training
    preprocessor.eval()
    try:
        with torch.no_grad():
            return [preprocessor(input_signal=torch.as_tensor(audio, dtype=torch.float32).to(preprocessor.device),
                                 length=torch.as_tensor(lengths).long().to(preprocessor.device))
                    for audio, lengths in audio_batches]
    finally:
        preprocessor.train(was_training)


def quantize_torch(encoder, decoder, method, calibration=(), quantize_head=False, backend="x86"):
    """int8 copies ``(encoder, decoder)`` of float ``encoder``/``decoder`` modules (left unchanged), on the CPU.

    ``method``: ``torch_dynamic`` or ``torch_static`` (see the module docstring
    for what each quantises); ``quantize_head`` (``torch_static`` only) makes
    the decoder's convolution int8 too. ``calibration``: ``(features,
    frames)`` batches (``feature_batches``) for ``torch_static``'s activation
    ranges; a few dozen real utterances suffice. ``backend``: the quantized
    engine it sets (``torch.backends.quantized.engine``): ``x86``/``fbgemm``
    on x86 CPUs, ``qnnpack`` on ARM. The copies run like the originals
    (eager calls, ``AcousticPipeline``, TorchScript tracing).
    """
    if method not in TORCH_METHODS:
        raise ValueError(f"method must be one of {', '.join(TORCH_METHODS)}, got {method!r}")
    calibration = list(calibration)
    if method == "torch_static" and not calibration:
        raise ValueError("torch_static needs calibration batches (features, frames) to set activation ranges")
    if quantize_head and method != "torch_static":
        raise ValueError("quantize_head needs torch_static: the CTC head is a convolution, which dynamic "
                         "quantisation does not cover")
    torch.backends.quantized.engine = backend
    with warnings.catch_warnings():
        # torch 2.13 flags torch.ao eager quantisation and quantized tensors as deprecated (to move to torchao);
        # they still work, and each call would print the same paragraphs
        warnings.filterwarnings("ignore", message=r"(?s).*(torch\.ao\.quantization is deprecated|quantized tensor "
                                r"creation functions|reduce_range will be deprecated)")
        return _quantize_copies(encoder, decoder, method, calibration, quantize_head, backend)


def _quantize_copies(encoder, decoder, method, calibration, quantize_head, backend):
    """``quantize_torch`` after its checks."""
    encoder, decoder = (copy.deepcopy(m).to("cpu").eval() for m in (encoder, decoder))
    heads = [decoder] if quantize_head else []
    if method == "torch_static":
        qconfig = torch.ao.quantization.get_default_qconfig(backend)

        def island(layer):
            wrapped = Int8Island(layer)
            wrapped.qconfig = qconfig
            return wrapped

        for module in [encoder] + heads:
            _swap(module, _static_target, island)
            torch.ao.quantization.prepare(module, inplace=True)
        with torch.no_grad():
            for features, frames in calibration:
                decoder(encoder_output=encoder(audio_signal=features.cpu(), length=frames.cpu())[0])
        for module in [encoder] + heads:
            torch.ao.quantization.convert(module, inplace=True)
    # both methods: RNN and Linear layers dynamically (the head has none)
    if any(type(m) is nn.RNN for m in encoder.modules()):
        logging.getLogger("nemo_asr").warning(
            "%s: plain RNN layers (rnn_type: rnn) stay float: torch's dynamic int8 covers LSTM and GRU only",
            method)
    torch.ao.quantization.quantize_dynamic(encoder, {nn.Linear, *RNN_TYPES}, dtype=torch.qint8, inplace=True)
    return encoder, decoder
