"""nemo_asr: speech recognition with Jasper/QuartzNet CTC models on nemo_core.

Module names and arguments follow NeMo 0.x, so its tutorial scripts run with
``nemo.core`` replaced by ``nemo_core``, and NGC checkpoints load.
"""
__version__ = "0.1.0"

from . import helpers  # noqa: E402
from .audio_preprocessing import (  # noqa: E402
    AudioPreprocessing,
    AudioToMelSpectrogramPreprocessor,
    AudioToMFCCPreprocessor,
    AudioToSpectrogramPreprocessor,
    CropOrPadSpectrogramAugmentation,
    MultiplyBatch,
    SpectrogramAugmentation,
    TimeStretchAugmentation,
)
from .beam_search_decoder import BeamSearchDecoderWithLM  # noqa: E402  (pyctcdecode/kenlm load on construction)
from .ctc_graph import CTCGraph, ctc_graph  # noqa: E402
from .data_layer import AudioToTextDataLayer, TranscriptDataLayer  # noqa: E402
from .deepspeech2 import DeepSpeech2Encoder  # noqa: E402
from .greedy_ctc_decoder import GreedyCTCDecoder  # noqa: E402
from .jasper import JasperDecoderForCTC, JasperEncoder  # noqa: E402
from .losses import CTCLossNM  # noqa: E402
from .metrics import char_error_rate, word_error_rate  # noqa: E402
from .parts.audio import AudioLoadError, NonFiniteSamplesError  # noqa: E402
from .parts.data_check import DroppedUtterance, UnusableUtterancesError  # noqa: E402
from .parts.manifest import ManifestError  # noqa: E402
