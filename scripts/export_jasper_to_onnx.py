#!/usr/bin/env python
"""Export Jasper/QuartzNet from NGC-format checkpoints to ONNX (or TorchScript).

    python scripts/export_jasper_to_onnx.py --config quartznet15x5.yaml \\
        --encoder JasperEncoder-STEP-247400.pt --decoder JasperDecoderForCTC-STEP-247400.pt --output qn.onnx

By default the graph runs from audio and length to log-probs (features via
the convolution STFT); ``--features_input`` exports encoder + decoder only,
taking mel features and their lengths.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--encoder", required=True)
    parser.add_argument("--decoder", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    parser.add_argument("--features_input", action="store_true")
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args(argv)
    from ruamel.yaml import YAML

    import nemo_core
    from nemo_asr.export import export_pipeline
    from nemo_asr.inference import Recognizer

    with open(args.config) as handle:
        cfg = YAML(typ="safe").load(handle)
    nf = nemo_core.NeuralModuleFactory(placement=nemo_core.DeviceType.CPU)
    recognizer = Recognizer(cfg)
    recognizer.encoder.restore_from(args.encoder)
    recognizer.decoder.restore_from(args.decoder)
    export_pipeline(recognizer.preprocessor, recognizer.encoder, recognizer.decoder, args.output, args.format,
                    opset=args.opset, features_input=args.features_input)
    nf.logger.info("Wrote %s (%.1f MB)", args.output, os.path.getsize(args.output) / 2 ** 20)
    return args.output


if __name__ == "__main__":
    main()
