"""Modules of a Jasper/QuartzNet model from a NeMo-style YAML config.

Sections: ``AudioToMelSpectrogramPreprocessor`` (or NeMo 0.8's
``AudioPreprocessing``, read the same way; not both), one encoder:
``JasperEncoder`` (Jasper/QuartzNet) or ``DeepSpeech2Encoder``, then
``JasperDecoderForCTC``, ``SpectrogramAugmentation``, ``AudioToTextDataLayer``
(with ``train``/``eval`` subsections), plus ``model``, ``labels`` and
``sample_rate``. NeMo 0.x configs also define YAML anchors in top-level
``dropout``/``repeat``/``separable`` keys, and a training run's
``<exp>/config.yaml`` adds ``args``; those are accepted and unused.
Every other top-level key, and every key a section's module does not take,
is a ``ModelConfigError`` naming the file, the section and the key, so a
misspelt setting cannot be silently ignored.

``load_model_config`` also knows the config names of the NeMo 0.x tutorial
(``ALIASES``): ``jasper15x5SEP.yaml`` there is the QuartzNet 15x5 published
on NGC, shipped here as ``quartznet15x5.yaml``; a path ending in that name
that does not exist loads the shipped file (with a warning naming it).
"""
import inspect
import logging
import os

from .audio_preprocessing import (
    AudioPreprocessing, AudioToMelSpectrogramPreprocessor, SpectrogramAugmentation,
)
from .data_layer import AudioToTextDataLayer
from .deepspeech2 import DeepSpeech2Encoder
from .jasper import JasperDecoderForCTC, JasperEncoder

_logger = logging.getLogger("nemo_asr")

REQUIRED_KEYS = ("labels",)
ENCODER_SECTIONS = ("JasperEncoder", "DeepSpeech2Encoder")  # a config has exactly one
SHIPPED_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               "examples", "asr", "configs")
# NeMo 0.x names -> the config shipped here with the same layout (NGC checkpoints load into it)
ALIASES = {
    # the NeMo 0.x tutorial's "jasper15x5SEP.yaml" is QuartzNet 15x5: the same 17 blocks (separable,
    # kernels 33..87), whose NGC checkpoints are "15x5SEP/JasperEncoder-STEP-247400.pt"
    "jasper15x5SEP.yaml": "quartznet15x5.yaml",
}
SCALAR_KEYS = ("model", "sample_rate", "labels")
NEMO_ANCHOR_KEYS = ("dropout", "repeat", "separable")  # NeMo 0.x: `dropout: &drop 0.0` etc.
RECORD_KEYS = ("args",)  # examples/asr/jasper.py's <exp>/config.yaml: the run's command line, not model settings
PREPROCESSOR_SECTIONS = ("AudioToMelSpectrogramPreprocessor", "AudioPreprocessing")
SECTION_MODULES = {
    "AudioToMelSpectrogramPreprocessor": AudioToMelSpectrogramPreprocessor,
    "AudioPreprocessing": AudioPreprocessing,
    "SpectrogramAugmentation": SpectrogramAugmentation,
    "JasperEncoder": JasperEncoder,
    "DeepSpeech2Encoder": DeepSpeech2Encoder,
    "JasperDecoderForCTC": JasperDecoderForCTC,
    "AudioToTextDataLayer": AudioToTextDataLayer,
}
# arguments the scripts set themselves; a config may repeat them only with the value they get
_DERIVED = {
    "AudioToMelSpectrogramPreprocessor": ("sample_rate",),
    "AudioPreprocessing": ("sample_rate",),
    "JasperEncoder": ("feat_in",),
    "DeepSpeech2Encoder": ("feat_in",),
    "JasperDecoderForCTC": ("feat_in", "num_classes"),
    "AudioToTextDataLayer": ("sample_rate",),
}
_NOT_CONFIGURABLE = {
    "AudioToTextDataLayer": ("manifest_filepath", "labels", "batch_size"),
}
_DATA_LAYER_SPLITS = ("train", "eval")


class ModelConfigError(ValueError):
    """A model config cannot be read or lacks a section; the message names the file (and line)."""

    user_error = True  # one line on the command line (nemo_core.utils.cli)


def resolve_config_path(path):
    """``path``, or the shipped config a NeMo 0.x name (``ALIASES``) stands for when ``path`` does not exist.

    The substitution is logged (warning), naming both files.
    """
    target = ALIASES.get(os.path.basename(path))
    if os.path.exists(path) or target is None:
        return path
    candidate = os.path.join(SHIPPED_CONFIGS, target)
    if not os.path.isfile(candidate):
        return path
    _logger.warning("model config %s does not exist; %s is NeMo 0.x's name for the model shipped as %s: "
                    "loading %s", path, os.path.basename(path), target, candidate)
    return candidate


def load_model_config(path):
    """The model config at ``path`` as a dict; every problem is a ``ModelConfigError`` naming the file.

    A NeMo 0.x name (``jasper15x5SEP.yaml``) that does not exist loads the
    matching shipped config (see ``resolve_config_path``). The sections and
    their keys are checked (``check_model_config``).
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    if not path:
        raise ModelConfigError("no model config given: pass --model_config FILE.yaml (see examples/asr/configs/)")
    path = resolve_config_path(os.fspath(path))
    if os.path.isdir(path):
        raise ModelConfigError(f"model config {path} is a folder; give the YAML file inside it")
    if not os.path.exists(path):
        known = ", ".join(sorted(ALIASES))
        raise ModelConfigError(f"model config {path} does not exist (configs ship in examples/asr/configs/; "
                               f"NeMo 0.x names known: {known})")
    try:
        with open(path, encoding="utf-8-sig") as handle:
            cfg = YAML(typ="safe").load(handle)
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ModelConfigError(f"{where}: not valid YAML ({problem})") from err
    except UnicodeDecodeError as err:
        raise ModelConfigError(f"{path}: not UTF-8 text (byte {err.start}); is this a YAML config?") from err
    except PermissionError as err:
        raise ModelConfigError(f"model config {path}: permission denied; make it readable") from err
    if not isinstance(cfg, dict):
        raise ModelConfigError(f"{path}: expected a mapping of sections, got {type(cfg).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in cfg]
    if not any(section in cfg for section in ENCODER_SECTIONS):
        missing.append(" or ".join(ENCODER_SECTIONS))
    if missing:
        raise ModelConfigError(f"{path}: missing section(s) {', '.join(missing)} of a Jasper/QuartzNet/"
                               "DeepSpeech2 config")
    check_model_config(cfg, path)
    return cfg


def _accepted_arguments(module_cls):
    """Constructor arguments of ``module_cls`` a config section may set."""
    skip = {"self", "placement", "name"}
    return [name for name, p in inspect.signature(module_cls.__init__).parameters.items()
            if name not in skip and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _check_section_keys(section, keys, module_cls, where, label):
    accepted = _accepted_arguments(module_cls)
    blocked = _NOT_CONFIGURABLE.get(section, ())
    for key in keys:
        if key in blocked:
            raise ModelConfigError(f"{where}: {label} sets {key!r}, which the script sets itself (from its "
                                   "command line or the labels); remove it from the config")
        if key not in accepted:
            raise ModelConfigError(f"{where}: unknown key {key!r} in section {label} ({module_cls.__name__} "
                                   f"takes: {', '.join(a for a in accepted if a not in blocked)})")


def check_model_config(cfg, where="model config"):
    """Raise ``ModelConfigError`` naming ``where`` and the key for an unknown top-level key, an unknown
    key inside a section, a non-mapping section, or both preprocessor sections at once."""
    known = set(SCALAR_KEYS) | set(NEMO_ANCHOR_KEYS) | set(RECORD_KEYS) | set(SECTION_MODULES)
    for key in cfg:
        if key not in known:
            raise ModelConfigError(f"{where}: unknown top-level key {key!r} (known sections: "
                                   f"{', '.join(SECTION_MODULES)}; settings: {', '.join(SCALAR_KEYS)})")
    present = [s for s in PREPROCESSOR_SECTIONS if s in cfg]
    if len(present) > 1:
        raise ModelConfigError(f"{where}: both {present[0]} and {present[1]} are given; they are the same "
                               f"preprocessor (NeMo 0.8 called it AudioPreprocessing): keep one")
    encoders = [s for s in ENCODER_SECTIONS if s in cfg]
    if len(encoders) > 1:
        raise ModelConfigError(f"{where}: both {encoders[0]} and {encoders[1]} are given; a model has one "
                               "encoder: keep one")
    for section, module_cls in SECTION_MODULES.items():
        body = cfg.get(section)
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ModelConfigError(f"{where}: section {section} must be a mapping of {module_cls.__name__} "
                                   f"arguments, got {type(body).__name__}")
        if section == "AudioToTextDataLayer":
            for split in _DATA_LAYER_SPLITS:
                sub = body.get(split)
                if sub is not None and not isinstance(sub, dict):
                    raise ModelConfigError(f"{where}: {section}.{split} must be a mapping, got {type(sub).__name__}")
                _check_section_keys(section, sub or {}, module_cls, where, f"{section}.{split}")
            keys = [k for k in body if k not in _DATA_LAYER_SPLITS]
        else:
            keys = list(body)
        _check_section_keys(section, keys, module_cls, where, section)
    _check_sample_rates(cfg, where)


def _check_sample_rates(cfg, where):
    """NeMo 0.x repeats ``sample_rate`` inside sections; it must agree with the top-level one."""
    top = cfg.get("sample_rate", 16000)
    places = [(s, cfg.get(s) or {}) for s in PREPROCESSOR_SECTIONS]
    layer = cfg.get("AudioToTextDataLayer") or {}
    places += [("AudioToTextDataLayer", layer)]
    places += [(f"AudioToTextDataLayer.{split}", layer.get(split) or {}) for split in _DATA_LAYER_SPLITS]
    for label, body in places:
        if "sample_rate" in body and body["sample_rate"] != top:
            raise ModelConfigError(f"{where}: {label}.sample_rate is {body['sample_rate']} but sample_rate is "
                                   f"{top}; keep one sample rate (the top-level one)")


def _derived(section, body, values, where):
    """``body`` without the keys the model sets itself; a repeated one must equal its value."""
    body = dict(body or {})
    for key in _DERIVED.get(section, ()):
        if key in body:
            given = body.pop(key)
            if given != values[key]:
                origin = "the labels" if key == "num_classes" else "the module before it"
                raise ModelConfigError(f"{where}: {section}.{key} is {given!r} but the model needs "
                                       f"{values[key]!r} (set from {origin}); remove the key or fix it")
    return body


def preprocessor_section(cfg):
    """``(section name, arguments)`` of the preprocessor: ``AudioToMelSpectrogramPreprocessor`` or
    NeMo 0.8's ``AudioPreprocessing``; ``(None, {})`` when neither is given."""
    for section in PREPROCESSOR_SECTIONS:
        if section in cfg:
            return section, dict(cfg[section] or {})
    return None, {}


def encoder_section(cfg):
    """``(section name, encoder class)`` of the config's encoder (``ENCODER_SECTIONS``)."""
    for section in ENCODER_SECTIONS:
        if section in cfg:
            return section, SECTION_MODULES[section]
    raise ModelConfigError(f"model config has no encoder section ({' or '.join(ENCODER_SECTIONS)})")


def modules_from_config(cfg, source="model config"):
    """``(preprocessor, encoder, decoder)``; the encoder's input size follows the features.

    The encoder is the one the config names (``JasperEncoder`` or ``DeepSpeech2Encoder``).

    ``source`` (the file the config came from) names it in errors.
    """
    check_model_config(cfg, source)
    sample_rate = cfg.get("sample_rate", 16000)
    section, arguments = preprocessor_section(cfg)
    arguments = _derived(section, arguments, {"sample_rate": sample_rate}, source)
    if section == "AudioPreprocessing":
        preprocessor = AudioPreprocessing(sample_rate=sample_rate, **arguments)
    else:
        preprocessor = AudioToMelSpectrogramPreprocessor(sample_rate=sample_rate, **arguments)
    section, encoder_cls = encoder_section(cfg)
    encoder_args = _derived(section, cfg[section], {"feat_in": preprocessor.num_features}, source)
    encoder = encoder_cls(feat_in=preprocessor.num_features, **encoder_args)
    decoder_args = _derived("JasperDecoderForCTC", cfg.get("JasperDecoderForCTC"),
                            {"feat_in": encoder.out_channels, "num_classes": len(cfg["labels"])}, source)
    decoder = JasperDecoderForCTC(feat_in=encoder.out_channels, num_classes=len(cfg["labels"]), **decoder_args)
    return preprocessor, encoder, decoder


def data_layer_arguments(cfg, split):
    """``AudioToTextDataLayer`` arguments of ``split`` (``"train"`` or ``"eval"``): the section's
    shared keys overridden by its ``split`` subsection, without ``sample_rate`` (NeMo 0.x repeats it
    there; ``check_model_config`` has made sure it equals the top-level one, which scripts pass)."""
    section = dict(cfg.get("AudioToTextDataLayer") or {})
    arguments = {k: v for k, v in section.items() if k not in _DATA_LAYER_SPLITS}
    arguments.update(section.get(split) or {})
    arguments.pop("sample_rate", None)
    return arguments
