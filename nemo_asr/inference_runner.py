"""One interface over PyTorch eager, TorchScript and ONNX Runtime for the
acoustic pipeline: ``runner(audio, lengths) -> (log_probs, encoded_lengths)``
with float32 (B, T) audio and int64 (B,) lengths, as torch tensors."""
import contextlib

import numpy as np
import torch

BACKENDS = ("pytorch", "torchscript", "onnxruntime")


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
        if backend == "pytorch":
            if model is None:
                raise ValueError("the pytorch backend needs model=AcousticPipeline(...)")
            self.model = model.to(self.device).eval()
        elif backend == "torchscript":
            self.model = torch.jit.load(path, map_location=self.device).eval()
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            for key, value in (session_config or {}).items():
                options.add_session_config_entry(key, str(value))
            wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider"] if self.device.type == "cuda" else []
            providers = [p for p in wanted if p in ort.get_available_providers()] + ["CPUExecutionProvider"]
            self.session = ort.InferenceSession(path, options, providers=providers)
            self.providers = self.session.get_providers()

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
