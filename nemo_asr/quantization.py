"""Post-training int8 quantisation of an exported pipeline with ONNX Runtime.

Static QDQ: weights int8 per output channel, activations uint8 calibrated
(min-max) on real utterances. Only the encoder's (and optionally the
decoder's) convolutions are quantised; feature extraction stays float32
because its log/normalisation steps are precision-sensitive.
"""
import os
import tempfile

import numpy as np


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
