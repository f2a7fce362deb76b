#!/usr/bin/env python
"""Export Jasper/QuartzNet from NGC-format checkpoints to ONNX (or TorchScript).

One graph, audio -> log-probs (features via the convolution STFT)::

    python scripts/export_jasper_to_onnx.py --config quartznet15x5.yaml \\
        --encoder JasperEncoder-STEP-247400.pt --decoder JasperDecoderForCTC-STEP-247400.pt --output qn.onnx

``--features_input`` exports encoder + decoder only, taking mel features and
their lengths. NeMo 0.x's form writes the encoder and the decoder as two
ONNX files (encoder: features (B, D, T) and lengths -> encoded, encoded
lengths; decoder: encoded -> log-probs), e.g. for TensorRT::

    python scripts/export_jasper_to_onnx.py --config quartznet15x5.yaml \\
        --nn_encoder JasperEncoder-STEP-247400.pt --nn_decoder JasperDecoderForCTC-STEP-247400.pt \\
        --onnx_encoder encoder.onnx --onnx_decoder decoder.onnx

Both forms can be combined. Every file records the weights' hash, the
checkpoint files and the model config it was exported from; ``nemo-transcribe
--model_path`` refuses a file exported from other weights or another config.
One line per file written is printed: path, size, what it holds.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from nemo_core.utils.cli import UserError, add_debug_flag, one_line_errors, require  # noqa: E402

PROG = "export_jasper_to_onnx.py"


def build_parser():
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="model config YAML (labels, JasperEncoder, ...)")
    parser.add_argument("--encoder", "--nn_encoder", dest="encoder", required=True,
                        help="JasperEncoder checkpoint (a plain state_dict, NGC format)")
    parser.add_argument("--decoder", "--nn_decoder", dest="decoder", required=True,
                        help="JasperDecoderForCTC checkpoint")
    parser.add_argument("--output", help="one graph: audio (or features) -> log-probs")
    parser.add_argument("--format", choices=["onnx", "torchscript"], default="onnx", help="format of --output")
    parser.add_argument("--features_input", action="store_true", help="--output takes mel features, not audio")
    parser.add_argument("--onnx_encoder", help="NeMo 0.x form: the encoder alone, as ONNX")
    parser.add_argument("--onnx_decoder", help="NeMo 0.x form: the decoder alone, as ONNX")
    parser.add_argument("--opset", type=int, default=17)
    add_debug_flag(parser)
    return parser


def _restore(module, path, flag, config):
    from nemo_core.neural_module import StateDictMismatchError

    try:
        module.restore_from(path)
    except StateDictMismatchError as err:
        counts = [f"{len(keys)} {what}" for what, keys in (("missing", err.missing), ("unexpected", err.unexpected),
                                                            ("mis-shaped", err.mis_shaped)) if keys]
        example = ""
        if err.mis_shaped:
            key, got, want = err.mis_shaped[0]
            example = f", e.g. {key}: checkpoint {tuple(got)} vs model {tuple(want)}"
        elif err.missing or err.unexpected:
            example = f", e.g. {(err.missing or err.unexpected)[0]}"
        raise UserError(f"{flag} {path} does not fit the {type(module).__name__} built from {config} "
                        f"({', '.join(counts)} keys{example}); pass the checkpoint trained with this config") from err


def _size(path):
    size = os.path.getsize(path)
    return f"{size / 2 ** 20:.1f} MB" if size >= 2 ** 20 else f"{size / 2 ** 10:.1f} KB"


def export(args):
    """Export what ``args`` asks for; returns ``[(path, description)]`` of the files written."""
    import torch

    import nemo_core
    from nemo_core import runtime
    from nemo_core.deployment import deployment_export
    from nemo_asr.export import ModelIdentity, export_pipeline
    from nemo_asr.inference import Recognizer
    from nemo_asr.model_config import load_model_config

    if not (args.output or args.onnx_encoder or args.onnx_decoder):
        raise UserError("nothing to write: pass --output FILE, or --onnx_encoder FILE and/or --onnx_decoder FILE")
    if args.format == "onnx" or args.onnx_encoder or args.onnx_decoder:
        require("onnx", "deploy", "ONNX export")
    for flag, path in (("--encoder", args.encoder), ("--decoder", args.decoder)):
        if not os.path.isfile(path):
            raise UserError(f"{flag} {path} does not exist" + (" (it is a folder)" if os.path.isdir(path) else ""))
    cfg = load_model_config(args.config)
    runtime.set_defaults(nemo_core.DeviceType.CPU, None)  # build the modules on the CPU; export traces there
    recognizer = Recognizer(cfg)
    _restore(recognizer.encoder, args.encoder, "--encoder", args.config)
    _restore(recognizer.decoder, args.decoder, "--decoder", args.config)
    source = f"{os.path.abspath(args.encoder)}, {os.path.abspath(args.decoder)}"
    identity = ModelIdentity(recognizer.labels, recognizer.preprocessor, recognizer.encoder, recognizer.decoder,
                             source)
    checkpoints = f"{os.path.basename(args.encoder)} + {os.path.basename(args.decoder)}"
    written = []
    if args.output:
        kind = "features" if args.features_input else "audio"
        export_pipeline(recognizer.preprocessor, recognizer.encoder, recognizer.decoder, args.output, args.format,
                        opset=args.opset, features_input=args.features_input, metadata=identity.metadata(kind))
        source_axes = "mel features (B, D, T)" if args.features_input else "audio (B, samples)"
        written.append((args.output, f"{args.format}: {source_axes} + length -> log_probs (B, T, "
                                     f"{len(recognizer.labels) + 1}) + encoded_lengths, from {checkpoints}"))
    features = recognizer.preprocessor.num_features
    if args.onnx_encoder:
        deployment_export(recognizer.encoder, args.onnx_encoder, nemo_core.DeploymentFormat.ONNX,
                          torch.zeros(1, features, 256), opset=args.opset, metadata=identity.metadata("features"))
        written.append((args.onnx_encoder, f"onnx: JasperEncoder, audio_signal (B, {features}, T) + length -> "
                                           f"outputs (B, {recognizer.encoder.out_channels}, T/"
                                           f"{recognizer.encoder.total_stride}) + encoded_lengths, "
                                           f"from {os.path.basename(args.encoder)}"))
    if args.onnx_decoder:
        channels = recognizer.encoder.out_channels
        deployment_export(recognizer.decoder, args.onnx_decoder, nemo_core.DeploymentFormat.ONNX,
                          torch.zeros(1, channels, 128), opset=args.opset, metadata=identity.metadata("encoded"))
        written.append((args.onnx_decoder, f"onnx: JasperDecoderForCTC, encoder_output (B, {channels}, T) -> "
                                           f"output log-probs (B, T, {len(recognizer.labels) + 1}), "
                                           f"from {os.path.basename(args.decoder)}"))
    return written


def main(argv=None):
    args = build_parser().parse_args(argv)
    with one_line_errors(PROG, args.debug):
        written = export(args)
        for path, what in written:
            print(f"wrote {path} ({_size(path)}): {what}")
        return [path for path, _ in written]


if __name__ == "__main__":
    main()
