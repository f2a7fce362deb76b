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
    if args.features_input:
        import torch

        from nemo_core.deployment import export_onnx
        from nemo_asr.parts.jasper import ctc_log_probs, run_blocks

        class EncoderDecoder(torch.nn.Module):
            def __init__(self, encoder, decoder):
                super().__init__()
                self.blocks, self.decoder_layers = encoder.encoder, decoder.decoder_layers

            def forward(self, audio_signal, length):
                encoded, encoded_len = run_blocks(self.blocks, audio_signal, length)
                return ctc_log_probs(self.decoder_layers, encoded), encoded_len

        model = EncoderDecoder(recognizer.encoder, recognizer.decoder).eval()
        features = torch.randn(2, recognizer.preprocessor.num_features, 200)
        lengths = torch.tensor([200, 150])
        with torch.no_grad():
            if args.format == "torchscript":
                torch.jit.trace(model, (features, lengths), check_trace=False).save(args.output)
            else:
                export_onnx(model, (features, lengths), args.output, ["audio_signal", "length"],
                            ["log_probs", "encoded_lengths"],
                            {"audio_signal": {0: "batch", 2: "frames"}, "length": {0: "batch"},
                             "log_probs": {0: "batch", 1: "frames"}, "encoded_lengths": {0: "batch"}}, args.opset)
    else:
        export_pipeline(recognizer.preprocessor, recognizer.encoder, recognizer.decoder, args.output,
                        args.format, opset=args.opset)
    nf.logger.info("Wrote %s (%.1f MB)", args.output, os.path.getsize(args.output) / 2 ** 20)
    return args.output


if __name__ == "__main__":
    main()
