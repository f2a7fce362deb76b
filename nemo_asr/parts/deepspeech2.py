"""DeepSpeech2 (Amodei et al., 2016) as deepspeech.pytorch builds it: the maths, in plain torch.

(B, F, T) features -> 2-D convolutions over (frequency, time), each with
batch norm and ``Hardtanh(0, 20)`` -> a stack of GRU/LSTM layers (uni- or
bidirectional; the two directions are summed; sequence-wise batch norm on
the input of every layer but the first) -> a lookahead convolution when
unidirectional -> sequence-wise batch norm -> (B, H, T'). A CTC head (a
fully connected layer per frame, e.g. ``CTCDecoderHead``) completes the
model: deepspeech.pytorch's ``fc`` is that batch norm plus that layer.

Padding never leaks into valid steps, in training, inference and export alike:

- every convolution's input is zero past its length, so a padded batch
  gives each utterance the same values as the convolution's own zero
  padding would on its own;
- batch norm statistics (in training) come from the valid steps only;
- a forward RNN is causal, so padding after an utterance cannot reach it;
  the backward direction runs over each utterance reversed within its
  length (an index gather), so it too starts at the last valid frame: the
  result equals a packed-sequence RNN's, without ``pack_padded_sequence``;
- padded output steps are zero.

Why not packed sequences: they do not trace (``torch.onnx.export`` and
``torch.jit.trace`` would need a second, padded code path), and on the CPU
PyTorch runs a packed LSTM step by step under autograd: forward + backward
of one bidirectional LSTM layer of 256 (batch 16, 150 frames, 1 thread)
took 0.85 s packed against 0.26 s as here (GRU: 0.49 s against 0.28 s),
since padded inputs take the fused (oneDNN/cuDNN) kernels. The one path here
serves training, inference, ONNX/TorchScript export and int8 quantisation.
"""
import torch
from torch import nn

from .masks import lengths_mask

RNN_TYPES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class DeepSpeech2ConfigError(ValueError):
    """DeepSpeech2 arguments that do not describe a network; the message names the argument."""

    user_error = True  # one line on the command line (nemo_core.utils.cli)


def conv_out_lengths(lengths, kernel, stride, padding, dilation=1):
    """Output lengths of a convolution along one axis (PyTorch's arithmetic, floor division)."""
    return torch.div(lengths + 2 * padding - dilation * (kernel - 1) - 1, stride, rounding_mode="floor") + 1


def zero_padding(x, valid):
    """``x`` (B, T, ...) with the steps where ``valid`` (B, T) is False set to zero."""
    return x.masked_fill(~valid.view(valid.shape + (1,) * (x.dim() - 2)), 0.0)


def batch_norm_valid(norm, x, valid):
    """``norm`` (a ``BatchNorm1d``) over ``x`` (B, T, C[, L]); padded steps come out zero.

    In training the statistics come from the valid steps only (gathered
    rows), so the amount of padding in a batch does not change them. In
    eval mode batch norm is a per-channel affine map, applied to every step.
    """
    if norm.training:
        rows = norm(x[valid])
        out = rows.new_zeros(x.shape[:2] + rows.shape[1:])
        out[valid] = rows
        return out
    return zero_padding(norm(x.flatten(0, 1)).view_as(x), valid)


def reverse_index(lengths, steps):
    """(B, T) index that reverses each utterance within its length and leaves padding in place."""
    time = torch.arange(steps, device=lengths.device)[None, :]
    last = lengths[:, None] - 1
    return torch.where(time <= last, last - time, time)


def time_gather(x, index):
    """``x[b, index[b, t]]`` for x (B, T, C) and index (B, T): a per-utterance reordering of time."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class ConvLayer(nn.Module):
    """Conv2d over (frequency, time) -> batch norm (valid steps) -> Hardtanh(0, 20), padding zeroed."""

    def __init__(self, in_channels, out_channels, kernel, stride, padding):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, tuple(kernel), tuple(stride), tuple(padding))
        self.norm = nn.BatchNorm1d(out_channels)  # over (steps, channels, frequency): BatchNorm2d's statistics
        self.activation = nn.Hardtanh(0, 20)

    def out_lengths(self, lengths):
        """Output frames for ``lengths`` input frames (the time axis is the last one)."""
        return conv_out_lengths(lengths, self.conv.kernel_size[1], self.conv.stride[1], self.conv.padding[1],
                                self.conv.dilation[1])

    def forward(self, x, lengths):
        """x (B, C, F, T), zero past ``lengths`` -> (B, C', F', T'), zero past the new lengths."""
        x, lengths = self.conv(x), self.out_lengths(lengths)
        valid = ~lengths_mask(lengths, x.shape[-1])
        x = batch_norm_valid(self.norm, x.permute(0, 3, 1, 2), valid).permute(0, 2, 3, 1)
        return self.activation(x), lengths  # Hardtanh(0, 20) keeps zeros zero


class RNNLayer(nn.Module):
    """[Sequence-wise batch norm ->] GRU/LSTM over time; bidirectional: plus one over reversed time, summed.

    The backward direction is its own unidirectional RNN (``rnn_reverse``)
    run over each utterance reversed within its length (``reverse_index``),
    so it starts at the utterance's last valid frame, exactly as a packed
    bidirectional RNN does, and its outputs are put back in order.
    """

    def __init__(self, input_size, hidden_size, rnn_type="lstm", bidirectional=True, batch_norm=True):
        super().__init__()
        rnn = RNN_TYPES[rnn_type]
        self.norm = nn.BatchNorm1d(input_size) if batch_norm else None
        self.rnn = rnn(input_size, hidden_size, batch_first=True)
        self.rnn_reverse = rnn(input_size, hidden_size, batch_first=True) if bidirectional else None

    def forward(self, x, valid, reverse):
        """x (B, T, C), zero on padding; ``valid`` (B, T); ``reverse`` = ``reverse_index(lengths, T)``
        -> (B, T, hidden), zero on padding."""
        if self.norm is not None:
            x = batch_norm_valid(self.norm, x, valid)
        y = self.rnn(x)[0]
        if self.rnn_reverse is not None:
            y = y + time_gather(self.rnn_reverse(time_gather(x, reverse))[0], reverse)
        return zero_padding(y, valid)


class Lookahead(nn.Module):
    """Depthwise convolution over the next ``context`` frames (and the current one) + Hardtanh(0, 20).

    Gives a unidirectional model a fixed amount of future context (DS2 section
    3.5); the frames past the end are zeros, as past an utterance's length.
    """

    def __init__(self, channels, context):
        super().__init__()
        self.context = context
        self.conv = nn.Conv1d(channels, channels, context + 1, groups=channels, bias=False)
        self.activation = nn.Hardtanh(0, 20)

    def forward(self, x):
        """x (B, C, T) -> (B, C, T)."""
        return self.activation(self.conv(nn.functional.pad(x, (0, self.context))))


def _pairs(name, value, layers):
    """``value`` as ``layers`` (frequency, time) pairs: one int or pair for all layers, or one per layer."""
    if isinstance(value, int) or (isinstance(value, (list, tuple)) and len(value) == 2
                                  and all(isinstance(v, int) for v in value)):
        value = [value] * layers
    if not isinstance(value, (list, tuple)) or len(value) != layers:
        raise DeepSpeech2ConfigError(f"{name} must give one (frequency, time) pair per convolution layer "
                                     f"({layers}, from conv_channels), got {value!r}")
    pairs = [(v, v) if isinstance(v, int) else tuple(v) for v in value]
    if not all(len(p) == 2 and all(isinstance(i, int) and i >= 0 for i in p) for p in pairs):
        raise DeepSpeech2ConfigError(f"{name} must hold non-negative integers or [frequency, time] pairs, "
                                     f"got {value!r}")
    return pairs


class DeepSpeech2Net(nn.Module):
    """The DeepSpeech2 encoder: ``forward(features (B, feat_in, T), lengths (B,))`` ->
    ``(encoded (B, rnn_hidden_size, T'), encoded lengths (B,))``; see the module docstring.

    Defaults are deepspeech.pytorch's: two convolutions of 32 channels,
    kernels (41, 11) and (21, 11) over (frequency, time), strides (2, 2) and
    (2, 1), five bidirectional LSTM layers of 1024. ``lookahead_context``
    applies to unidirectional models only.
    """

    def __init__(self, feat_in, conv_channels=(32, 32), conv_kernel=((41, 11), (21, 11)),
                 conv_stride=((2, 2), (2, 1)), conv_padding=((20, 5), (10, 5)), rnn_type="lstm",
                 rnn_hidden_size=1024, rnn_layers=5, bidirectional=True, lookahead_context=20, output_norm=True):
        super().__init__()
        layers = len(conv_channels)
        if rnn_type not in RNN_TYPES:
            raise DeepSpeech2ConfigError(f"rnn_type {rnn_type!r} is not one of {', '.join(RNN_TYPES)}")
        if rnn_layers < 1 or rnn_hidden_size < 1:
            raise DeepSpeech2ConfigError(f"rnn_layers and rnn_hidden_size must be at least 1, got "
                                         f"{rnn_layers} and {rnn_hidden_size}")
        kernels, strides, paddings = (_pairs(n, v, layers) for n, v in (
            ("conv_kernel", conv_kernel), ("conv_stride", conv_stride), ("conv_padding", conv_padding)))
        self.convs = nn.ModuleList()
        channels, freq = 1, feat_in
        for out, kernel, stride, padding in zip(conv_channels, kernels, strides, paddings):
            self.convs.append(ConvLayer(channels, out, kernel, stride, padding))
            channels, freq = out, int(conv_out_lengths(torch.tensor(freq), kernel[0], stride[0], padding[0]))
            if freq < 1:
                raise DeepSpeech2ConfigError(f"the convolutions leave no frequency bins of feat_in={feat_in} "
                                             f"(kernels {kernels}, strides {strides}, paddings {paddings})")
        sizes = [channels * freq] + [rnn_hidden_size] * rnn_layers
        self.rnns = nn.ModuleList(RNNLayer(sizes[i], rnn_hidden_size, rnn_type, bidirectional, batch_norm=i > 0)
                                  for i in range(rnn_layers))
        self.lookahead = None if bidirectional or not lookahead_context else Lookahead(rnn_hidden_size,
                                                                                       lookahead_context)
        self.output_norm = nn.BatchNorm1d(rnn_hidden_size) if output_norm else None
        self.out_channels = rnn_hidden_size

    @property
    def total_stride(self):
        """Input frames per encoded frame (the product of the convolutions' time strides)."""
        stride = 1
        for layer in self.convs:
            stride *= layer.conv.stride[1]
        return stride

    def encoded_lengths(self, lengths):
        """The encoded lengths ``forward`` returns for input frame counts ``lengths``."""
        lengths = torch.as_tensor(lengths).long()
        for layer in self.convs:
            lengths = layer.out_lengths(lengths)
        return lengths

    def forward(self, audio_signal, length):
        length = length.long()
        x = audio_signal.masked_fill(lengths_mask(length, audio_signal.shape[-1])[:, None, :], 0.0).unsqueeze(1)
        for layer in self.convs:
            x, length = layer(x, length)
        x = x.flatten(1, 2).transpose(1, 2)  # (B, T', C * F')
        valid, reverse = ~lengths_mask(length, x.shape[1]), reverse_index(length, x.shape[1])
        for layer in self.rnns:
            x = layer(x, valid, reverse)
        if self.lookahead is not None:
            x = zero_padding(self.lookahead(x.transpose(1, 2)).transpose(1, 2), valid)
        if self.output_norm is not None:
            x = batch_norm_valid(self.output_norm, x, valid)
        return x.transpose(1, 2), length
