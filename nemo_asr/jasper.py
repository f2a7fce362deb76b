"""JasperEncoder and JasperDecoderForCTC: typed wrappers over ``parts/jasper.py``.

State-dict keys equal NeMo 0.x's, so NGC checkpoints restore with ``restore_from``.
"""
import collections

from nemo_core import EncodedRepresentation, LogprobsType, NeuralType, TrainableNM

from .acoustic_encoder import AcousticEncoder
from .parts.jasper import (
    CTCDecoderHead, JasperEncoderNet, ctc_log_probs, encoded_lengths, run_blocks, total_stride,
)


class JasperEncoder(AcousticEncoder):
    """Jasper BxR, Jasper DR, QuartzNet: blocks described by the ``jasper`` list.

    The input port declares ``D = feat_in * frame_splicing``, so wiring it to a
    preprocessor with another feature count fails on that line.

    Besides NeMo 0.x's block keys, a block may set NeMo's later QuartzNet/Citrinet
    options ``se`` / ``se_reduction_ratio`` (squeeze-excitation, global context),
    ``kernel_size_factor``, ``stride_last`` and ``residual_mode: stride_add``
    (see ``parts/jasper.py``); any other key raises ``JasperConfigError`` naming
    the block index and the key.

    ``conv_impl``: ``"auto"`` (default) runs depthwise convolutions on CPU as
    channels-last 2-D convolutions (several times faster, same weights and
    outputs), ``"conv1d"`` always as ``nn.Conv1d``; see ``parts/jasper.py``'s
    ``MaskedConv1d``.
    """

    def __init__(self, jasper, activation, feat_in, normalization_mode="batch", residual_mode="add",
                 norm_groups=-1, conv_mask=True, frame_splicing=1, init_mode="xavier_uniform",
                 conv_impl="auto", placement=None, name=None):
        super().__init__(placement=placement, name=name)
        self._feat_in = feat_in * frame_splicing
        # attribute name fixes the NGC key prefix "encoder."
        self.encoder, self._out_channels = JasperEncoderNet.build_blocks(
            jasper, activation, feat_in, normalization_mode=normalization_mode, residual_mode=residual_mode,
            norm_groups=norm_groups, conv_mask=conv_mask, frame_splicing=frame_splicing, init_mode=init_mode,
            conv_impl=conv_impl)

    @property
    def out_channels(self):
        """Channels of the encoded output (the last block's filters)."""
        return self._out_channels

    @property
    def total_stride(self):
        """Input frames per encoded frame (product of the convolutions' strides)."""
        return total_stride(self.encoder)

    def encoded_lengths(self, lengths):
        """The ``encoded_lengths`` the forward pass returns for input frame counts ``lengths``
        (LongTensor), from the convolutions' length arithmetic alone: no features needed."""
        return encoded_lengths(self.encoder, lengths)

    def forward(self, audio_signal, length):
        return run_blocks(self.encoder, audio_signal, length)


class JasperDecoderForCTC(TrainableNM):
    """1x1 conv to ``num_classes + 1`` (blank last) + log-softmax: (B, T, C) log-probs."""

    def __init__(self, feat_in, num_classes, init_mode="xavier_uniform", placement=None, name=None):
        super().__init__(placement=placement, name=name)
        self._feat_in, self._num_classes = feat_in, num_classes
        self.decoder_layers = CTCDecoderHead.build_layers(feat_in, num_classes, init_mode)

    @property
    def num_classes(self):
        return self._num_classes

    @property
    def input_ports(self):
        return collections.OrderedDict(
            encoder_output=NeuralType(("B", ("D", self._feat_in), "T"), EncodedRepresentation()))

    @property
    def output_ports(self):
        return collections.OrderedDict(
            output=NeuralType(("B", "T", ("D", self._num_classes + 1)), LogprobsType()))

    def forward(self, encoder_output):
        return ctc_log_probs(self.decoder_layers, encoder_output)
