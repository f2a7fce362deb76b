"""The only owner of mixed precision: autocast, loss scaling, half weights.

Mapping of ``Optimization`` levels (torch.amp, not apex):

====== ================================================================
O0     float32 everywhere.
O1     float32 weights; ops under ``torch.autocast`` (fp16 on CUDA, bf16 on CPU
       unless fp16 is asked for: ``amp_dtype``).
O2     half weights except normalisation layers (kept float32) + autocast;
       the optimiser updates float32 *master* copies, copied back each step.
O3     everything in half precision (weights and activations), no autocast,
       no loss scaling (apex's O3 default, loss_scale 1.0).
====== ================================================================

With fp16 at O1/O2 -- on CUDA, and on CPU when ``amp_dtype=torch.float16`` is
asked for, so every machine can run exactly what a GPU runs -- a
``torch.amp.GradScaler`` does dynamic loss scaling: the loss is multiplied by
the scale before backward, gradients are divided by it before the update, the
scale grows by 2x after ``growth_interval`` clean steps and halves on a step
with inf/nan gradients. bf16 needs no scaling.

The non-finite guard's decision lives here too (``step``): at every level, a
step whose loss or gradients are not finite -- on any rank -- updates nothing.

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

_DTYPE_NAMES = {"float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
                "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_amp_dtype(amp_dtype, device):
    """The half dtype for ``device``: fp16 on CUDA and bf16 on CPU unless ``amp_dtype`` says otherwise."""
    if amp_dtype is None or amp_dtype == "auto":
        return torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16
    if isinstance(amp_dtype, str):
        if amp_dtype.lower() not in _DTYPE_NAMES:
            raise ValueError(f"amp_dtype must be float16 or bfloat16 (or None for the device default), got {amp_dtype!r}")
        return _DTYPE_NAMES[amp_dtype.lower()]
    if amp_dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"amp_dtype must be torch.float16 or torch.bfloat16, got {amp_dtype!r}")
    return amp_dtype


def total_norm(grads, device):
    """The L2 norm of all ``grads`` together, accumulated in float32 (half gradients would overflow)."""
    if not grads:
        return torch.zeros((), device=device)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0, dtype=torch.float32)))


class StepOutcome:
    """What ``Precision.step`` did: ``taken`` (False: skipped), the gradient norm, and why."""

    __slots__ = ("taken", "grad_norm", "loss_finite", "reason")

    def __init__(self, taken, grad_norm, loss_finite, reason=""):
        self.taken, self.grad_norm, self.loss_finite, self.reason = taken, grad_norm, loss_finite, reason


class Precision:
    def __init__(self, level, device, amp_dtype=None, init_scale=2.0 ** 16, growth_interval=2000):
        if not isinstance(level, Optimization):
            raise ValueError(f"optimization_level must be an Optimization, got {level!r}")
        self.level = level
        self.device = torch.device(device)
        self.half_dtype = resolve_amp_dtype(amp_dtype, self.device)
        self._autocast = level in (Optimization.mxprO1, Optimization.mxprO2)
        use_scaler = self.half_dtype == torch.float16 and level in (Optimization.mxprO1, Optimization.mxprO2)
        self.scaler = torch.amp.GradScaler(self.device.type, init_scale=init_scale,
                                           growth_interval=growth_interval, enabled=use_scaler)
        self._masters = []  # (model param, float32 master) pairs for O2

    @property
    def model_dtype(self):
        return torch.float32 if self.level in (Optimization.mxprO0, Optimization.mxprO1) else self.half_dtype

    @property
    def loss_scale(self):
        """The current dynamic loss scale (None without loss scaling)."""
        return self.scaler.get_scale() if self.scaler.is_enabled() else None

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

    def step(self, optimizer, params, loss_finite=True, max_norm=None, agree=None):
        """Finish one optimiser step: the non-finite guard's decision, clipping, the update.

        ``params`` are the model's trainable weights, ``loss_finite`` a bool
        (tensor) for the loss of this step. O2's gradients move to the float32
        masters, the loss scale is divided out, and the total gradient norm is
        computed once (float32; reused for clipping). The step is skipped when
        the loss or the norm is not finite; ``agree(flags) -> flags`` makes every
        rank take the same decision (the train loop passes an all-reduce of
        ``[loss bad, gradients bad]``). ``StepOutcome.loss_finite`` is the agreed
        flag (False when any rank's loss was not finite); ``reason`` is this
        rank's view: "loss", "gradients" or "another rank".
        A skipped step changes no weight and no optimiser state; with loss
        scaling the scale backs off. Returns a ``StepOutcome``.
        """
        self._grads_to_masters()
        if self.scaler.is_enabled():
            self.scaler.unscale_(optimizer)
        masters = {id(p): m for p, m in self._masters}
        grads = [g for g in (masters.get(id(p), p).grad for p in params) if g is not None]
        norm = total_norm(grads, self.device)
        local = torch.stack([~torch.as_tensor(loss_finite, device=norm.device).reshape(()), ~torch.isfinite(norm)])
        agreed = agree(local) if agree is not None else local  # [any rank's loss bad, any rank's gradients bad]
        loss_bad, grads_bad = agreed.tolist()
        if loss_bad or grads_bad:
            local_loss_bad, local_grads_bad = local.tolist()
            self._back_off(grads_finite=not local_grads_bad)
            reason = "loss" if local_loss_bad else ("gradients" if local_grads_bad else "another rank")
            return StepOutcome(False, norm, not loss_bad, reason)
        if max_norm is not None and max_norm > 0:
            torch.nn.utils.clip_grads_with_norm_(grads, max_norm, norm)
        self.scaler.step(optimizer)
        self.scaler.update()
        for p, master in self._masters:
            p.data.copy_(master.data)
        return StepOutcome(True, norm, True)

    def _grads_to_masters(self):
        for p, master in self._masters:
            master.grad = None if p.grad is None else p.grad.float()
            p.grad = None

    def _back_off(self, grads_finite):
        """Lower the loss scale after a skipped step (the scaler's own rule when it saw the inf)."""
        if not self.scaler.is_enabled():
            return
        if not grads_finite:
            self.scaler.update()  # found inf in unscale_: backs off, resets the growth tracker
        else:  # skipped for the loss or another rank's sake: back off all the same
            self.scaler.update(new_scale=self.scaler.get_scale() * self.scaler.get_backoff_factor())
            # update(new_scale=...) keeps the count of clean steps; an overflow resets it, so do that here too
            self.scaler.load_state_dict({**self.scaler.state_dict(), "_growth_tracker": 0})

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
