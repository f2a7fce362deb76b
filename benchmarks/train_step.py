"""One QuartzNet training step, ours vs a plain PyTorch reference, side by side in one run.

For each model (the demo, 5x5, 15x5 configs), batch size and precision
(float32; bf16 autocast where the CPU has bf16 hardware) this times a
training step from ready log-mel features — encoder -> CTC head -> CTC loss
-> backward -> optimiser step; no feature extraction, augmentation or data
loading — for:

- ``ours``: ``nemo_asr.JasperEncoder`` + ``JasperDecoderForCTC`` as shipped
  (depthwise convolutions as channels-last 2-D convolutions on CPU, one
  padding mask per frame rate, cheap dropout masks);
- ``reference``: a plain PyTorch QuartzNet written here the way NVIDIA's
  DeepLearningExamples model is (``nn.Conv1d(groups=C)``, a ``masked_fill``
  before every convolution with a mask rebuilt each time, ``nn.Dropout``),
  with the same module tree, loaded with ours' weights;
- ``nemo``: NeMo's own QuartzNet when ``nemo_toolkit`` is installed
  (skipped with a message otherwise).

Steps alternate between the variants (ours, reference, ours, ...), so drift in
the shared machine's speed hits both alike. Both see the same batch:
log-mel-sized features whose durations are drawn uniformly from ``--seconds``
(default 1.2-4.0 s: the demo corpus's range; its mean is 2.3 s), padded to the
longest.
Reported: median step time, the speed-up, GFLOP/s (3x the forward FLOPs counted
with ``torch.utils.flop_counter`` — the same maths for both), that rate as a
fraction of this machine's float32 GEMM peak measured in the same run, and
the top operators of one profiled step with their share. Before timing, the
two models' losses and gradients are compared and the run stops unless they
agree within float tolerance (the formulations differ, the maths does not).

Prints a markdown table and writes JSON (``--out``).

    python benchmarks/train_step.py                          # all models, b16/b32
    python benchmarks/train_step.py --models demo --batch_sizes 16 --steps 3
"""
import argparse
import contextlib
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from ruamel.yaml import YAML
from torch import nn

import nemo_asr
import nemo_core
from nemo_core.optim import Novograd
from nemo_core.precision import cpu_has_native_bf16
from results_file import machine_info, write_results

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CONFIGS = {name: os.path.join(REPO, "examples", "asr", "configs", f"{file}.yaml")
           for name, file in (("demo", "quartznet_demo"), ("5x5", "quartznet5x5"), ("15x5", "quartznet15x5"))}
FEATURES, LABELS = 64, 28


# ---------------------------------------------------------------- the plain reference QuartzNet
class RefMaskedConv1d(nn.Module):
    """DeepLearningExamples' MaskedConv1d: masked_fill with a freshly built mask, then nn.Conv1d."""

    def __init__(self, cin, cout, kernel, stride=1, dilation=1, groups=1):
        super().__init__()
        padding = (dilation * kernel) // 2 - 1 if dilation > 1 else kernel // 2
        self.conv = nn.Conv1d(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups,
                              bias=False)

    def forward(self, x, lengths):
        mask = torch.arange(x.shape[2], device=x.device)[None, :] >= lengths[:, None]
        x = x.masked_fill(mask[:, None, :], 0.0)
        c = self.conv
        lengths = (lengths + 2 * c.padding[0] - c.dilation[0] * (c.kernel_size[0] - 1) - 1) // c.stride[0] + 1
        return c(x), lengths


class RefBlock(nn.Module):
    def __init__(self, cin, cfg):
        super().__init__()
        cout, k, s, d = cfg["filters"], cfg["kernel"][0], cfg["stride"][0], cfg["dilation"][0]
        layers, c = [], cin
        for i in range(cfg["repeat"]):
            if cfg.get("separable"):
                layers += [RefMaskedConv1d(c, c, k, s, d, groups=c), RefMaskedConv1d(c, cout, 1)]
            else:
                layers += [RefMaskedConv1d(c, cout, k, s, d)]
            layers.append(nn.BatchNorm1d(cout, eps=1e-3, momentum=0.1))
            if i < cfg["repeat"] - 1:
                layers += [nn.ReLU(), nn.Dropout(cfg["dropout"])]
            c = cout
        self.mconv = nn.ModuleList(layers)
        self.res = (nn.ModuleList([nn.ModuleList([RefMaskedConv1d(cin, cout, 1), nn.BatchNorm1d(cout, eps=1e-3)])])
                    if cfg["residual"] else None)
        self.mout = nn.Sequential(nn.ReLU(), nn.Dropout(cfg["dropout"]))

    def forward(self, x, lengths):
        out, out_lengths = x, lengths
        for layer in self.mconv:
            if isinstance(layer, RefMaskedConv1d):
                out, out_lengths = layer(out, out_lengths)
            else:
                out = layer(out)
        if self.res is not None:
            res, _ = self.res[0][0](x, lengths)
            out = out + self.res[0][1](res)
        return self.mout(out), out_lengths


class ReferenceQuartzNet(nn.Module):
    """Encoder + CTC head with our module tree (so our state dict loads), written the plain way."""

    def __init__(self, blocks, feat_in, num_classes):
        super().__init__()
        layers, c = [], feat_in
        for cfg in blocks:
            layers.append(RefBlock(c, cfg))
            c = cfg["filters"]
        self.encoder = nn.Sequential(*layers)
        self.decoder_layers = nn.Sequential(nn.Conv1d(c, num_classes + 1, 1, bias=True))

    def forward(self, x, lengths):
        for block in self.encoder:
            x, lengths = block(x, lengths)
        return F.log_softmax(self.decoder_layers(x).transpose(1, 2).float(), dim=-1), lengths


class Ours(nn.Module):
    """The shipped modules, as the training DAG calls them."""

    def __init__(self, blocks, feat_in, num_classes):
        super().__init__()
        self.enc = nemo_asr.JasperEncoder(jasper=blocks, activation="relu", feat_in=feat_in)
        self.dec = nemo_asr.JasperDecoderForCTC(feat_in=self.enc.out_channels, num_classes=num_classes)

    def forward(self, x, lengths):
        encoded, lengths = self.enc(audio_signal=x, length=lengths)
        return self.dec(encoder_output=encoded), lengths

    def reference_named_parameters(self):
        """``named_parameters`` under the reference model's names (without the ``enc.``/``dec.`` prefix)."""
        for name, param in self.named_parameters():
            yield name.split(".", 1)[1], param

    def reference_state_dict(self):
        state = {k[len("enc."):]: v for k, v in self.state_dict().items() if k.startswith("enc.")}
        state.update({k[len("dec."):]: v for k, v in self.state_dict().items() if k.startswith("dec.")})
        return state


def nemo_quartznet(blocks, feat_in, num_classes):
    """NeMo's own encoder + decoder (``nemo_toolkit``), or None with the reason."""
    try:
        from nemo.collections.asr.modules import ConvASRDecoder, ConvASREncoder
    except Exception as err:  # noqa: BLE001 - any import failure means "not available"
        return None, f"nemo_toolkit not importable ({type(err).__name__}: {err})"

    class Nemo(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = ConvASREncoder(jasper=[dict(b) for b in blocks], activation="relu", feat_in=feat_in)
            self.dec = ConvASRDecoder(feat_in=blocks[-1]["filters"], num_classes=num_classes)

        def forward(self, x, lengths):
            encoded, lengths = self.enc(audio_signal=x, length=lengths)
            return self.dec(encoder_output=encoded).float(), lengths

        reference_named_parameters = Ours.reference_named_parameters  # the same module tree and names

    return Nemo(), None


# ---------------------------------------------------------------- one step
def make_batch(batch_size, seconds=(1.2, 4.0), seed=0):
    """Features shaped like the preprocessor's (64 mels, 100 frames a second, padded to a multiple of 16), of
    durations uniform in ``seconds`` (default: the demo corpus's range, 1.15-4.06 s, mean 2.3 s), and CTC
    targets of ~8 characters a second."""
    g = torch.Generator().manual_seed(seed)
    low, high = seconds
    frames = (100 * (low + (high - low) * torch.rand(batch_size, generator=g))).long() + 1
    total = int(math.ceil(frames.max().item() / 16) * 16)
    x = torch.randn(batch_size, FEATURES, total, generator=g)
    x = x.masked_fill(torch.arange(total)[None, None, :] >= frames[:, None, None], 0.0)
    target_lengths = (frames // 12).clamp(min=1)
    targets = torch.randint(LABELS, (batch_size, int(target_lengths.max())), generator=g)
    return x, frames, targets, target_lengths


def step(model, optimizer, batch, dtype):
    x, frames, targets, target_lengths = batch
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
        log_probs, lengths = model(x, frames)
    loss = F.ctc_loss(log_probs.transpose(0, 1), targets, lengths, target_lengths, blank=LABELS,
                      reduction="mean", zero_infinity=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


@contextlib.contextmanager
def dropout_off(*models):
    dropouts = [m for model in models for m in model.modules() if isinstance(m, nn.Dropout)]
    saved = [m.p for m in dropouts]
    for m in dropouts:
        m.p = 0.0
    try:
        yield
    finally:
        for m, p in zip(dropouts, saved):
            m.p = p


def gradients_agree(ours, reference, batch):
    """Relative loss difference and largest relative gradient difference of two models with the same
    weights, in training mode with dropout off."""
    x, frames, targets, target_lengths = batch
    losses = []
    with dropout_off(ours, reference):
        for model in (ours, reference):
            model.train()
            model.zero_grad(set_to_none=True)
            log_probs, lengths = model(x, frames)
            loss = F.ctc_loss(log_probs.transpose(0, 1), targets, lengths, target_lengths, blank=LABELS,
                              zero_infinity=True)
            loss.backward()
            losses.append(loss.item())
    grads = dict(reference.named_parameters())
    worst = 0.0
    for name, param in ours.reference_named_parameters():
        expected = grads[name].grad
        worst = max(worst, ((param.grad - expected).abs().max() / expected.abs().max().clamp(min=1e-12)).item())
    return abs(losses[0] - losses[1]) / abs(losses[1]), worst


def count_flops(model, batch):
    """FLOPs of one training step: 3x the forward pass's, counted by ``torch.utils.flop_counter``.

    The backward pass computes the input and the weight gradients of each
    convolution, each costing what its forward did. (Counting the backward
    with ``FlopCounterMode`` itself overcounts grouped convolutions' weight
    gradients by the group count: a depthwise layer would count C times.)
    """
    from torch.utils.flop_counter import FlopCounterMode

    x, frames, _, _ = batch
    model.train()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x, frames)
    return 3 * counter.get_total_flops()


def top_ops(model, optimizer, batch, dtype, count=6):
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(model, optimizer, batch, dtype)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [{"op": e.key, "share": round(e.self_cpu_time_total / total, 3)} for e in events[:count]]


def gemm_peak(dtype=torch.float32, size=2048, repeats=5):
    """GFLOP/s of a square matmul on this machine now (best of ``repeats``)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * size ** 3 / best / 1e9


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(name, blocks, batch_size, dtype, steps, warmup, profile_ops):
    torch.manual_seed(0)
    ours = Ours(blocks, FEATURES, LABELS)
    reference = ReferenceQuartzNet(blocks, FEATURES, LABELS)
    reference.load_state_dict(ours.reference_state_dict())
    batch = make_batch(batch_size)
    loss_delta, grad_delta = gradients_agree(ours, reference, batch)
    if loss_delta > 1e-4 or grad_delta > 1e-3:
        raise RuntimeError(f"{name}: the reference is not the same model (loss differs by {loss_delta:.2g}, "
                           f"gradients by {grad_delta:.2g}); the comparison would be meaningless")
    variants = {"ours": ours, "reference": reference}
    nemo, why_not = nemo_quartznet(blocks, FEATURES, LABELS)
    if nemo is not None:  # NeMo keeps the NGC parameter names too: same weights, and checked like ours
        nemo.load_state_dict(ours.state_dict())
        nemo_loss_delta, nemo_grad_delta = gradients_agree(nemo, reference, batch)
        if nemo_loss_delta > 1e-4 or nemo_grad_delta > 1e-3:
            raise RuntimeError(f"{name}: NeMo's QuartzNet is not the same model (loss differs by "
                               f"{nemo_loss_delta:.2g}, gradients by {nemo_grad_delta:.2g})")
        variants["nemo"] = nemo
    optimizers = {k: Novograd(m.parameters(), lr=1e-3, betas=(0.8, 0.5)) for k, m in variants.items()}
    times = {k: [] for k in variants}
    for i in range(warmup + steps):
        for key, model in variants.items():
            model.train()
            elapsed = _timed(lambda: step(model, optimizers[key], batch, dtype))
            if i >= warmup:
                times[key].append(elapsed)
    flops = count_flops(reference, batch)
    row = {"model": name, "batch": batch_size, "dtype": dtype, "frames_max": batch[0].shape[-1],
           "loss_rel_diff": loss_delta, "grad_rel_diff_max": grad_delta, "flops_per_step": flops,
           "nemo": why_not or "measured"}
    for key, values in times.items():
        row[f"{key}_s"] = statistics.median(values)
        row[f"{key}_gflops"] = flops / row[f"{key}_s"] / 1e9
    row["speedup_vs_reference"] = row["reference_s"] / row["ours_s"]
    if nemo is not None:
        row["speedup_vs_nemo"] = row["nemo_s"] / row["ours_s"]
        row["nemo_loss_rel_diff"], row["nemo_grad_rel_diff_max"] = nemo_loss_delta, nemo_grad_delta
    if profile_ops:
        row["top_ops_ours"] = top_ops(ours, optimizers["ours"], batch, dtype)
        row["top_ops_reference"] = top_ops(reference, optimizers["reference"], batch, dtype)
    return row


def installed_version(distribution):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def load_blocks(path):
    with open(path) as handle:
        return YAML(typ="safe").load(handle)["JasperEncoder"]["jasper"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["demo", "5x5", "15x5"], choices=sorted(CONFIGS))
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[16, 32])
    parser.add_argument("--dtypes", nargs="+", default=None, choices=["fp32", "bf16"],
                        help="default: fp32, plus bf16 where the CPU has bf16 hardware")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no_profile", action="store_true", help="skip the per-op profile")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "train_step.json"))
    args = parser.parse_args(argv)
    dtypes = args.dtypes or (["fp32", "bf16"] if cpu_has_native_bf16() else ["fp32"])
    nemo_core.NeuralModuleFactory(placement=nemo_core.DeviceType.CPU)  # the modules on the CPU, like the batches
    peak = {"fp32": gemm_peak()}
    if "bf16" in dtypes:
        peak["bf16"] = gemm_peak(torch.bfloat16)
    rows = []
    for name in args.models:
        blocks = load_blocks(CONFIGS[name])
        for batch_size in args.batch_sizes:
            for dtype in dtypes:
                row = measure(name, blocks, batch_size, dtype, args.steps, args.warmup, not args.no_profile)
                row["ours_peak_fraction"] = row["ours_gflops"] / peak[dtype]
                row["reference_peak_fraction"] = row["reference_gflops"] / peak[dtype]
                rows.append(row)
                print(f"{name} b{batch_size} {dtype}: ours {row['ours_s']:.3f} s, reference "
                      f"{row['reference_s']:.3f} s, x{row['speedup_vs_reference']:.2f}"
                      + (f"; NeMo {row['nemo_s']:.3f} s, x{row['speedup_vs_nemo']:.2f}" if "nemo_s" in row else ""),
                      file=sys.stderr, flush=True)
    result = {"machine": machine_info(), "gemm_peak_gflops": peak, "steps": args.steps,
              "nemo_toolkit": installed_version("nemo_toolkit"), "rows": rows}
    write_results(args.out, result)
    print(table(result))
    return result


def table(result):
    lines = [f"GEMM peak (float32 2048^2 matmul): {result['gemm_peak_gflops']['fp32']:.0f} GFLOP/s", "",
             "| model | batch | dtype | ours s/step | reference s/step | speed-up | ours GFLOP/s | % of GEMM peak "
             "(ours / ref) | NeMo |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        nemo = f"x{r['speedup_vs_nemo']:.2f}" if "speedup_vs_nemo" in r else "not installed"
        lines.append(f"| {r['model']} | {r['batch']} | {r['dtype']} | {r['ours_s']:.3f} | {r['reference_s']:.3f} | "
                     f"x{r['speedup_vs_reference']:.2f} | {r['ours_gflops']:.1f} | "
                     f"{100 * r['ours_peak_fraction']:.0f} / {100 * r['reference_peak_fraction']:.0f} | {nemo} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
