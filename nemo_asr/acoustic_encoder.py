"""The ports every acoustic encoder declares, in one place.

``AcousticEncoder`` is the base of ``JasperEncoder`` and ``DeepSpeech2Encoder``:
spectrogram features ``(B, D=feat_in, T)`` and their lengths in, encoded
features ``(B, D=out_channels, T')`` and their lengths out. Everything that
consumes an encoder (the CTC head, export, serving, streaming) relies on
these ports and on ``out_channels``, ``total_stride`` and
``encoded_lengths(lengths)``, which each encoder implements.
"""
import collections

from nemo_core import EncodedRepresentation, LengthsType, NeuralType, SpectrogramType, TrainableNM


class AcousticEncoder(TrainableNM):
    """Typed ports of an encoder over ``self._feat_in`` input features and ``self.out_channels`` outputs."""

    @property
    def input_ports(self):
        return collections.OrderedDict(
            audio_signal=NeuralType(("B", ("D", self._feat_in), "T"), SpectrogramType()),
            length=NeuralType(("B",), LengthsType()),
        )

    @property
    def output_ports(self):
        return collections.OrderedDict(
            outputs=NeuralType(("B", ("D", self.out_channels), "T"), EncodedRepresentation()),
            encoded_lengths=NeuralType(("B",), LengthsType()),
        )

    @property
    def out_channels(self):
        """Channels of the encoded output."""
        raise NotImplementedError

    @property
    def total_stride(self):
        """Input frames per encoded frame."""
        raise NotImplementedError

    def encoded_lengths(self, lengths):
        """The ``encoded_lengths`` the forward pass returns for input frame counts ``lengths``."""
        raise NotImplementedError
