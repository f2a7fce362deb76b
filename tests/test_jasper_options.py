"""Jasper block options of NeMo's later QuartzNet/Citrinet configs: squeeze-excitation,
kernel_size_factor, stride_last, residual_mode stride_add, and the refusal of unknown keys."""
import pytest
import torch

import nemo_asr
from nemo_asr.parts.jasper import JasperConfigError, JasperEncoderNet, MaskedConv1d, SqueezeExcite


def block(filters=32, repeat=2, kernel=11, stride=1, dilation=1, residual=True, **extra):
    return dict(filters=filters, repeat=repeat, kernel=[kernel], stride=[stride], dilation=[dilation], dropout=0.0,
                residual=residual, separable=True, **extra)


def encoder(blocks, feat_in=16):
    return nemo_asr.JasperEncoder(jasper=blocks, activation="relu", feat_in=feat_in)


def block_convs(module, index):
    return [m for m in module.encoder[index].mconv if isinstance(m, MaskedConv1d)]


def features(batch=3, feat=16, frames=57, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, feat, frames, generator=gen), torch.tensor([57, 40, 23][:batch])


def test_se_layout_parameter_count_and_unchanged_layout_without_se():
    plain = encoder([block(), block(filters=48)])
    with_se = encoder([block(), block(filters=48, se=True, se_reduction_ratio=8)])
    # SE on block 1 only: Linear(48 -> 6) + Linear(6 -> 48), no biases, appended as the last mconv entry
    se_keys = sorted(set(with_se.state_dict()) - set(plain.state_dict()))
    n = len(plain.encoder[1].mconv)
    assert se_keys == [f"encoder.1.mconv.{n}.fc.0.weight", f"encoder.1.mconv.{n}.fc.2.weight"]
    assert with_se.state_dict()[se_keys[0]].shape == (6, 48) and with_se.state_dict()[se_keys[1]].shape == (48, 6)
    assert with_se.num_weights - plain.num_weights == 2 * 48 * 6
    # se: false and the SE keys' defaults build exactly the NeMo 0.x layout
    explicit = encoder([block(se=False, se_reduction_ratio=4, kernel_size_factor=1.0, stride_last=False),
                        block(filters=48, se_context_size=-1)])
    assert {k: v.shape for k, v in explicit.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    x, n = features()
    out, out_len = with_se(audio_signal=x, length=n)
    assert out.shape == (3, 48, 57) and torch.equal(out_len, n)


def test_squeeze_excite_matches_hand_computation_and_ignores_padding():
    torch.manual_seed(1)
    se = SqueezeExcite(8, reduction_ratio=4)
    x, lengths = torch.randn(2, 8, 10), torch.tensor([10, 6])
    out, out_len = se(x, lengths)
    assert torch.equal(out_len, lengths)
    w1, w2 = se.fc[0].weight, se.fc[2].weight
    for b, n in enumerate(lengths.tolist()):
        mean = x[b, :, :n].mean(dim=1)  # the utterance's valid frames only
        scale = torch.sigmoid(w2 @ torch.relu(w1 @ mean))
        assert torch.allclose(out[b, :, :n], x[b, :, :n] * scale[:, None], atol=1e-6)
        assert torch.equal(out[b, :, n:], torch.zeros_like(out[b, :, n:]))
    noisy = x.clone()
    noisy[1, :, 6:] = 1e3  # garbage in the padding changes nothing
    assert torch.equal(se(noisy, lengths)[0], out)


def test_se_changes_the_output_and_trains():
    torch.manual_seed(0)
    with_se = encoder([block(), block(se=True, se_reduction_ratio=4)])
    plain = encoder([block(), block()])
    plain.load_state_dict({k: v for k, v in with_se.state_dict().items() if k in plain.state_dict()})
    with_se.eval(), plain.eval()
    x, n = features()
    out_se, _ = with_se(audio_signal=x, length=n)
    out_plain, _ = plain(audio_signal=x, length=n)
    assert (out_se - out_plain).abs().max() > 1e-3
    with_se.train()
    out_se, _ = with_se(audio_signal=x, length=n)
    out_se.pow(2).mean().backward()
    se_module = with_se.encoder[1].mconv[-1]
    assert isinstance(se_module, SqueezeExcite)
    for param in se_module.parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0


def test_stride_last_moves_the_stride_and_lengths_stay_right():
    every = encoder([block(repeat=3, stride=2, residual=False)])
    last = encoder([block(repeat=3, stride=2, stride_last=True, residual_mode="stride_add")])
    # separable: each repeat is depthwise (strided) + pointwise conv
    assert [c.conv.stride[0] for c in block_convs(every, 0)] == [2, 1, 2, 1, 2, 1]
    assert [c.conv.stride[0] for c in block_convs(last, 0)] == [1, 1, 1, 1, 2, 1]
    assert every.total_stride == 8 and last.total_stride == 2
    res_conv = last.encoder[0].res[0][0]
    assert res_conv.conv.stride[0] == 2  # stride_add: the residual strides with the block
    x, n = features()
    for model, stride in ((every, 8), (last, 2)):
        out, out_len = model(audio_signal=x, length=n)
        assert torch.equal(out_len, model.encoded_lengths(n))
        assert torch.equal(out_len, (n - 1) // stride + 1)
        assert out.shape[-1] == int(out_len.max())


def test_kernel_size_factor_scales_to_odd_sizes_and_keeps_length():
    model = encoder([block(kernel=11, kernel_size_factor=0.5), block(kernel=33, kernel_size_factor=0.25),
                     block(kernel=5, kernel_size_factor=2)])
    depthwise = [block_convs(model, i)[0].conv for i in range(3)]
    assert [c.kernel_size[0] for c in depthwise] == [5, 9, 11]  # 5.5 -> 5; 8.25 -> 8 -> 9; 10 -> 11
    assert [c.padding[0] for c in depthwise] == [2, 4, 5]
    x, n = features()
    out, out_len = model(audio_signal=x, length=n)
    assert out.shape[-1] == 57 and torch.equal(out_len, n) and torch.equal(model.encoded_lengths(n), n)
    # without a factor, kernels stay exactly as NeMo 0.x configs give them (even ones too)
    assert block_convs(encoder([block(kernel=4)]), 0)[0].conv.kernel_size[0] == 4


def test_encoded_lengths_with_every_option_together():
    model = encoder([block(repeat=1, kernel=11, stride=2, residual=False),
                     block(repeat=2, kernel=13, stride=2, stride_last=True, residual_mode="stride_add", se=True,
                           kernel_size_factor=0.8),
                     block(filters=24, repeat=2, kernel=7, se=True, se_reduction_ratio=3)])
    model.eval()
    for lengths in (torch.tensor([57, 40, 23]), torch.tensor([57, 57, 1])):
        x = torch.randn(3, 16, 57)
        out, out_len = model(audio_signal=x, length=lengths)
        assert torch.equal(out_len, model.encoded_lengths(lengths))
        assert out.shape == (3, 24, int(out_len.max()))


@pytest.mark.parametrize("cfg,pattern", [
    (block(se_ratio=4), r"jasper block 1 has unknown key\(s\): se_ratio; a block accepts .*se_reduction_ratio"),
    (block(future_context=2), r"jasper block 1 has unknown key\(s\): future_context"),
    (block(se=True, se_context_size=128), r"jasper block 1: se_context_size=128 .*only global context"),
    (block(se=True, se_reduction_ratio=64), r"jasper block 1: se_reduction_ratio 64 is larger than .*32 filters"),
    (block(se_reduction_ratio=0), r"jasper block 1: se_reduction_ratio must be an integer >= 1"),
    (block(kernel_size_factor=0), r"jasper block 1: kernel_size_factor must be a number > 0"),
    (block(residual_mode="sum"), r"jasper block 1: residual_mode 'sum' is not one of add, max, stride_add"),
    (block(stride=2), r"jasper block 1: its main path strides 4x but its residual 1x .*stride_add"),
    (block(stride=2, residual_mode="stride_add"), r"block 1: its main path strides 4x but its residual 2x"),
])
def test_bad_block_options_name_the_block_and_the_key(cfg, pattern):
    from nemo_core.utils.cli import describe_error

    with pytest.raises(JasperConfigError, match=pattern) as info:
        JasperEncoderNet([block(), cfg], "relu", 16)
    assert isinstance(info.value, ValueError)
    assert not describe_error(info.value).startswith("unexpected")  # one plain line on the command line


def test_onnx_export_with_se_matches_torch(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from nemo_asr.export import EncoderDecoder, export_pipeline

    torch.manual_seed(0)
    preprocessor = nemo_asr.AudioToMelSpectrogramPreprocessor(features=16)
    enc = encoder([block(repeat=1, stride=2, residual=False, se=True, se_reduction_ratio=4),
                   block(se=True, se_reduction_ratio=4, stride_last=True)])
    dec = nemo_asr.JasperDecoderForCTC(feat_in=32, num_classes=5)
    path = export_pipeline(preprocessor, enc, dec, str(tmp_path / "se.onnx"), features_input=True)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x, n = torch.randn(2, 16, 73), torch.tensor([73, 41])
    log_probs, lengths = session.run(None, {"audio_signal": x.numpy(), "length": n.numpy()})
    with torch.no_grad():
        ref_probs, ref_lengths = EncoderDecoder(enc, dec)(x, n)
    assert lengths.tolist() == ref_lengths.tolist() == enc.encoded_lengths(n).tolist()
    for b, frames in enumerate(ref_lengths.tolist()):
        assert abs(torch.from_numpy(log_probs)[b, :frames] - ref_probs[b, :frames]).max() < 1e-4
