"""Jasper / QuartzNet building blocks as plain torch modules.

The module tree (and so every state_dict key) follows NeMo 0.x exactly, so
NGC checkpoints load unchanged: ``encoder.{block}.mconv.{i}`` holds, per
repeat, [conv(s), norm, activation, dropout] (the last repeat without
activation/dropout, which sit in ``mout`` after the residual sum), and
``encoder.{block}.res.{j}`` a 1x1 conv + norm per residual input.
"""
import torch
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    # Jasper's clipped ReLU: min(max(x, 0), 20)
    "hardtanh": lambda: nn.Hardtanh(0.0, 20.0),
    "selu": nn.SELU,
    "swish": nn.SiLU,
}
NORMALIZATIONS = ("batch", "layer", "instance", "group")
INIT_MODES = ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal")


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


def lengths_mask(lengths, max_len):
    """(B, T) bool: True on padding."""
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


class MaskedConv1d(nn.Module):
    """Conv1d that zeroes padded frames first, and returns the new lengths.

    With ``heads`` (depthwise only) one kernel of ``heads`` channels is shared
    across channel groups.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, heads=-1, bias=False, use_mask=True):
        super().__init__()
        if not (heads == -1 or groups == in_channels):
            raise ValueError("heads is only supported for depthwise convolutions")
        self.real_out_channels = out_channels
        if heads != -1:
            in_channels = out_channels = groups = heads
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                              dilation=dilation, groups=groups, bias=bias)
        self.use_mask = use_mask
        self.heads = heads

    def get_seq_len(self, lengths):
        conv = self.conv
        return torch.div(lengths + 2 * conv.padding[0] - conv.dilation[0] * (conv.kernel_size[0] - 1) - 1,
                         conv.stride[0], rounding_mode="floor") + 1

    def forward(self, x, lengths):
        if self.use_mask:
            x = x.masked_fill(lengths_mask(lengths, x.shape[2])[:, None, :], 0.0)
            lengths = self.get_seq_len(lengths)
        if self.heads != -1:
            batch = x.shape[0]
            out = self.conv(x.reshape(-1, self.heads, x.shape[-1]))
            return out.reshape(batch, self.real_out_channels, -1), lengths
        return self.conv(x), lengths


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
    (dense) residual added before the last activation."""

    def __init__(self, inplanes, planes, repeat=3, kernel_size=11, stride=1, dilation=1, dropout=0.2,
                 activation=None, residual=True, groups=1, separable=False, heads=-1, normalization="batch",
                 norm_groups=1, residual_mode="add", residual_panes=(), conv_mask=True):
        super().__init__()
        if residual_mode not in ("add", "max"):
            raise ValueError(f"residual_mode must be 'add' or 'max', got {residual_mode!r}")
        padding = get_same_padding(kernel_size, stride, dilation)
        self.conv_mask = conv_mask
        self.residual_mode = residual_mode
        self.separable = separable
        self._conv_args = dict(kernel_size=kernel_size, stride=stride, dilation=dilation, padding=padding,
                               groups=groups, heads=heads, separable=separable)
        make_activation = activation or nn.Hardtanh
        layers = []
        channels = inplanes
        for _ in range(repeat - 1):
            layers += self._conv_norm(channels, planes, normalization, norm_groups, **self._conv_args)
            layers += [make_activation(), nn.Dropout(p=dropout)]
            channels = planes
        layers += self._conv_norm(channels, planes, normalization, norm_groups, **self._conv_args)
        self.mconv = nn.ModuleList(layers)

        self.dense_residual = bool(residual) and bool(residual_panes)
        if residual:
            panes = list(residual_panes) if residual_panes else [inplanes]
            self.res = nn.ModuleList(
                nn.ModuleList(self._conv_norm(p, planes, normalization, norm_groups, kernel_size=1))
                for p in panes
            )
        else:
            self.res = None
        self.mout = nn.Sequential(make_activation(), nn.Dropout(p=dropout))

    def _conv_norm(self, in_channels, out_channels, normalization, norm_groups, kernel_size=11, stride=1,
                   dilation=1, padding=0, groups=1, heads=-1, separable=False):
        def conv(i, o, k, s=1, d=1, p=0, g=1, h=-1):
            return MaskedConv1d(i, o, k, stride=s, dilation=d, padding=p, groups=g, heads=h, use_mask=self.conv_mask)

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
        """``inputs``: list of tensors (earlier outputs for dense residuals)."""
        out, out_lengths = inputs[-1], lengths
        for layer in self.mconv:
            if isinstance(layer, MaskedConv1d):
                out, out_lengths = layer(out, out_lengths)
            else:
                out = layer(out)
        if self.res is not None:
            for branch, res_in in zip(self.res, inputs):
                for layer in branch:
                    if isinstance(layer, MaskedConv1d):
                        res_in, _ = layer(res_in, lengths)
                    else:
                        res_in = layer(res_in)
                out = out + res_in if self.residual_mode == "add" else torch.maximum(out, res_in)
        out = self.mout(out)
        if self.dense_residual:
            return inputs + [out], out_lengths
        return [out], out_lengths


class JasperEncoderNet(nn.Module):
    """Stack of JasperBlocks built from a list of block configs."""

    BLOCK_KEYS = {"filters", "repeat", "kernel", "stride", "dilation", "dropout", "residual",
                  "residual_dense", "separable", "groups", "heads", "tied", "se", "se_reduction_ratio",
                  "kernel_size_factor", "stride_last", "residual_mode"}

    def __init__(self, jasper, activation, feat_in, normalization_mode="batch", residual_mode="add",
                 norm_groups=-1, conv_mask=True, frame_splicing=1, init_mode="xavier_uniform"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"Unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
        if normalization_mode not in NORMALIZATIONS:
            raise ValueError(f"Unknown normalization_mode {normalization_mode!r}; valid: {', '.join(NORMALIZATIONS)}")
        feat_in = feat_in * frame_splicing
        residual_panes, blocks = [], []
        for index, cfg in enumerate(jasper):
            missing = [k for k in ("filters", "repeat", "kernel", "stride", "dilation", "dropout", "residual") if k not in cfg]
            if missing:
                raise ValueError(f"jasper block {index} lacks required key(s): {', '.join(missing)}")
            unknown = sorted(set(cfg) - self.BLOCK_KEYS)
            if unknown:
                raise ValueError(f"jasper block {index} has unknown key(s): {', '.join(unknown)}")
            if cfg.get("tied"):
                raise ValueError(f"jasper block {index}: 'tied' weights are not supported")
            dense = []
            if cfg.get("residual_dense", False):
                residual_panes.append(feat_in)
                dense = list(residual_panes)
            blocks.append(JasperBlock(
                feat_in, cfg["filters"], repeat=cfg["repeat"], kernel_size=_first(cfg["kernel"]),
                stride=_first(cfg["stride"]), dilation=_first(cfg["dilation"]), dropout=cfg["dropout"],
                activation=ACTIVATIONS[activation], residual=cfg["residual"], groups=cfg.get("groups", 1),
                separable=cfg.get("separable", False), heads=cfg.get("heads", -1),
                normalization=normalization_mode, norm_groups=norm_groups,
                residual_mode=cfg.get("residual_mode", residual_mode), residual_panes=dense, conv_mask=conv_mask,
            ))
            feat_in = cfg["filters"]
        self.encoder = nn.Sequential(*blocks)
        self.out_channels = feat_in
        self.apply(lambda m: init_weights(m, init_mode))

    def forward(self, audio_signal, length):
        return run_blocks(self.encoder, audio_signal, length)


def run_blocks(blocks, audio_signal, length):
    """Apply JasperBlocks in order; returns the last output and its lengths."""
    outputs, length = [audio_signal], length.long()
    for block in blocks:
        outputs, length = block(outputs, length)
    return outputs[-1], length


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
        self.decoder_layers = nn.Sequential(nn.Conv1d(feat_in, num_classes + 1, kernel_size=1, bias=True))
        self.apply(lambda m: init_weights(m, init_mode))

    def forward(self, encoder_output):
        return ctc_log_probs(self.decoder_layers, encoder_output)
