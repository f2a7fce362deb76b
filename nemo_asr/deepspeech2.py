"""DeepSpeech2Encoder: the typed wrapper over ``parts/deepspeech2.py``.

Its ports equal ``JasperEncoder``'s, so it slots into the same DAG: any
spectrogram preprocessor in, ``JasperDecoderForCTC`` (a fully connected layer
per frame, which with the encoder's final batch norm is deepspeech.pytorch's
``fc``), ``CTCLossNM`` and the greedy/beam decoders out. A model config picks
it with a ``DeepSpeech2Encoder`` section in place of ``JasperEncoder``
(``examples/asr/configs/deepspeech2.yaml``).
"""


from .acoustic_encoder import AcousticEncoder
from .parts.deepspeech2 import DeepSpeech2Net


class DeepSpeech2Encoder(AcousticEncoder):
    """2-D convolutions + GRU/LSTM stack (+ lookahead when unidirectional), as deepspeech.pytorch.

    Args:
        feat_in: features per frame (the preprocessor's); the input port declares it.
        conv_channels: output channels of each 2-D convolution; its length is the number of layers.
        conv_kernel, conv_stride, conv_padding: per layer ``[frequency, time]`` (one pair, or one
            int, applies to every layer).
        rnn_type: ``lstm``, ``gru`` or ``rnn``.
        rnn_hidden_size, rnn_layers: size and depth of the RNN stack; the output has
            ``rnn_hidden_size`` channels (a bidirectional layer sums its two directions).
        bidirectional: False gives the streaming-friendly variant with a lookahead convolution.
        lookahead_context: future frames the lookahead sees (unidirectional only; 0: none).
        output_norm: sequence-wise batch norm on the output (deepspeech.pytorch's, before its fc).

    Padded time steps never reach valid ones (each RNN direction runs within each utterance's length, masked
    convolutions and batch-norm statistics) and come out zero; see
    ``nemo_asr.parts.deepspeech2`` for how the exported (traced) graph keeps this.
    """

    def __init__(self, feat_in, conv_channels=(32, 32), conv_kernel=((41, 11), (21, 11)),
                 conv_stride=((2, 2), (2, 1)), conv_padding=((20, 5), (10, 5)), rnn_type="lstm",
                 rnn_hidden_size=1024, rnn_layers=5, bidirectional=True, lookahead_context=20, output_norm=True,
                 placement=None, name=None):
        super().__init__(placement=placement, name=name)
        self._feat_in = feat_in
        self.net = DeepSpeech2Net(feat_in, conv_channels, conv_kernel, conv_stride, conv_padding, rnn_type,
                                  rnn_hidden_size, rnn_layers, bidirectional, lookahead_context, output_norm)

    @property
    def out_channels(self):
        """Channels of the encoded output (``rnn_hidden_size``)."""
        return self.net.out_channels

    @property
    def total_stride(self):
        """Input frames per encoded frame (product of the convolutions' time strides)."""
        return self.net.total_stride

    def encoded_lengths(self, lengths):
        """The ``encoded_lengths`` the forward pass returns for input frame counts ``lengths``
        (LongTensor), from the convolutions' length arithmetic alone: no features needed."""
        return self.net.encoded_lengths(lengths)

    def forward(self, audio_signal, length):
        return self.net(audio_signal, length)
