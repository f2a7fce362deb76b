"""Modules of a Jasper/QuartzNet model from a NeMo-style YAML config (the
sections ``AudioToMelSpectrogramPreprocessor``, ``JasperEncoder``,
``JasperDecoderForCTC``, plus ``labels`` and ``sample_rate``)."""
import os

from .audio_preprocessing import AudioToMelSpectrogramPreprocessor
from .jasper import JasperDecoderForCTC, JasperEncoder

REQUIRED_KEYS = ("labels", "JasperEncoder")


class ModelConfigError(ValueError):
    """A model config cannot be read or lacks a section; the message names the file (and line)."""

    user_error = True  # one line on the command line (nemo_core.utils.cli)


def load_model_config(path):
    """The model config at ``path`` as a dict; every problem is a ``ModelConfigError`` naming the file."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    if not path:
        raise ModelConfigError("no model config given: pass --model_config FILE.yaml (see examples/asr/configs/)")
    if os.path.isdir(path):
        raise ModelConfigError(f"model config {path} is a folder; give the YAML file inside it")
    if not os.path.exists(path):
        raise ModelConfigError(f"model config {path} does not exist (configs ship in examples/asr/configs/)")
    try:
        with open(path, encoding="utf-8") as handle:
            cfg = YAML(typ="safe").load(handle)
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ModelConfigError(f"{where}: not valid YAML ({problem})") from err
    except UnicodeDecodeError as err:
        raise ModelConfigError(f"{path}: not UTF-8 text (byte {err.start}); is this a YAML config?") from err
    if not isinstance(cfg, dict):
        raise ModelConfigError(f"{path}: expected a mapping of sections, got {type(cfg).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in cfg]
    if missing:
        raise ModelConfigError(f"{path}: missing section(s) {', '.join(missing)} of a Jasper/QuartzNet config")
    return cfg


def modules_from_config(cfg):
    """``(preprocessor, encoder, decoder)``; the encoder's input size follows the features."""
    preprocessor = AudioToMelSpectrogramPreprocessor(
        sample_rate=cfg.get("sample_rate", 16000), **cfg.get("AudioToMelSpectrogramPreprocessor", {}))
    encoder = JasperEncoder(feat_in=preprocessor.num_features, **cfg["JasperEncoder"])
    decoder = JasperDecoderForCTC(feat_in=encoder.out_channels,
                                  num_classes=len(cfg["labels"]), **(cfg.get("JasperDecoderForCTC") or {}))
    return preprocessor, encoder, decoder
