"""The only owner of mixed precision: autocast, loss scaling, half weights.

Mapping of ``Optimization`` levels (torch.amp, not apex):

====== ================================================================
O0     float32 everywhere.
O1     float32 weights; ops under ``torch.autocast`` (fp16 on CUDA, bf16 on CPU).
O2     half weights except normalisation layers (kept float32) + autocast;
       the optimiser updates float32 *master* copies, copied back each step.
O3     everything in half precision (weights and activations), no autocast.
====== ================================================================

On CUDA with fp16, a ``GradScaler`` does dynamic loss scaling: a step with
inf/nan gradients is skipped and the scale backs off. bf16 needs no scaling.

On CPU, O1 (bf16 autocast) pays off only where the processor computes bf16 in
hardware (``cpu_has_native_bf16``); elsewhere oneDNN emulates it.
"""
import contextlib

import torch

from .enums import Optimization

_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(cpuinfo_path="/proc/cpuinfo"):
    """True when the CPU advertises bf16 arithmetic (AVX512-BF16 or AMX-BF16).

    Reads the Linux CPU flags; anywhere they cannot be read the answer is
    False, so callers fall back to float32.
    """
    try:
        with open(cpuinfo_path) as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return any(flag in flags for flag in _NATIVE_BF16_FLAGS)
    except OSError:
        pass
    return False


_NORM_TYPES = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm,
               torch.nn.GroupNorm, torch.nn.modules.instancenorm._InstanceNorm)


class Precision:
    def __init__(self, level, device):
        if not isinstance(level, Optimization):
            raise ValueError(f"optimization_level must be an Optimization, got {level!r}")
        self.level = level
        self.device = torch.device(device)
        self.half_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        self._autocast = level in (Optimization.mxprO1, Optimization.mxprO2)
        use_scaler = self.device.type == "cuda" and level != Optimization.mxprO0
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self._masters = []  # (model param, float32 master) pairs for O2

    @property
    def model_dtype(self):
        return torch.float32 if self.level in (Optimization.mxprO0, Optimization.mxprO1) else self.half_dtype

    def autocast(self):
        if not self._autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.half_dtype)

    def cast_inputs(self, batch):
        """Under O3 floating inputs must match the half weights."""
        if self.level != Optimization.mxprO3:
            return batch
        return [b.to(self.half_dtype) if torch.is_tensor(b) and b.is_floating_point() else b for b in batch]

    def prepare_modules(self, modules):
        """Cast module weights for O2/O3 (idempotent)."""
        if self.level == Optimization.mxprO2:
            for module in modules:
                for sub in module.modules():
                    if not isinstance(sub, _NORM_TYPES):
                        for p in sub.parameters(recurse=False):
                            p.data = p.data.to(self.half_dtype)
                        for name, b in sub.named_buffers(recurse=False):
                            if b.is_floating_point():
                                setattr(sub, name, b.to(self.half_dtype))
        elif self.level == Optimization.mxprO3:
            for module in modules:
                module.to(self.half_dtype)

    def optimizer_parameters(self, params):
        """What the optimiser should update: float32 masters for O2's half weights."""
        if self.level != Optimization.mxprO2:
            return list(params)
        self._masters = []
        result = []
        for p in params:
            if p.dtype == torch.float32:
                result.append(p)
            else:
                master = p.detach().float().clone().requires_grad_(True)
                self._masters.append((p, master))
                result.append(master)
        return result

    def backward(self, loss):
        self.scaler.scale(loss.float()).backward()

    def unscale_and_clip(self, optimizer, params, max_norm=None):
        """Move O2 grads to masters, unscale, clip; returns the total grad norm or None."""
        for p, master in self._masters:
            master.grad = None if p.grad is None else p.grad.float()
            p.grad = None
        if max_norm is None or max_norm <= 0:
            return None
        self.scaler.unscale_(optimizer)
        masters = {id(p): m for p, m in self._masters}
        grads_of = [masters.get(id(p), p) for p in params]
        return torch.nn.utils.clip_grad_norm_(grads_of, max_norm)

    def step(self, optimizer):
        """Optimiser step through the scaler; False when it was skipped (inf/nan)."""
        scale_before = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(optimizer)
        self.scaler.update()
        for p, master in self._masters:
            p.data.copy_(master.data)
        if scale_before is None:
            return True
        return self.scaler.get_scale() >= scale_before

    def refresh_masters(self):
        """Re-read masters from the model (after weights were loaded into it)."""
        for p, master in self._masters:
            master.data.copy_(p.data.float())

    def state_dict(self):
        return {
            "scaler": self.scaler.state_dict(),
            "masters": [m.detach().cpu() for _, m in self._masters],
        }

    def load_state_dict(self, state):
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        masters = state.get("masters") or []
        if len(masters) == len(self._masters):
            for (p, master), saved in zip(self._masters, masters):
                master.data.copy_(saved)
                p.data.copy_(saved)
        else:
            self.refresh_masters()
