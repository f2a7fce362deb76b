"""``nemo-transcribe``: audio files or a manifest in, text out::

    nemo-transcribe --model_config quartznet15x5.yaml --load_dir checkpoints/ a.wav b.flac
    nemo-transcribe ... --manifest dev.json --output_format manifest --output hyp.json --offsets
    nemo-transcribe ... --load_dir ngc/ --ckpt_pattern quartznet15x5 --lm_path lm.arpa --offsets

A manifest line needs only ``audio_filepath``: ``duration`` defaults to the
file's (from its header) and ``text``, when present, is copied to the output.

Before the model loads, the config, the checkpoints, ``--output``,
``--lm_path`` and every input file's header are checked. A file that cannot
be transcribed (missing, undecodable, header-only, NaN/inf samples) does not
stop the others: it gets one stderr line ``nemo-transcribe: error: FILE: why``
and, in json/manifest output, an entry with an ``error`` field and no
``pred_text``; plain output leaves it out.

``--offsets`` gives each word's start and end in seconds from the decoding
that produced the text: the greedy CTC alignment, or with ``--lm_path`` the
beam search's own word frames.

Under ``torchrun --nproc_per_node=N`` (one or several nodes) each process
recognises one contiguous block of the inputs and rank 0 writes the merged
output, in input order.

Exit status: 0 when every input was transcribed; 1 after an error (one stderr
line, ``--debug`` shows the traceback) or when any input file failed.
"""
import argparse
import json
import logging
import os
import sys
import tempfile

from nemo_core.utils.cli import UserError, add_debug_flag, one_line_errors

PROG = "nemo-transcribe"
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")  # only these sample formats can hold NaN/inf

_logger = logging.getLogger("nemo_asr")


def build_parser():
    from .inference import add_pruning_args

    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("audio", nargs="*", help="audio files (any format libsndfile reads)")
    parser.add_argument("--manifest", help="JSON-lines manifest instead of audio files (audio_filepath per line; "
                                           "duration and text optional)")
    parser.add_argument("--model_config", required=True, help="model YAML (examples/asr/configs/)")
    parser.add_argument("--load_dir", required=True, help="folder with the encoder's and decoder's checkpoint files "
                                                           "([PREFIX-]NAME-STEP-N.pt, e.g. *JasperEncoder-STEP-*.pt)")
    parser.add_argument("--ckpt_pattern", default="",
                        help="part of the checkpoint file names that picks one model when --load_dir holds "
                             "several (an NGC download: e.g. quartznet15x5)")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--output_format", choices=["plain", "json", "manifest"], default="plain")
    parser.add_argument("--output", default="-", help="file to write (default: stdout)")
    parser.add_argument("--offsets", action="store_true", help="word start/end times in seconds")
    parser.add_argument("--backend", default="framework", choices=["framework", "pytorch", "torchscript", "onnxruntime"],
                        help="all run the same acoustic pipeline; framework: in PyTorch on the run's device (GPU "
                             "when available), fp32; the others on the CPU at --precision, torchscript/onnxruntime "
                             "from the exported file (default: %(default)s)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                        help="for the pytorch/torchscript backends")
    parser.add_argument("--model_path", default=None, help="ONNX/TorchScript file for those backends")
    parser.add_argument("--lm_path", default=None, help="ARPA or KenLM binary model for beam search "
                                                        "(needs pip install 'nemo-typed-modules[lm]')")
    parser.add_argument("--beam_width", type=int, default=32)
    parser.add_argument("--alpha", type=float, default=0.5, help="LM weight")
    parser.add_argument("--beta", type=float, default=1.0, help="word insertion bonus")
    add_pruning_args(parser)
    add_debug_flag(parser)
    return parser


# ------------------------------------------------------------ checks before any work
def check_output(path):
    """Raise a ``UserError`` unless ``path`` (``--output``; ``-`` is stdout) can be written."""
    if path == "-":
        return
    if os.path.isdir(path):
        raise UserError(f"--output {path} is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"cannot write --output {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise UserError(f"cannot write --output {path}: permission denied")


class Input:
    """One input: its manifest entry, whether it came from a manifest (``entry.source`` is then
    ``manifest:line``) with a text and a duration, and why it failed (``error``) if it did."""

    def __init__(self, entry, from_manifest=False, has_text=False, has_duration=False):
        self.entry, self.from_manifest, self.has_text, self.has_duration = entry, from_manifest, has_text, has_duration
        self.error = None

    def describe(self):
        """``[manifest:line: ]error``, naming the audio file when the error does not."""
        path, text = self.entry.audio_filepath, self.error
        if path not in text:
            text = f"{path}: {text}"
        return f"{self.entry.source}: {text}" if self.from_manifest else text


def read_inputs(audio_files, manifest):
    """``Input`` s for the audio files or the manifest's rows, in order (nothing checked on disk yet)."""
    from .parts.manifest import ManifestEntry, check_row, iter_manifest_rows

    if manifest is None:
        return [Input(ManifestEntry(os.path.abspath(path), 0.0, "", 0.0, path)) for path in audio_files]
    folder = os.path.dirname(os.path.abspath(manifest))
    inputs = []
    for where, row in iter_manifest_rows(manifest):
        has_duration = "duration" in row
        entry = check_row(dict(row) if has_duration else dict(row, duration=0.0), where, folder, require_text=False)
        inputs.append(Input(entry, from_manifest=True, has_text="text" in row, has_duration=has_duration))
    if not inputs:
        raise UserError(f"manifest {manifest} has no lines to transcribe")
    return inputs


def non_finite_samples(entry, block_frames=1 << 16):
    """Why ``entry``'s audio cannot be used if its float samples hold NaN/inf, else None.

    Integer PCM cannot hold them, so only float files are read (in blocks)."""
    import numpy as np
    import soundfile as sf

    from .parts.audio import NonFiniteSamplesError, open_failure

    try:
        with sf.SoundFile(entry.audio_filepath) as handle:
            if handle.subtype not in FLOAT_SUBTYPES:
                return None
            if entry.offset:
                handle.seek(int(round(entry.offset * handle.samplerate)))
            frames = int(round(entry.duration * handle.samplerate)) if entry.offset else -1
            bad = total = 0
            for block in handle.blocks(blocksize=block_frames, frames=frames, dtype="float32", always_2d=True):
                finite = np.isfinite(block)
                bad += int(finite.size - np.count_nonzero(finite))
                total += finite.size
    except Exception as err:  # libsndfile errors come in several types
        return str(open_failure(entry.audio_filepath, err))
    if bad:
        return str(NonFiniteSamplesError(f"audio file {entry.audio_filepath} holds {bad} non-finite "
                                         f"(NaN or infinite) sample(s) of {total}"))
    return None


def check_inputs(inputs):
    """Read every input's header (and float files' samples): set ``error`` on the unusable ones and
    each usable entry's duration to the file's own. Returns the usable ``Input`` s."""
    from .parts.data_check import checked_entry, read_headers

    headers = read_headers([item.entry.audio_filepath for item in inputs])
    usable, corrected = [], []
    for item in inputs:
        entry, header = item.entry, headers[item.entry.audio_filepath]
        if not item.has_duration and not isinstance(header, Exception):
            entry = entry._replace(duration=max(header - entry.offset, 0.0))
        fixed, record = checked_entry(entry, header)
        if fixed is None:
            item.error = record.reason
            continue
        if record is not None and item.has_duration:
            corrected.append(record)
        item.entry = fixed
        item.error = non_finite_samples(fixed)
        if item.error is None:
            usable.append(item)
    if corrected:
        _logger.warning("%d manifest duration(s) disagree with the audio files; their true durations are used "
                        "(first: %s)", len(corrected), corrected[0].describe())
    return usable


# ------------------------------------------------------------------ the work
def records_for(inputs, texts, words=None):
    """Output records in input order: transcripts for usable inputs, ``error`` entries for the rest."""
    texts, words = iter(texts), iter(words) if words is not None else None
    records = []
    for item in inputs:
        entry = item.entry
        record = {"audio_filepath": entry.audio_filepath}
        if item.error is None or item.has_duration:
            record["duration"] = round(entry.duration, 6)
        if item.has_text:
            record["text"] = entry.text
        if item.error is not None:
            record["error"] = item.describe()
        else:
            record["pred_text"] = next(texts)
            if words is not None:
                record["words"] = next(words)
        records.append(record)
    return records


def write_records(records, output_format, out):
    if output_format == "json":
        json.dump(records, out, indent=1)
        out.write("\n")
    elif output_format == "manifest":
        out.writelines(json.dumps(r) + "\n" for r in records)
    else:
        for r in records:
            if "error" in r:
                continue
            out.write(f"{r['audio_filepath']}\t{r['pred_text']}\n")
            for w in r.get("words", []):
                out.write(f"  {w['start']:.2f}\t{w['end']:.2f}\t{w['word']}\n")


def run(args):
    """Transcribe what ``args`` (parsed ``build_parser()`` arguments) name; returns the records written."""
    if bool(args.audio) == bool(args.manifest):
        raise UserError("give audio files or --manifest FILE (one of the two)")
    logging.getLogger("nemo_core").setLevel(logging.WARNING)
    from .inference import Recognizer, beam_decoder, beam_search_with_words, pruning_options
    from .model_config import load_model_config
    from .parts.ctc_offsets import word_offsets
    from .parts.data_prep import write_manifest

    cfg = load_model_config(args.model_config)
    check_output(args.output)
    pruning = pruning_options(args)  # checked with or without --lm_path
    if args.model_path is not None and not os.path.isfile(args.model_path):
        raise UserError(f"--model_path {args.model_path} does not exist")
    decoder = None
    if args.lm_path:
        decoder = beam_decoder(cfg["labels"], args.lm_path, args.beam_width, args.alpha, args.beta,
                               pruning=pruning)
    recognizer = Recognizer(cfg)
    recognizer.check_checkpoints(args.load_dir, args.ckpt_pattern)

    inputs = read_inputs(args.audio, args.manifest)
    usable = check_inputs(inputs)  # every rank checks every input, so all ranks agree on what to recognise
    main_rank = int(os.environ.get("RANK", "0")) == 0
    for item in inputs:
        if item.error is not None and main_rank:
            print(f"{PROG}: error: {item.describe()}", file=sys.stderr, flush=True)
    texts, words = [], [] if args.offsets else None
    if usable:
        import nemo_core

        nf = nemo_core.NeuralModuleFactory()
        nf.logger.setLevel(logging.WARNING)
        with tempfile.TemporaryDirectory() as folder:
            runner = None
            if args.backend != "framework":
                runner = recognizer.load(args.load_dir, args.ckpt_pattern).runner(
                    args.backend, args.precision, args.model_path, folder)
            manifest = write_manifest([{"audio_filepath": item.entry.audio_filepath, "duration": item.entry.duration,
                                        "offset": item.entry.offset, "text": ""} for item in usable],
                                      os.path.join(folder, "inputs.json"))
            result = recognizer.run(nf, manifest, args.batch_size, args.load_dir, verbose=True, runner=runner,
                                    ckpt_pattern=args.ckpt_pattern, check_audio=False)
        if not main_rank:  # under torchrun rank 0 decodes and writes the merged output; failures agree
            return records_for(inputs, [""] * len(usable))
        if decoder is not None:
            best = beam_search_with_words(result["log_probs"], decoder, recognizer.frame_seconds)
            texts = [text for text, _ in best]
            if args.offsets:
                words = [w for _, w in best]
        else:
            texts = result["hypotheses"]
            if args.offsets:
                words = [word_offsets(frames, recognizer.labels, recognizer.frame_seconds)
                         for frames in result["frame_labels"]]
    records = records_for(inputs, texts, words)
    if not main_rank:  # nothing was usable: rank 0 writes the (error-only) output
        return records
    if args.output == "-":
        write_records(records, args.output_format, sys.stdout)
        sys.stdout.flush()
    else:
        with open(args.output, "w", encoding="utf-8") as out:
            write_records(records, args.output_format, out)
    return records


def transcribe(argv=None):
    """Run the command line ``argv``; returns the records it wrote (failed inputs have an ``error``).

    Errors raise (``main`` turns them into one line)."""
    return run(build_parser().parse_args(argv))


def main(argv=None):
    """Console entry point: exit status 0 when every input was transcribed, else 1."""
    args = build_parser().parse_args(argv)
    with one_line_errors(PROG, args.debug):
        records = run(args)
    if any("error" in r for r in records):
        sys.exit(1)  # each failed input has had its stderr line
    return 0


if __name__ == "__main__":
    main()
