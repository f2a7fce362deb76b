"""Jasper / QuartzNet building blocks as plain torch modules.

The module tree (and so every state_dict key) follows NeMo 0.x exactly, so
NGC checkpoints load unchanged: ``encoder.{block}.mconv.{i}`` holds, per
repeat, [conv(s), norm, activation, dropout] (the last repeat without
activation/dropout, which sit in ``mout`` after the residual sum), and
``encoder.{block}.res.{j}`` a 1x1 conv + norm per residual input.

Block options of NeMo's later QuartzNet/Citrinet configs:

- ``se`` (``se_reduction_ratio``, default 8): squeeze-and-excitation on the
  block's last conv output, before the residual sum. It is the last entry of
  ``mconv`` (keys ``mconv.{n}.fc.0.weight``, ``mconv.{n}.fc.2.weight``, as in
  NeMo 1.x); blocks without SE keep the NeMo 0.x layout. The context is global
  (a masked mean over each utterance's valid frames); ``se_context_size`` /
  ``se_context_window`` may only be -1 (global), and ``se_interpolation_mode``
  is accepted for config compatibility but has no effect with global context
  (as in NeMo).
- ``kernel_size_factor``: kernel sizes are ``max(int(kernel * factor), 1)``,
  made odd by adding one when even (a factor of 1 leaves kernels as given).
- ``stride_last``: only the last repeat's conv strides (one stride ``S`` per
  block instead of ``S`` per repeat).
- ``residual_mode: stride_add``: the residual 1x1 conv strides like the block,
  so a strided block can still add its input.
"""
import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .masks import lengths_mask

ACTIVATIONS = {
    "relu": nn.ReLU,
    # Jasper's clipped ReLU: min(max(x, 0), 20)
    "hardtanh": lambda: nn.Hardtanh(0.0, 20.0),
    "selu": nn.SELU,
    "swish": nn.SiLU,
}
NORMALIZATIONS = ("batch", "layer", "instance", "group")
INIT_MODES = ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal")
RESIDUAL_MODES = ("add", "max", "stride_add")


class JasperConfigError(ValueError):
    """A ``jasper`` block list cannot be built; the message names the block index and the key."""

    user_error = True  # one line on the command line (nemo_core.utils.cli)


def compute_kernel_size(kernel_size, factor):
    """``kernel_size`` scaled by ``factor``: at least 1, and odd (even sizes grow by one)."""
    size = max(int(kernel_size * float(factor)), 1)
    return size + 1 if size % 2 == 0 else size


def get_same_padding(kernel_size, stride, dilation):
    if stride > 1 and dilation > 1:
        raise ValueError("Only stride OR dilation may be greater than 1")
    if dilation > 1:
        return (dilation * kernel_size) // 2 - 1
    return kernel_size // 2


def init_weights(module, mode="xavier_uniform"):
    """NeMo's initialisation: convs by ``mode``, norms to identity."""
    if isinstance(module, (nn.Conv1d, nn.Linear)):
        if mode == "xavier_uniform":
            nn.init.xavier_uniform_(module.weight, gain=1.0)
        elif mode == "xavier_normal":
            nn.init.xavier_normal_(module.weight, gain=1.0)
        elif mode == "kaiming_uniform":
            nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")
        elif mode == "kaiming_normal":
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        else:
            raise ValueError(f"Unknown init_mode {mode!r}; valid: {', '.join(INIT_MODES)}")
    elif isinstance(module, nn.BatchNorm1d):
        if module.track_running_stats:
            module.running_mean.zero_()
            module.running_var.fill_(1)
            module.num_batches_tracked.zero_()
        if module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


CONV_IMPLS = ("auto", "conv1d")


class Frames:
    """The valid-frame counts of a (B, C, T) activation and its padding mask, built once.

    Every layer that keeps the frame count (a stride-1 "same" convolution, a
    norm, squeeze-excitation, a residual 1x1 conv) shares one ``Frames`` and so
    one mask per forward pass; only a convolution that changes the length
    makes a new one. Layers zero padding by multiplying with ``mask(x)``;
    ``run_blocks`` first ``clean``s the encoder's input with ``masked_fill``, so
    NaN or inf in the input's padding cannot reach valid frames or BatchNorm
    statistics (inside the encoder, padded frames only ever hold finite
    values computed from zeros and valid frames).
    """

    __slots__ = ("lengths", "_masks")

    def __init__(self, lengths):
        self.lengths = lengths
        self._masks = {}

    @classmethod
    def of(cls, lengths):
        return lengths if isinstance(lengths, cls) else cls(lengths)

    def padding(self, x):
        """(B, 1, T) bool, True on padded frames of ``x``."""
        key = (x.shape[-1], x.device)
        padding = self._masks.get(key)
        if padding is None:
            padding = lengths_mask(self.lengths.to(x.device), x.shape[-1])[:, None, :]
            self._masks[key] = padding
        return padding

    def mask(self, x):
        """(B, 1, T) in ``x``'s dtype: 1 on valid frames, 0 on padding."""
        key = (x.shape[-1], x.device, x.dtype)
        mask = self._masks.get(key)
        if mask is None:
            mask = (~self.padding(x)).to(x.dtype)
            self._masks[key] = mask
        return mask

    def apply(self, x):
        """``x`` with finite padded frames zeroed, by multiplication (10 % less step time than
        ``masked_fill`` with its backward, measured on the demo model)."""
        return x * self.mask(x)

    def clean(self, x):
        """``x`` with padded frames set to zero whatever they held (NaN and inf too)."""
        return x.masked_fill(self.padding(x), 0.0)


def keeps_length(conv):
    """Whether ``conv`` (an ``nn.Conv1d``) returns as many frames as it is given ("same" padding, stride 1)."""
    (kernel,), (stride,), (padding,), (dilation,) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    return stride == 1 and 2 * padding == dilation * (kernel - 1)


def _exporting():
    return torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or torch.jit.is_scripting()


class MaskedConv1d(nn.Module):
    """Conv1d that zeroes padded frames first, and returns the new lengths.

    ``lengths`` may be a LongTensor or a ``Frames`` (whose cached mask is then
    reused); the result has the same kind.

    With ``heads`` (depthwise only) one kernel of ``heads`` channels is shared
    across channel groups.

    ``impl``: how a depthwise convolution (groups = channels) runs. ``"auto"``
    (default) runs it on CPU tensors as a 2-D convolution over a channels-last
    ``(B, C, 1, T)`` view — the same weights and outputs (within float
    rounding) as ``nn.Conv1d``, 2.4-6x faster on CPU because oneDNN's
    depthwise kernels vectorise over channels — and as ``nn.Conv1d`` on GPU
    (cuDNN), in ONNX export and tracing. ``"conv1d"`` always uses ``nn.Conv1d``.
    Non-depthwise convolutions always run as ``nn.Conv1d`` (it measured as fast
    or faster for them). The parameters are ``conv.weight`` (``Conv1d``'s
    shape) either way, so NGC checkpoints load unchanged.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, heads=-1, bias=False, use_mask=True, impl="auto"):
        super().__init__()
        if not (heads == -1 or groups == in_channels):
            raise ValueError("heads is only supported for depthwise convolutions")
        if impl not in CONV_IMPLS:
            raise ValueError(f"conv_impl must be one of {', '.join(CONV_IMPLS)}; got {impl!r}")
        self.real_out_channels = out_channels
        if heads != -1:
            in_channels = out_channels = groups = heads
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                              dilation=dilation, groups=groups, bias=bias)
        self.use_mask = use_mask
        self.heads = heads
        self.keeps_length = keeps_length(self.conv)
        self.channels_last_on_cpu = impl == "auto" and heads == -1 and groups == in_channels > 1

    def get_seq_len(self, lengths):
        conv = self.conv
        return torch.div(lengths + 2 * conv.padding[0] - conv.dilation[0] * (conv.kernel_size[0] - 1) - 1,
                         conv.stride[0], rounding_mode="floor") + 1

    def forward(self, x, lengths):
        frames = Frames.of(lengths)
        if self.use_mask:
            x = frames.apply(x)
            if not self.keeps_length:
                frames = Frames(self.get_seq_len(frames.lengths))
        out = self._convolve(x)
        return out, (frames if isinstance(lengths, Frames) else frames.lengths)

    def _convolve(self, x):
        conv = self.conv
        if self.heads != -1:
            batch = x.shape[0]
            out = conv(x.reshape(-1, self.heads, x.shape[-1]))
            return out.reshape(batch, self.real_out_channels, -1)
        if self.channels_last_on_cpu and x.device.type == "cpu" and type(conv) is nn.Conv1d and not _exporting():
            return depthwise_conv_channels_last(x, conv)
        return conv(x)


def depthwise_conv_channels_last(x, conv):
    """``conv(x)`` for a depthwise ``nn.Conv1d`` ``conv``, run as a channels-last 2-D convolution.

    oneDNN's channels-last depthwise kernels vectorise over channels; which 2-D
    view is fastest depends on the case (measured on AVX2, forward + backward,
    batch 16, one thread): time as the H axis, ``(B, C, T, 1)``, for stride 1
    (4.5x faster than ``Conv1d`` at kernel 13-87); a dilated convolution as
    ``dilation`` interleaved phases of an undilated one in that view (8x; the
    dilated 2-D kernel itself is 4x slower than ``Conv1d``); time as the W
    axis, ``(B, C, 1, T)``, for a strided one (1.3-1.8x). Same weights, same
    sums in another order: outputs equal ``Conv1d``'s within float rounding.
    """
    weight, bias, groups = conv.weight, conv.bias, conv.groups
    (stride,), (padding,), (dilation,) = conv.stride, conv.padding, conv.dilation
    if stride > 1:
        view = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        out = F.conv2d(view, weight.unsqueeze(2), bias, stride=(1, stride), padding=(0, padding),
                       dilation=(1, dilation), groups=groups)
        return out.squeeze(2)
    if dilation > 1:
        if not keeps_length(conv):  # the phases below assume "same" padding
            return conv(x)
        frames = x.shape[-1]
        # phase p holds frames p, p + d, p + 2d...; output frame t only reads frames of its own phase
        phases = F.pad(x, (0, -frames % dilation)).unflatten(-1, (-1, dilation))
        out = F.conv2d(phases.contiguous(memory_format=torch.channels_last), weight.unsqueeze(3), bias,
                       padding=(padding // dilation, 0), groups=groups)
        return out.flatten(-2)[..., :frames]
    out = F.conv2d(x.unsqueeze(3).contiguous(memory_format=torch.channels_last), weight.unsqueeze(3), bias,
                   padding=(padding, 0), groups=groups)
    return out.squeeze(3).contiguous()


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a cheaper random mask on CPU.

    ``torch.nn.functional.dropout`` draws one Bernoulli sample per element from
    a float32 uniform (10 % of a demo training step on CPU). Here each 63-bit
    integer from torch's CPU generator gives four 15-bit uniforms
    (``cheap_keep_mask``), so an element is kept when its uniform is at least
    ``round(p * 2**15)``: the drop probability is ``p`` rounded to a multiple of
    2**-15 (absolute error at most 1.6e-5), kept values are scaled by the exact
    ``1 / (1 - p_rounded)`` so the expectation is unchanged, and seeding
    (``torch.manual_seed``) makes it repeatable. GPU tensors, eval mode, ``p``
    of 0 or 1 and exports use ``nn.Dropout`` itself. No parameters or buffers:
    state dicts are unchanged.
    """

    def forward(self, x):
        if (not self.training or x.device.type != "cpu" or _drop_threshold(self.p) is None or self.inplace
                or _exporting()):  # p within 2**-16 of 0 or 1 cannot be represented: nn.Dropout's own sampling
            return super().forward(x)
        return x * cheap_keep_mask(x, self.p)


def _drop_threshold(p):
    """``p`` in units of 2**-15 (a 15-bit draw below it drops the element), or None where that rounds to 0 or 1."""
    threshold = int(round(p * 32768))
    return threshold if 0 < threshold < 32768 else None


def cheap_keep_mask(x, p):
    """A scaled dropout keep mask shaped like ``x``: ``1 / (1 - q)`` with probability ``1 - q``, else 0, where
    ``q`` is ``p`` rounded to a multiple of ``2**-15``. Each 63-bit integer from torch's CPU generator is read
    as four 16-bit words whose low 15 bits are four independent uniform draws."""
    threshold = _drop_threshold(p)
    if threshold is None:
        raise ValueError(f"p={p} rounds to 0 or 1 in steps of 2**-15: use nn.Dropout for p within 2**-16 of 0 or 1")
    count = x.numel()
    words = torch.empty((count + 3) // 4, dtype=torch.int64, device=x.device).random_()
    draws = words.view(torch.int16)[:count] & 0x7FFF
    keep = (draws >= threshold).to(x.dtype).mul_(32768.0 / (32768 - threshold))
    return keep.view(x.shape)


class GroupShuffle(nn.Module):
    """Interleave channels across groups (ShuffleNet), after grouped convs."""

    def __init__(self, groups, channels):
        super().__init__()
        self.groups = groups
        self.channels_per_group = channels // groups

    def forward(self, x):
        shape = x.shape
        x = x.view(-1, self.groups, self.channels_per_group, shape[-1])
        return x.transpose(1, 2).contiguous().view(shape)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation over time (Hu et al., 2018) with global context.

    Per utterance, the mean of each channel over its valid frames (padding
    excluded) goes through ``Linear(C, C // reduction_ratio) -> activation ->
    Linear(C // reduction_ratio, C) -> sigmoid``; the input is scaled per channel
    by the result. Padded frames come out as zeros. The mean is taken in float32.
    """

    def __init__(self, channels, reduction_ratio=8, activation=None):
        super().__init__()
        hidden = channels // int(reduction_ratio)
        if hidden < 1:
            raise ValueError(f"se_reduction_ratio {reduction_ratio} leaves no hidden unit for {channels} channels")
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=False),
            (activation or nn.ReLU)(),
            nn.Linear(hidden, channels, bias=False),
        )

    def forward(self, x, lengths):
        """``lengths``: LongTensor or ``Frames``; returned as given."""
        frames = Frames.of(lengths)
        x = frames.apply(x)
        valid = frames.lengths.clamp(min=1, max=x.shape[-1]).to(torch.float32)
        context = x.float().sum(dim=-1) / valid[:, None]  # (B, C)
        scale = torch.sigmoid(self.fc(context.to(x.dtype)))
        return x * scale[:, :, None].to(x.dtype), lengths


def _norm(kind, channels, norm_groups):
    if kind == "batch":
        return nn.BatchNorm1d(channels, eps=1e-3, momentum=0.1)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "instance":
        return nn.GroupNorm(channels, channels)
    if kind == "group":
        return nn.GroupNorm(channels if norm_groups == -1 else norm_groups, channels)
    raise ValueError(f"Unknown normalization {kind!r}; valid: {', '.join(NORMALIZATIONS)}")


class JasperBlock(nn.Module):
    """``repeat`` x (conv -> norm -> activation -> dropout) with an optional
    (dense) residual added before the last activation.

    ``kernel_size_factor`` scales the kernel (kept odd), ``stride_last`` strides
    only the last repeat, ``se`` adds squeeze-excitation (``se_reduction_ratio``)
    after the last conv + norm, before the residual sum; ``residual_mode``
    ``"stride_add"`` strides the residual 1x1 conv like the block.
    """

    def __init__(self, inplanes, planes, repeat=3, kernel_size=11, stride=1, dilation=1, dropout=0.2,
                 activation=None, residual=True, groups=1, separable=False, heads=-1, normalization="batch",
                 norm_groups=1, residual_mode="add", residual_panes=(), conv_mask=True, kernel_size_factor=1.0,
                 stride_last=False, se=False, se_reduction_ratio=8, conv_impl="auto"):
        super().__init__()
        if residual_mode not in RESIDUAL_MODES:
            raise ValueError(f"residual_mode must be one of {', '.join(RESIDUAL_MODES)}; got {residual_mode!r}")
        if float(kernel_size_factor) <= 0:
            raise ValueError(f"kernel_size_factor must be > 0, got {kernel_size_factor!r}")
        if float(kernel_size_factor) != 1.0:  # factor 1 keeps NeMo 0.x's kernels exactly (even ones too)
            kernel_size = compute_kernel_size(kernel_size, kernel_size_factor)
        self.conv_mask = conv_mask
        self.conv_impl = conv_impl
        self.residual_mode = residual_mode
        self.separable = separable
        self._conv_args = dict(kernel_size=kernel_size, stride=stride, dilation=dilation,
                               padding=get_same_padding(kernel_size, stride, dilation),
                               groups=groups, heads=heads, separable=separable)
        inner_stride = 1 if stride_last else stride
        inner_args = dict(self._conv_args, stride=inner_stride,
                          padding=get_same_padding(kernel_size, inner_stride, dilation))
        make_activation = activation or nn.Hardtanh
        layers = []
        channels = inplanes
        for _ in range(repeat - 1):
            layers += self._conv_norm(channels, planes, normalization, norm_groups, **inner_args)
            layers += [make_activation(), Dropout(p=dropout)]
            channels = planes
        layers += self._conv_norm(channels, planes, normalization, norm_groups, **self._conv_args)
        if se:
            layers.append(SqueezeExcite(planes, se_reduction_ratio, activation=make_activation))
        self.mconv = nn.ModuleList(layers)

        self.dense_residual = bool(residual) and bool(residual_panes)
        if residual:
            panes = list(residual_panes) if residual_panes else [inplanes]
            res_stride = stride if residual_mode == "stride_add" else 1
            self.res = nn.ModuleList(
                nn.ModuleList(self._conv_norm(p, planes, normalization, norm_groups, kernel_size=1,
                                              stride=res_stride))
                for p in panes
            )
        else:
            self.res = None
        self.mout = nn.Sequential(make_activation(), Dropout(p=dropout))

    def _conv_norm(self, in_channels, out_channels, normalization, norm_groups, kernel_size=11, stride=1,
                   dilation=1, padding=0, groups=1, heads=-1, separable=False):
        def conv(i, o, k, s=1, d=1, p=0, g=1, h=-1):
            return MaskedConv1d(i, o, k, stride=s, dilation=d, padding=p, groups=g, heads=h, use_mask=self.conv_mask,
                                impl=self.conv_impl)

        if separable:
            layers = [conv(in_channels, in_channels, kernel_size, stride, dilation, padding, in_channels, heads),
                      conv(in_channels, out_channels, 1, g=groups)]
        else:
            layers = [conv(in_channels, out_channels, kernel_size, stride, dilation, padding, groups)]
        layers.append(_norm(normalization, out_channels, norm_groups))
        if groups > 1:
            layers.append(GroupShuffle(groups, out_channels))
        return layers

    def forward(self, inputs, lengths):
        """``inputs``: list of tensors (earlier outputs for dense residuals); ``lengths``: LongTensor or
        ``Frames`` (the block's input frames, whose mask is shared), returned as the same kind."""
        frames = Frames.of(lengths)
        out, out_frames = inputs[-1], frames
        for layer in self.mconv:
            if isinstance(layer, (MaskedConv1d, SqueezeExcite)):
                out, out_frames = layer(out, out_frames)
            else:
                out = layer(out)
        if self.res is not None:
            for branch, res_in in zip(self.res, inputs):
                for layer in branch:
                    if isinstance(layer, MaskedConv1d):
                        res_in, _ = layer(res_in, frames)
                    else:
                        res_in = layer(res_in)
                out = torch.maximum(out, res_in) if self.residual_mode == "max" else out + res_in
        out = self.mout(out)
        out_lengths = out_frames if isinstance(lengths, Frames) else out_frames.lengths
        if self.dense_residual:
            return inputs + [out], out_lengths
        return [out], out_lengths


class JasperEncoderNet(nn.Module):
    """Stack of JasperBlocks built from a list of block configs.

    Every key of a block config is used or refused: an unknown key (a typo, or
    an option this implementation does not have) raises ``JasperConfigError``
    naming the block index and the key, so a config never silently builds
    another model than it describes.
    """

    REQUIRED_KEYS = ("filters", "repeat", "kernel", "stride", "dilation", "dropout", "residual")
    OPTIONAL_KEYS = ("residual_dense", "separable", "groups", "heads", "tied", "residual_mode", "se",
                     "se_reduction_ratio", "se_context_size", "se_context_window", "se_interpolation_mode",
                     "kernel_size_factor", "stride_last")
    BLOCK_KEYS = frozenset(REQUIRED_KEYS + OPTIONAL_KEYS)

    def __init__(self, jasper, activation, feat_in, normalization_mode="batch", residual_mode="add",
                 norm_groups=-1, conv_mask=True, frame_splicing=1, init_mode="xavier_uniform", conv_impl="auto"):
        super().__init__()
        self.encoder, self.out_channels = self.build_blocks(
            jasper, activation, feat_in, normalization_mode=normalization_mode, residual_mode=residual_mode,
            norm_groups=norm_groups, conv_mask=conv_mask, frame_splicing=frame_splicing, init_mode=init_mode,
            conv_impl=conv_impl)

    @classmethod
    def build_blocks(cls, jasper, activation, feat_in, normalization_mode="batch", residual_mode="add",
                     norm_groups=-1, conv_mask=True, frame_splicing=1, init_mode="xavier_uniform", conv_impl="auto"):
        """``(nn.Sequential of JasperBlocks, output channels)`` for the block configs ``jasper``, initialised."""
        if activation not in ACTIVATIONS:
            raise ValueError(f"Unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
        if normalization_mode not in NORMALIZATIONS:
            raise ValueError(f"Unknown normalization_mode {normalization_mode!r}; valid: {', '.join(NORMALIZATIONS)}")
        if conv_impl not in CONV_IMPLS:
            raise ValueError(f"Unknown conv_impl {conv_impl!r}; valid: {', '.join(CONV_IMPLS)}")
        feat_in = feat_in * frame_splicing
        residual_panes, blocks = [], []
        for index, cfg in enumerate(jasper):
            options = cls._block_options(index, cfg, residual_mode)
            dense = []
            if cfg.get("residual_dense", False):
                residual_panes.append(feat_in)
                dense = list(residual_panes)
            try:
                blocks.append(JasperBlock(
                    feat_in, cfg["filters"], repeat=cfg["repeat"], kernel_size=_first(cfg["kernel"]),
                    stride=_first(cfg["stride"]), dilation=_first(cfg["dilation"]), dropout=cfg["dropout"],
                    activation=ACTIVATIONS[activation], residual=cfg["residual"], groups=cfg.get("groups", 1),
                    separable=cfg.get("separable", False), heads=cfg.get("heads", -1),
                    normalization=normalization_mode, norm_groups=norm_groups, residual_panes=dense,
                    conv_mask=conv_mask, conv_impl=conv_impl, **options,
                ))
            except ValueError as err:
                if isinstance(err, JasperConfigError):
                    raise
                raise JasperConfigError(f"jasper block {index}: {err}") from err
            feat_in = cfg["filters"]
        blocks = nn.Sequential(*blocks)
        blocks.apply(lambda m: init_weights(m, init_mode))
        return blocks, feat_in

    @classmethod
    def _block_options(cls, index, cfg, residual_mode):
        """Check block ``index``'s keys; the JasperBlock arguments of its optional keys."""
        if not isinstance(cfg, dict):
            raise JasperConfigError(f"jasper block {index} must be a mapping of keys, got {type(cfg).__name__}")
        missing = [k for k in cls.REQUIRED_KEYS if k not in cfg]
        if missing:
            raise JasperConfigError(f"jasper block {index} lacks required key(s): {', '.join(missing)}")
        unknown = sorted(set(cfg) - cls.BLOCK_KEYS)
        if unknown:
            raise JasperConfigError(
                f"jasper block {index} has unknown key(s): {', '.join(map(str, unknown))}; a block accepts "
                f"{', '.join(cls.REQUIRED_KEYS + cls.OPTIONAL_KEYS)} (check the spelling or remove the key)")
        if cfg.get("tied"):
            raise JasperConfigError(f"jasper block {index}: 'tied' weights are not supported; remove 'tied'")
        for key in ("se_context_size", "se_context_window"):
            value = cfg.get(key, -1)
            if value is not None and (not isinstance(value, (int, float)) or value > 0):
                raise JasperConfigError(
                    f"jasper block {index}: {key}={value} asks for limited-context squeeze-excitation; only "
                    f"global context (-1) is implemented")
        se = bool(cfg.get("se", False))
        ratio = cfg.get("se_reduction_ratio", 8)
        if not isinstance(ratio, int) or isinstance(ratio, bool) or ratio < 1:
            raise JasperConfigError(f"jasper block {index}: se_reduction_ratio must be an integer >= 1, got {ratio!r}")
        if se and cfg["filters"] // ratio < 1:
            raise JasperConfigError(f"jasper block {index}: se_reduction_ratio {ratio} is larger than the block's "
                                    f"{cfg['filters']} filters; use at most {cfg['filters']}")
        factor = cfg.get("kernel_size_factor", 1.0)
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor <= 0:
            raise JasperConfigError(f"jasper block {index}: kernel_size_factor must be a number > 0, got {factor!r}")
        mode = cfg.get("residual_mode", residual_mode)
        if mode not in RESIDUAL_MODES:
            raise JasperConfigError(f"jasper block {index}: residual_mode {mode!r} is not one of "
                                    f"{', '.join(RESIDUAL_MODES)}")
        stride, stride_last = _first(cfg["stride"]), bool(cfg.get("stride_last", False))
        if cfg["residual"] and stride > 1:
            main = stride if stride_last or cfg["repeat"] == 1 else stride ** cfg["repeat"]
            residual = stride if mode == "stride_add" else 1
            if main != residual:
                raise JasperConfigError(
                    f"jasper block {index}: its main path strides {main}x but its residual {residual}x "
                    f"(residual_mode {mode!r}), so the two cannot be added; use residual_mode: "
                    "stride_add with stride_last: true (or repeat: 1), or residual: false")
        return dict(residual_mode=mode, kernel_size_factor=float(factor), stride_last=stride_last,
                    se=se, se_reduction_ratio=ratio)

    def forward(self, audio_signal, length):
        return run_blocks(self.encoder, audio_signal, length)


def run_blocks(blocks, audio_signal, length):
    """Apply JasperBlocks in order; returns the last output and its lengths.

    One ``Frames`` is threaded through, so each padding mask is built once per
    forward pass and per frame rate, not once per convolution.
    """
    frames = Frames(length.long())
    outputs = [frames.clean(audio_signal)]
    for block in blocks:
        outputs, frames = block(outputs, frames)
    return outputs[-1], frames.lengths


def fold_batch_norms(blocks):
    """A copy of ``blocks`` for inference, with each BatchNorm folded into the convolution before it.

    Every ``MaskedConv1d`` directly followed by a ``BatchNorm1d`` (in ``mconv``
    and in residual branches) gets ``conv.weight * gamma / sqrt(var + eps)``
    and a bias, and the norm becomes ``nn.Identity``: one pass over the
    activations fewer per convolution, with the same outputs in eval mode
    (padded frames included: the input is masked before the convolution, so
    a padded frame gets the folded bias, which is what the norm gave it).
    The copy is in eval mode and its state dict differs (biases, no norms), so
    it is for inference and export, never for training or checkpoints.
    """
    folded = copy.deepcopy(blocks).eval()
    for container in folded.modules():
        if not isinstance(container, (nn.ModuleList, nn.Sequential)):
            continue
        layers = list(container)
        for index, (layer, following) in enumerate(zip(layers, layers[1:])):
            if (isinstance(layer, MaskedConv1d) and layer.heads == -1 and type(layer.conv) is nn.Conv1d
                    and type(following) is nn.BatchNorm1d and following.track_running_stats):
                layer.conv = fuse_conv_bn_eval(layer.conv, following)
                container[index + 1] = nn.Identity()
    return folded


def masked_convs(blocks):
    """The MaskedConv1d layers that set each block's output length (its ``mconv`` chain), in order.

    Residual branches are left out: their 1x1 convs do not change the length.
    """
    return [layer for block in blocks for layer in block.mconv if isinstance(layer, MaskedConv1d)]


def encoded_lengths(blocks, lengths):
    """The lengths ``run_blocks`` returns for input ``lengths``, without running a convolution.

    Uses each conv's own ``get_seq_len``, and, like the forward pass, only
    where the conv masks (``conv_mask=False`` passes lengths through).
    """
    lengths = torch.as_tensor(lengths).long()
    for conv in masked_convs(blocks):
        if conv.use_mask:
            lengths = conv.get_seq_len(lengths)
    return lengths


def total_stride(blocks):
    """Input frames per output frame: the product of the convolutions' strides."""
    stride = 1
    for conv in masked_convs(blocks):
        stride *= conv.conv.stride[0]
    return stride


def ctc_log_probs(decoder_layers, encoder_output):
    """(B, C, T) features -> (B, T, classes) float32 log-probabilities."""
    logits = decoder_layers(encoder_output).transpose(1, 2)
    return torch.nn.functional.log_softmax(logits.float(), dim=-1)


def _first(value):
    return value[0] if isinstance(value, (list, tuple)) else value


class CTCDecoderHead(nn.Module):
    """1x1 conv to ``num_classes + 1`` (blank last) and log-softmax over classes."""

    def __init__(self, feat_in, num_classes, init_mode="xavier_uniform"):
        super().__init__()
        self.decoder_layers = self.build_layers(feat_in, num_classes, init_mode)

    @staticmethod
    def build_layers(feat_in, num_classes, init_mode="xavier_uniform"):
        """The head's ``nn.Sequential`` (key prefix ``decoder_layers.0``), initialised."""
        layers = nn.Sequential(nn.Conv1d(feat_in, num_classes + 1, kernel_size=1, bias=True))
        layers.apply(lambda m: init_weights(m, init_mode))
        return layers

    def forward(self, encoder_output):
        return ctc_log_probs(self.decoder_layers, encoder_output)
