"""The CPU training fast paths of parts/jasper.py equal the plain formulation.

- depthwise convolutions run as channels-last 2-D convolutions
  (``MaskedConv1d(impl="auto")``) give ``nn.Conv1d``'s outputs and gradients
  within float rounding — plain, dilated (odd and even lengths), strided — in
  float32, bfloat16 and under CPU autocast;
- a whole encoder built with ``conv_impl="auto"`` equals one built with
  ``"conv1d"`` (same weights), forward and backward, and still ignores padding;
- the cheap dropout keeps ``1 - p`` of the elements, preserves the
  expectation, is repeatable under a seed, and is ``nn.Dropout`` in eval mode.
"""
import math

import pytest
import torch

import nemo_asr
from nemo_asr.parts.jasper import (
    Dropout, Frames, MaskedConv1d, cheap_keep_mask, fold_batch_norms, get_same_padding, run_blocks,
)

CASES = [  # (channels, kernel, stride, dilation, frames)
    (24, 13, 1, 1, 57),
    (24, 29, 1, 2, 57),  # dilated, odd length: phases of unequal size
    (24, 7, 1, 3, 64),
    (16, 11, 2, 1, 63),  # strided (QuartzNet's first block)
    (8, 87, 1, 1, 120),  # QuartzNet 15x5's widest kernel
]
TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.bfloat16: dict(rtol=2e-2, atol=2e-2)}


def conv_pair(channels, kernel, stride, dilation):
    padding = get_same_padding(kernel, stride, dilation)
    fast = MaskedConv1d(channels, channels, kernel, stride=stride, padding=padding, dilation=dilation,
                        groups=channels, impl="auto")
    plain = MaskedConv1d(channels, channels, kernel, stride=stride, padding=padding, dilation=dilation,
                         groups=channels, impl="conv1d")
    plain.load_state_dict(fast.state_dict())
    assert fast.channels_last_on_cpu and not plain.channels_last_on_cpu
    return fast, plain


def forward_backward(module, x, lengths, autocast=False):
    x = x.detach().clone().requires_grad_()
    module.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out, out_lengths = module(x, lengths)
    (out.float() * torch.linspace(-1, 1, out.shape[-1])).sum().backward()  # a gradient that varies in time
    return out.float(), out_lengths, x.grad.float(), module.conv.weight.grad.float()


@pytest.mark.parametrize("case", CASES, ids=lambda c: "C{}k{}s{}d{}T{}".format(*c))
@pytest.mark.parametrize("mode", ["fp32", "bf16", "autocast"])
def test_channels_last_depthwise_equals_conv1d(case, mode):
    channels, kernel, stride, dilation, frames = case
    torch.manual_seed(0)
    fast, plain = conv_pair(channels, kernel, stride, dilation)
    dtype = torch.bfloat16 if mode == "bf16" else torch.float32
    fast.to(dtype), plain.to(dtype)
    x = torch.randn(3, channels, frames, dtype=dtype)
    lengths = torch.tensor([frames, frames - 9, frames // 2])
    got = forward_backward(fast, x, lengths, autocast=mode == "autocast")
    want = forward_backward(plain, x, lengths, autocast=mode == "autocast")
    tol = TOLERANCE[torch.bfloat16 if mode != "fp32" else torch.float32]
    assert got[0].shape == want[0].shape
    assert torch.equal(got[1], want[1])
    for name, a, b in zip(("output", "input grad", "weight grad"), (got[0], got[2], got[3]), (want[0], want[2], want[3])):
        scale = b.abs().max().clamp(min=1.0)
        assert torch.allclose(a / scale, b / scale, **tol), f"{name}: max diff {(a - b).abs().max():.3g}"


def test_fast_path_is_not_used_in_onnx_tracing_or_for_non_depthwise():
    fast, _ = conv_pair(8, 5, 1, 1)
    pointwise = MaskedConv1d(8, 16, 1)
    assert not pointwise.channels_last_on_cpu  # 1x1 and dense convolutions stay nn.Conv1d


    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = fast

        def forward(self, x, lengths):
            return self.conv(x, lengths)[0]

    with pytest.warns(DeprecationWarning):
        traced = torch.jit.trace(Wrapped(), (torch.randn(1, 8, 10), torch.tensor([10])))
    graph = str(traced.inlined_graph)
    assert "aten::_convolution" in graph and "aten::conv2d" not in graph and "channels_last" not in graph


def encoder_pair(**block):
    cfg = dict(filters=32, repeat=2, kernel=[15], stride=[1], dilation=[1], dropout=0.0, residual=True,
               separable=True, **block)
    blocks = [dict(filters=24, repeat=1, kernel=[11], stride=[2], dilation=[1], dropout=0.0, residual=False,
                   separable=True), cfg, dict(cfg, dilation=[2], residual=False, kernel=[9])]
    torch.manual_seed(0)
    fast = nemo_asr.JasperEncoder(jasper=blocks, activation="relu", feat_in=16, conv_impl="auto")
    plain = nemo_asr.JasperEncoder(jasper=blocks, activation="relu", feat_in=16, conv_impl="conv1d")
    plain.load_state_dict(fast.state_dict())
    return fast, plain


@pytest.mark.parametrize("block", [{}, {"se": True, "se_reduction_ratio": 4}], ids=["plain", "se"])
def test_encoder_with_fast_paths_equals_plain_encoder_forward_and_backward(block):
    fast, plain = encoder_pair(**block)
    x, lengths = torch.randn(3, 16, 80), torch.tensor([80, 61, 33])
    results = []
    for encoder in (fast, plain):
        encoder.train()
        inputs = x.clone().requires_grad_()
        out, out_len = encoder(audio_signal=inputs, length=lengths)
        (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
        results.append((out, out_len, inputs.grad, {n: p.grad for n, p in encoder.named_parameters()}))
    (a, a_len, a_gx, a_g), (b, b_len, b_gx, b_g) = results
    assert torch.equal(a_len, b_len)
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-5) and torch.allclose(a_gx, b_gx, rtol=1e-4, atol=1e-5)
    for name in b_g:
        assert torch.allclose(a_g[name], b_g[name], rtol=1e-4, atol=1e-4), name
    assert torch.isfinite(a).all()
    for i, n in enumerate(a_len.tolist()):  # padded frames of the output stay as the plain encoder leaves them
        assert torch.allclose(a[i, :, n:], b[i, :, n:], atol=1e-5)


def test_frames_builds_each_mask_once_and_only_for_length_changes():
    fast, _ = encoder_pair()
    calls = []
    original = Frames.mask

    def counting(self, x):
        before = len(self._masks)
        mask = original(self, x)
        calls.append(len(self._masks) > before)
        return mask

    Frames.mask = counting
    try:
        fast(audio_signal=torch.randn(2, 16, 40), length=torch.tensor([40, 25]))
    finally:
        Frames.mask = original
    built = sum(calls)
    assert built == 2, "one mask at the input frame rate, one after the stride-2 block"
    assert len(calls) > 10  # every masked conv asked for one


@pytest.mark.parametrize("p", [0.05, 0.2, 0.5])
def test_cheap_dropout_keeps_one_minus_p_and_preserves_the_mean(p):
    torch.manual_seed(0)
    x = torch.ones(2_000_000)
    mask = cheap_keep_mask(x, p)
    q = round(p * 32768) / 32768
    assert abs(q - p) <= 2 ** -16
    kept = (mask > 0).double().mean().item()
    sigma = math.sqrt(q * (1 - q) / x.numel())
    assert abs(kept - (1 - q)) < 5 * sigma
    assert torch.allclose(mask[mask > 0], torch.full((), 1 / (1 - q)))
    assert abs(mask.double().mean().item() - 1.0) < 5 * sigma / (1 - q)
    # neighbours (drawn from the same 63-bit word) are independent: P(both kept) = (1 - q)^2
    pairs = (mask[0::2] > 0) & (mask[1::2] > 0)
    assert abs(pairs.double().mean().item() - (1 - q) ** 2) < 5 * math.sqrt(2) * sigma


def test_dropout_module_is_repeatable_identity_in_eval_and_keeps_state_dict():
    layer = Dropout(p=0.3)
    x = torch.randn(4, 8, 50, requires_grad=True)
    torch.manual_seed(3)
    a = layer(x)
    torch.manual_seed(3)
    b = layer(x)
    assert torch.equal(a, b) and not torch.equal(a, x)
    a.sum().backward()
    assert torch.allclose(x.grad, a.detach() / x.detach())  # the gradient is the scaled keep mask
    layer.eval()
    assert layer(x) is x or torch.equal(layer(x), x)
    assert layer.state_dict() == {} and isinstance(layer, torch.nn.Dropout)
    assert torch.equal(Dropout(p=0.0)(x), x)


def test_folding_batch_norms_keeps_eval_outputs_including_padding():
    fast, _ = encoder_pair()
    for module in fast.modules():  # non-trivial statistics and affine parameters
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-1, 1), module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5), module.bias.data.uniform_(-0.5, 0.5)
    fast.eval()
    folded = fold_batch_norms(fast.encoder)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in fast.modules())  # the original is untouched
    x, lengths = torch.randn(3, 16, 80), torch.tensor([80, 61, 33])
    with torch.no_grad():
        want, want_len = fast(audio_signal=x, length=lengths)
        got, got_len = run_blocks(folded, x, lengths)
    assert torch.equal(got_len, want_len)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kernel,padding", [(3, 0), (3, 4), (5, 2), (5, 4)])
def test_dilated_convolutions_with_any_padding_equal_conv1d(kernel, padding):
    torch.manual_seed(0)
    fast = MaskedConv1d(8, 8, kernel, padding=padding, dilation=2, groups=8, impl="auto")
    plain = MaskedConv1d(8, 8, kernel, padding=padding, dilation=2, groups=8, impl="conv1d")
    plain.load_state_dict(fast.state_dict())
    x, lengths = torch.randn(2, 8, 57), torch.tensor([57, 40])
    (a, a_len), (b, b_len) = fast(x, lengths), plain(x, lengths)
    assert a.shape == b.shape and torch.equal(a_len, b_len) and torch.allclose(a, b, atol=1e-5)


def test_non_finite_values_in_padding_never_reach_valid_frames():
    fast, _ = encoder_pair()
    fast.train()
    x, lengths = torch.randn(2, 16, 40), torch.tensor([40, 25])
    x[1, :, 25:] = float("inf")
    x[1, 0, 30] = float("nan")
    out, _ = fast(audio_signal=x, length=lengths)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("p", [0.99999, 1e-6])
def test_dropout_probabilities_15_bits_cannot_hold_use_torch_dropout(p):
    layer = Dropout(p=p)
    out = layer(torch.ones(1000))
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="2\\*\\*-16"):
        cheap_keep_mask(torch.ones(10), p)
