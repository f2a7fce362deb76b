"""``nemo-transcribe``: audio files or a manifest in, text out.

    nemo-transcribe --model_config quartznet15x5.yaml --load_dir checkpoints/ a.wav b.flac
    nemo-transcribe ... --manifest dev.json --output_format manifest --output hyp.json --offsets
"""
import argparse
import json
import logging
import os
import sys
import tempfile

from ruamel.yaml import YAML


def build_parser():
    parser = argparse.ArgumentParser(prog="nemo-transcribe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audio", nargs="*", help="audio files (any format libsndfile reads)")
    parser.add_argument("--manifest", help="JSON-lines manifest instead of audio files")
    parser.add_argument("--model_config", required=True)
    parser.add_argument("--load_dir", required=True, help="folder with *JasperEncoder-STEP-*.pt etc.")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--output_format", choices=["plain", "json", "manifest"], default="plain")
    parser.add_argument("--output", default="-", help="file to write (default: stdout)")
    parser.add_argument("--offsets", action="store_true", help="word start/end times in seconds")
    parser.add_argument("--backend", default="framework", choices=["framework", "pytorch", "torchscript", "onnxruntime"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--model_path", default=None, help="ONNX/TorchScript file for those backends")
    parser.add_argument("--lm_path", default=None, help="KenLM model for beam search")
    parser.add_argument("--beam_width", type=int, default=32)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--beta", type=float, default=1.0)
    return parser


def _manifest_for(files, folder):
    import soundfile as sf

    from .parts.data_prep import write_manifest

    rows = []
    for audio in files:
        if not os.path.isfile(audio):
            raise SystemExit(f"Audio file {audio} does not exist")
        try:
            duration = sf.info(audio).duration
        except Exception as err:
            raise SystemExit(f"Cannot read audio file {audio}: {err}") from err
        rows.append({"audio_filepath": os.path.abspath(audio), "duration": duration, "text": ""})
    return write_manifest(rows, os.path.join(folder, "inputs.json"))


def transcribe(argv=None):
    """Run the command line ``argv``; returns the records it wrote."""
    args = build_parser().parse_args(argv)
    if bool(args.audio) == bool(args.manifest):
        raise SystemExit("Give audio files or --manifest (one of the two)")
    logging.getLogger("nemo_core").setLevel(logging.WARNING)
    import nemo_core
    from .inference import Recognizer, beam_search
    from .parts.ctc_offsets import word_offsets

    with open(args.model_config) as handle:
        cfg = YAML(typ="safe").load(handle)
    nf = nemo_core.NeuralModuleFactory()
    nf.logger.setLevel(logging.WARNING)
    recognizer = Recognizer(cfg)
    with tempfile.TemporaryDirectory() as folder:
        runner = None
        if args.backend != "framework":
            runner = recognizer.load(args.load_dir).runner(args.backend, args.precision, args.model_path, folder)
        manifest = args.manifest or _manifest_for(args.audio, folder)
        result = recognizer.run(nf, manifest, args.batch_size, args.load_dir, verbose=False, runner=runner)
    texts = result["hypotheses"]
    if args.lm_path:
        texts = beam_search(result["log_probs"], recognizer.labels, args.lm_path, args.beam_width, args.alpha, args.beta)
    records = []
    for entry, text, frames in zip(result["entries"], texts, result["frame_labels"]):
        record = {"audio_filepath": entry.audio_filepath, "duration": entry.duration, "pred_text": text}
        if entry.text:
            record["text"] = entry.text
        if args.offsets:
            record["words"] = word_offsets(frames, recognizer.labels, recognizer.frame_seconds)
        records.append(record)
    out = sys.stdout if args.output == "-" else open(args.output, "w")
    try:
        if args.output_format == "json":
            json.dump(records, out, indent=1)
            out.write("\n")
        elif args.output_format == "manifest":
            out.writelines(json.dumps(r) + "\n" for r in records)
        else:
            for r in records:
                out.write(f"{r['audio_filepath']}\t{r['pred_text']}\n")
                for w in r.get("words", []):
                    out.write(f"  {w['start']:.2f}\t{w['end']:.2f}\t{w['word']}\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return records


def main(argv=None):
    """Console entry point (its return value becomes the exit status)."""
    transcribe(argv)


if __name__ == "__main__":
    main()
