"""The whole acoustic pipeline as one exportable graph:
(audio, audio length) -> (log-probs, encoded lengths).

Feature extraction calls the preprocessor's own ``filterbank_features`` with
the convolution STFT (``ConvSTFT``), which exports to ONNX, and no time
padding (``pad_to=0``), which inference does not need.

Every file written here carries the identity of the model it holds
(``ModelIdentity.metadata()``: a hash of the weights, the checkpoint files
they came from, a hash of the model config), so a runner can refuse a file
exported from other weights or another config (``verify_model_file``), and
``cached_export`` reuses a file exported earlier from the same model.
"""
import hashlib
import json
import logging
import os

import torch

from nemo_core.deployment import export_onnx, save_torchscript, write_atomic
from nemo_core.utils.cli import UserError, require

from .parts.features import FilterbankFeatures, filterbank_features

_logger = logging.getLogger("nemo_asr")

PREFIX = "nemo_asr."
WEIGHTS_KEY, CHECKPOINT_KEY = PREFIX + "weights_sha256", PREFIX + "checkpoint"
CONFIG_HASH_KEY, CONFIG_KEY = PREFIX + "config_sha256", PREFIX + "config"
INPUT_KEY, LABELS_KEY = PREFIX + "input", PREFIX + "labels"
# constructor arguments that do not change an exported graph (training-time only, or forced by the export)
_NOT_IN_GRAPH = {"placement", "name", "dither", "pad_to", "init_mode"}


class EncoderDecoder(torch.nn.Module):
    """Plain torch module: (features, frames) -> (log-probs, encoded lengths).

    Runs the encoder and decoder modules themselves (shared, not copied), so
    any encoder with JasperEncoder's ports serves."""

    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.eval()

    def forward(self, audio_signal, length):
        encoded, encoded_len = self.encoder(audio_signal=audio_signal, length=length)
        return self.decoder(encoder_output=encoded), encoded_len


class PipelineFeatures(torch.nn.Module):
    """The preprocessor's front end with the export-friendly options: the convolution
    STFT and no time padding. It calls the same ``filterbank_features`` as the
    preprocessor, with the preprocessor's configuration (shared, not copied)."""

    def __init__(self, featurizer):
        super().__init__()
        if not isinstance(featurizer, FilterbankFeatures):
            raise ValueError("Only mel/spectrogram preprocessors can be exported in a pipeline")
        self.featurizer = featurizer
        self.stft = featurizer.conv_stft()

    def forward(self, audio_signal, length):
        # features in float32 under any autocast, as the preprocessor computes them in training
        with torch.autocast(device_type=audio_signal.device.type, enabled=False):
            return filterbank_features(audio_signal.float(), length,
                                       **self.featurizer.options(stft=self.stft, pad_to=0))


class AcousticPipeline(torch.nn.Module):
    """Plain torch module: features + encoder + decoder, in eval mode: the one inference path,
    run eagerly by the pytorch backend and exported for the others."""

    def __init__(self, preprocessor, encoder, decoder):
        super().__init__()
        self.features = PipelineFeatures(preprocessor.featurizer)  # ONNX scope "/features": kept float by int8
        self.model = EncoderDecoder(encoder, decoder)
        self.eval()

    def forward(self, audio_signal, length):
        return self.model(*self.features(audio_signal, length))


# ---------------------------------------------------------------- identity
def package_version():
    try:
        from importlib.metadata import version

        return version("nemo-typed-modules")
    except Exception:  # noqa: BLE001 - running from a source tree that was never installed
        import nemo_core

        return nemo_core.__version__


def weights_sha256(modules):
    """Content hash of the modules' state_dicts (names, dtypes, shapes, bytes), in order.

    The same weights give the same hash however they were loaded
    (``restore_from``, ``restore_modules``, a DDP-prefixed file...).
    """
    digest = hashlib.sha256()
    for index, module in enumerate(modules):
        for key, value in module.state_dict().items():
            if not torch.is_tensor(value):
                continue
            data = value.detach().to("cpu").contiguous().reshape(-1)
            digest.update(f"{index}:{key}:{value.dtype}:{tuple(value.shape)};".encode())
            digest.update(data.view(torch.uint8).numpy() if data.numel() else b"")
    return digest.hexdigest()


def graph_config(labels, preprocessor, encoder, decoder):
    """The parts of a model config an exported graph depends on (JSON-able)."""
    def clean(config):
        return {k: v for k, v in config.items() if k not in _NOT_IN_GRAPH}

    return {"labels": list(labels), "preprocessor": clean(preprocessor.init_config),
            "encoder": clean(encoder.init_config), "decoder": clean(decoder.init_config)}


def _sha256_json(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


class ModelIdentity:
    """What an exported file must match: weights, their source, and the graph's config."""

    def __init__(self, labels, preprocessor, encoder, decoder, source=None):
        self.weights = weights_sha256([encoder, decoder])
        self.config = graph_config(labels, preprocessor, encoder, decoder)
        self.config_sha256 = _sha256_json(self.config)
        self.labels = list(labels)
        self.source = source or "weights in memory (no checkpoint files recorded)"

    @staticmethod
    def describe_checkpoint(loaded):
        """``step N: file, file`` for a ``nemo_core.checkpointing.LoadedCheckpoint``."""
        files = ", ".join(loaded.set.files[n] for n in sorted(loaded.set.files))
        return f"step {loaded.step} in {loaded.folder} ({files})"

    def metadata(self, input_kind="audio"):
        """``{str: str}`` to store in an exported file."""
        return {WEIGHTS_KEY: self.weights, CHECKPOINT_KEY: self.source, CONFIG_HASH_KEY: self.config_sha256,
                CONFIG_KEY: json.dumps(self.config, sort_keys=True, default=str),
                LABELS_KEY: json.dumps(self.labels), INPUT_KEY: input_kind,
                PREFIX + "version": package_version(), PREFIX + "torch": torch.__version__}


# ---------------------------------------------------------------- export
def export_pipeline(preprocessor, encoder, decoder, output, d_format="onnx", opset=17, features_input=False,
                    metadata=None):
    """Export to ONNX (dynamic batch and time) or TorchScript; from audio, or
    with ``features_input`` from features (encoder + decoder only).

    ``metadata`` (``{str: str}``, e.g. ``ModelIdentity.metadata()``) is stored
    in the file; the file is written under a temporary name and renamed.
    """
    if d_format not in ("onnx", "torchscript"):
        raise ValueError(f"d_format must be 'onnx' or 'torchscript', got {d_format!r}")
    if features_input:
        model = EncoderDecoder(encoder, decoder).to("cpu")
        example = (torch.randn(2, preprocessor.num_features, 200), torch.tensor([200, 150]))
        time_axis = {0: "batch", 2: "frames"}
    else:
        model = AcousticPipeline(preprocessor, encoder, decoder).to("cpu")
        example = (torch.randn(2, 32000) * 0.1, torch.tensor([32000, 24000]))
        time_axis = {0: "batch", 1: "samples"}
    with torch.no_grad():
        if d_format == "torchscript":
            return save_torchscript(torch.jit.trace(model, example, check_trace=False), output, metadata)
        return export_onnx(model, example, output, ["audio_signal", "length"], ["log_probs", "encoded_lengths"],
                           {"audio_signal": time_axis, "length": {0: "batch"},
                            "log_probs": {0: "batch", 1: "frames"}, "encoded_lengths": {0: "batch"}}, opset,
                           metadata)


def add_onnx_metadata(path, metadata):
    """Store ``metadata`` in the ONNX file ``path`` (e.g. after quantisation, which drops it)."""
    from nemo_core.deployment import set_onnx_metadata

    onnx = require("onnx", "deploy", "Writing ONNX metadata")
    proto = set_onnx_metadata(onnx.load(path), metadata)
    return write_atomic(path, lambda tmp: onnx.save(proto, tmp))


def export_cache_dir():
    """``$NEMO_CACHE_DIR``, else ``~/.cache/nemo_asr/exports``."""
    return os.path.expanduser(os.environ.get("NEMO_CACHE_DIR") or os.path.join("~", ".cache", "nemo_asr", "exports"))


def cache_key(identity, d_format, opset=17):
    return _sha256_json({"weights": identity.weights, "config": identity.config_sha256, "format": d_format,
                         "opset": opset, "version": package_version(), "torch": torch.__version__})


def cached_export(preprocessor, encoder, decoder, identity, d_format, cache_dir=None, opset=17):
    """``(path, reused)``: the export of this model from ``cache_dir``, written there first if missing.

    The name is a hash of the weights, the graph's config, the format, the
    opset, this package's and torch's versions; the file is written under a
    temporary name and renamed, so concurrent runs never read half a file.
    """
    folder = cache_dir or export_cache_dir()
    os.makedirs(folder, exist_ok=True)
    suffix = "onnx" if d_format == "onnx" else "ts"
    path = os.path.join(folder, f"pipeline-{cache_key(identity, d_format, opset)[:32]}.{suffix}")
    if os.path.isfile(path):
        _logger.info("Reusing the cached export %s", path)
        return path, True
    _logger.info("Exporting the model (%s) to the cache: %s", d_format, path)
    export_pipeline(preprocessor, encoder, decoder, path, d_format, opset, metadata=identity.metadata("audio"))
    return path, False


# ---------------------------------------------------------------- checks
class ModelFileMismatchError(UserError):
    """An exported model file does not hold the model loaded from the checkpoint/config."""


def _config_differences(stored, current):
    try:
        stored = json.loads(stored)
    except (TypeError, ValueError):
        return ["config"]
    return [section for section in sorted(set(stored) | set(current))
            if json.dumps(stored.get(section), sort_keys=True, default=str)
            != json.dumps(current.get(section), sort_keys=True, default=str)] or ["config"]


def verify_model_file(path, metadata, identity, probe=None, check_weights=True):
    """Refuse ``path`` when it was not exported from ``identity``'s weights and config.

    ``metadata``: what the file stores (``{}`` when it was exported elsewhere);
    then only its structure can be checked: ``probe()`` runs it on a short
    silence and returns ``(input names, log-probs)``; the number of classes
    must be ``len(labels) + 1`` and the inputs (audio_signal, length).
    ``check_weights=False`` (no checkpoint was loaded: the file's own weights
    are the model) checks the config only. Returns True when the identity was
    verified, False when only the structure was.
    """
    if WEIGHTS_KEY in metadata:
        problems = []
        if metadata.get(INPUT_KEY, "audio") != "audio":
            raise ModelFileMismatchError(
                f"Model file {path} takes {metadata[INPUT_KEY]}, not audio (an encoder-only, decoder-only or "
                f"--features_input export), but the runner feeds audio; export the whole pipeline "
                f"(scripts/export_jasper_to_onnx.py --output FILE), or leave out --model_path")
        if check_weights and metadata[WEIGHTS_KEY] != identity.weights:
            problems.append(f"its weights (sha256 {metadata[WEIGHTS_KEY][:12]}) come from "
                            f"{metadata.get(CHECKPOINT_KEY, 'an unknown checkpoint')}, the loaded weights (sha256 "
                            f"{identity.weights[:12]}) from {identity.source}")
        if metadata.get(CONFIG_HASH_KEY) != identity.config_sha256:
            differ = _config_differences(metadata.get(CONFIG_KEY), identity.config)
            problems.append(f"it was exported with another model config ({', '.join(differ)} differ)")
        if problems:
            raise ModelFileMismatchError(
                f"Model file {path} does not hold the model loaded from the checkpoint and model config: "
                f"{'; '.join(problems)}; re-export it from these (scripts/export_jasper_to_onnx.py) or leave out "
                f"--model_path to export automatically")
        return True
    expected_classes = len(identity.labels) + 1
    names, log_probs = probe() if probe is not None else (None, None)
    if names is not None and list(names) != ["audio_signal", "length"]:
        raise ModelFileMismatchError(f"Model file {path} has inputs ({', '.join(names)}) but the runner feeds "
                                     f"(audio_signal, length); export it with scripts/export_jasper_to_onnx.py")
    if log_probs is not None and log_probs.shape[-1] != expected_classes:
        raise ModelFileMismatchError(
            f"Model file {path} gives {log_probs.shape[-1]} output classes but the model config's labels give "
            f"{expected_classes} ({len(identity.labels)} labels + blank); it was exported from another model: "
            f"re-export it from this checkpoint, or leave out --model_path")
    _logger.warning("Model file %s has no nemo_asr identity (exported elsewhere): its inputs and %d classes fit, "
                    "but whether it holds %s and this model config could not be verified", path, expected_classes,
                    f"the weights loaded from {identity.source}" if check_weights else "the intended weights")
    return False
