"""Modules of a Jasper/QuartzNet model from a NeMo-style YAML config (the
sections ``AudioToMelSpectrogramPreprocessor``, ``JasperEncoder``,
``JasperDecoderForCTC``, plus ``labels`` and ``sample_rate``)."""
from .audio_preprocessing import AudioToMelSpectrogramPreprocessor
from .jasper import JasperDecoderForCTC, JasperEncoder


def modules_from_config(cfg):
    """``(preprocessor, encoder, decoder)``; the encoder's input size follows the features."""
    preprocessor = AudioToMelSpectrogramPreprocessor(
        sample_rate=cfg.get("sample_rate", 16000), **cfg.get("AudioToMelSpectrogramPreprocessor", {}))
    encoder = JasperEncoder(feat_in=preprocessor.num_features, **cfg["JasperEncoder"])
    decoder = JasperDecoderForCTC(feat_in=encoder.out_channels,
                                  num_classes=len(cfg["labels"]), **(cfg.get("JasperDecoderForCTC") or {}))
    return preprocessor, encoder, decoder
