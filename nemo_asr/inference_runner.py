"""One interface over PyTorch eager, TorchScript and ONNX Runtime for the
acoustic pipeline: ``runner(audio, lengths) -> (log_probs, encoded_lengths)``
with float32 (B, T) audio and int64 (B,) lengths, as torch tensors.

A file-based runner exposes ``metadata``: what ``nemo_asr.export`` stored in
the file (``{}`` for a file exported elsewhere), and ``probe()`` to check the
file's inputs and number of classes on a short silence."""
import contextlib
import json
import os

import numpy as np
import torch

from nemo_core.deployment import METADATA_FILE
from nemo_core.utils.cli import UserError, require

BACKENDS = ("pytorch", "torchscript", "onnxruntime")


class ModelFileError(UserError):
    """A model file for the torchscript/onnxruntime backends is missing or cannot be loaded; names it."""


class InferenceRunner:
    """``backend``: pytorch (an ``AcousticPipeline``), torchscript or onnxruntime (a file).

    ``precision``: fp32, or bf16 (CPU) / fp16 (CUDA) autocast for PyTorch backends.
    ONNX Runtime picks TensorRT/CUDA execution providers when present, else CPU;
    ``session_config`` adds ONNX Runtime session config entries, e.g.
    ``{"session.intra_op.allow_spinning": "0"}`` where other work shares the cores.
    """

    def __init__(self, backend, model=None, path=None, precision="fp32", device="cpu", threads=None,
                 session_config=None):
        if backend not in BACKENDS:
            raise ValueError(f"Unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
        if precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
        self.backend, self.precision, self.device = backend, precision, torch.device(device)
        self.path, self.metadata = path, {}
        if backend != "pytorch":
            kind = "ONNX" if backend == "onnxruntime" else "TorchScript"
            if path is None:
                raise ValueError(f"the {backend} backend needs path= an exported {kind} file")
            if not os.path.isfile(path):
                what = "is a folder" if os.path.isdir(path) else "does not exist"
                raise ModelFileError(f"{kind} model file {path} {what}; check --model_path, or leave it out to "
                                     f"export the model from --load_dir")
        if backend == "pytorch":
            if model is None:
                raise ValueError("the pytorch backend needs model=AcousticPipeline(...)")
            self.model = model.to(self.device).eval()
        elif backend == "torchscript":
            extra = {METADATA_FILE: ""}
            try:
                self.model = torch.jit.load(path, map_location=self.device, _extra_files=extra).eval()
            except (RuntimeError, ValueError) as err:
                raise ModelFileError(f"{path} is not a TorchScript file torch.jit.load can read "
                                     f"({_first_line(err)}); pass a file written by the torchscript export") from err
            try:
                self.metadata = json.loads(extra[METADATA_FILE]) if extra[METADATA_FILE] else {}
            except ValueError:  # not written by nemo_core.deployment: treated as a file without identity
                self.metadata = {}
        else:
            ort = require("onnxruntime", "deploy", "The onnxruntime backend")

            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            for key, value in (session_config or {}).items():
                options.add_session_config_entry(key, str(value))
            wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider"] if self.device.type == "cuda" else []
            providers = [p for p in wanted if p in ort.get_available_providers()] + ["CPUExecutionProvider"]
            try:
                self.session = ort.InferenceSession(path, options, providers=providers)
            except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception classes
                raise ModelFileError(f"{path} is not an ONNX model ONNX Runtime can load ({_first_line(err)}); "
                                     f"pass a file written by the ONNX export") from err
            self.providers = self.session.get_providers()
            self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def input_names(self):
        """Names of the graph's inputs (the ONNX graph's; a TorchScript forward's arguments)."""
        if self.backend == "onnxruntime":
            return [i.name for i in self.session.get_inputs()]
        if self.backend == "torchscript":
            return [a.name for a in self.model.forward.schema.arguments[1:]]
        return ["audio_signal", "length"]

    def probe(self, samples=8000):
        """``(input names, log-probs)`` on ``samples`` of silence; a ``ModelFileError`` if it cannot run."""
        names = self.input_names()
        try:
            log_probs, _ = self(torch.zeros(1, samples), torch.tensor([samples]))
        except Exception as err:  # noqa: BLE001 - any failure means the file is not an audio -> log-probs graph
            raise ModelFileError(f"Model file {self.path} does not run on audio (batch, samples) and lengths "
                                 f"(batch,) ({_first_line(err)}); was it exported with --features_input or from "
                                 f"another model?") from err
        return names, log_probs

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def __call__(self, audio, lengths):
        if self.backend == "onnxruntime":
            log_probs, encoded = self.session.run(None, {
                "audio_signal": np.ascontiguousarray(audio.cpu().numpy(), dtype=np.float32),
                "length": lengths.cpu().numpy().astype(np.int64)})
            return torch.from_numpy(log_probs), torch.from_numpy(encoded)
        with torch.inference_mode(), self._autocast():
            log_probs, encoded = self.model(audio.to(self.device), lengths.to(self.device))
        return log_probs.float().cpu(), encoded.cpu()


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
