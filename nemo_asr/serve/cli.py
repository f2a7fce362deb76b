"""``nemo-serve``: run the speech service::

    nemo-serve --model_config quartznet15x5.yaml --load_dir checkpoints/ [--port 8000]
    nemo-serve --model_config quartznet15x5.yaml --model_path model.onnx --backend onnxruntime

Binds 127.0.0.1 unless ``--host`` says otherwise. API keys (one per line) come
from ``--api_key_file`` or the ``NEMO_SERVE_API_KEYS`` environment variable
(comma-separated); with keys set, every request must send
``Authorization: Bearer KEY``. SIGTERM or Ctrl-C drains: the server stops
accepting connections, gives each open stream the final text of the audio it
has sent (then close code 1012), answers the requests in flight, then exits
(``nemo_asr.serve.server``).
"""
import argparse
import logging
import os
import sys

import torch

from nemo_core.utils.cli import UserError

from ..inference import add_pruning_args, pruning_options


def positive_seconds(text):
    """argparse type: seconds, more than 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def gate_db(text):
    """argparse type: the silence gate in dB, 10 to 120; 0 turns it off (None)."""
    value = float(text)
    if value != 0 and not 10 <= value <= 120:  # nan fails both; a gate under 10 dB would drop soft speech
        raise argparse.ArgumentTypeError(f"must be 0 (off) or 10 to 120 dB, got {text}")
    return value or None


def build_parser():
    parser = argparse.ArgumentParser(prog="nemo-serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--model_config", required=True, help="the model's YAML config (labels, features, encoder)")
    add("--load_dir", default=None, help="folder with the model's checkpoints (newest complete set)")
    add("--ckpt_pattern", default="", help="pick checkpoint files whose names contain this (NGC folders)")
    add("--model_path", default=None, help="an exported ONNX/TorchScript pipeline instead of --load_dir")
    add("--backend", default="pytorch", choices=["pytorch", "torchscript", "onnxruntime"])
    add("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    add("--threads", type=int, default=None, help="torch/ONNX Runtime intra-op threads (default: all cores)")
    add("--host", default="127.0.0.1", help="interface to bind (0.0.0.0: every interface)")
    add("--port", type=int, default=8000)
    add("--max_batch_size", type=int, default=16, help="requests (or stream windows) per model call")
    add("--max_wait_ms", type=float, default=10.0, help="how long a request waits for others to batch with")
    add("--max_queue", type=int, default=256, help="waiting requests beyond this get 503 + Retry-After")
    add("--max_body_mb", type=float, default=32.0, help="larger uploads get 413")
    add("--max_audio_s", type=float, default=120.0, help="longer audio per request gets 413")
    add("--max_stream_s", type=float, default=3600.0, help="longest WebSocket stream, in audio seconds")
    add("--request_timeout_s", type=float, default=30.0, help="requests without a result by then get 504")
    add("--chunk_s", type=positive_seconds, default=2.0,
        help="streaming: audio committed per window (longer: merged text closer to offline, more latency to commit)")
    add("--partial_s", type=positive_seconds, default=1.0,
        help="streaming: a partial text at least this often (a preview window between commits when < --chunk_s)")
    add("--silence_gate_db", type=gate_db, default=30.0,
        help="streaming: a window whose loudest 20 ms is this many dB below the loudest of the last 30 s (or "
             "under -65 dBFS; never when over -45 dBFS) is committed as blank without a model call; 0 turns the "
             "gate off (default: %(default)s)")
    add("--left_s", type=float, default=2.0, help="streaming: left context per window")
    add("--right_s", type=float, default=1.0, help="streaming: right context (look-ahead) per window")
    add("--final_pass_s", type=float, default=30.0,
        help="streaming: a stream up to this long gets its final text from one pass over all of it "
             "(equal to offline); longer ones from the merged windows")
    add("--api_key_file", default=None, help="file with one API key per line")
    metrics = parser.add_mutually_exclusive_group()
    metrics.add_argument("--metrics_key_file", default=None,
                         help="/metrics needs one of these keys (one per line; default: an API key when API keys "
                              "are configured, else none)")
    metrics.add_argument("--public_metrics", action="store_true",
                         help="/metrics open to all even when API keys are configured")
    add("--lm_path", default=None, help="KenLM model for requests with lm=true")
    add("--beam_width", type=int, default=32)
    add("--alpha", type=float, default=0.5)
    add("--beta", type=float, default=1.0)
    add_pruning_args(parser)
    add("--graceful_timeout_s", type=float, default=30.0,
        help="on SIGTERM, wait this long for open streams' final texts, then as long for requests in flight")
    add("--log_level", default="info", choices=["debug", "info", "warning", "error"])
    add("--debug", action="store_true", help="on failure, show the full traceback")
    return parser


def api_keys(path):
    """Keys from ``path`` (one per line, # comments) plus ``NEMO_SERVE_API_KEYS`` (comma-separated)."""
    keys = [k.strip() for k in os.environ.get("NEMO_SERVE_API_KEYS", "").split(",") if k.strip()]
    return keys + (read_keys(path, "--api_key_file", "leave the option out to serve without keys") if path else [])


def read_keys(path, option="--api_key_file", otherwise=""):
    """The keys in ``path``: one per line; blank lines and # comments skipped. A file that cannot be read or
    holds no key is refused (a key file that silently opened the server would be worse than none)."""
    try:
        with open(path, encoding="utf-8") as handle:
            keys = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    except OSError as err:
        raise UserError(f"{option} {path}: {err.strerror or err}") from err
    if not keys:
        raise UserError(f"{option} {path} holds no key (one per line){'; ' + otherwise if otherwise else ''}")
    return keys


def metrics_keys(args):
    """Keys for ``/metrics``: ``--metrics_key_file``'s, none with ``--public_metrics``, else None (the API
    keys)."""
    if args.public_metrics:
        return []
    if args.metrics_key_file:
        return read_keys(args.metrics_key_file, "--metrics_key_file", "use --public_metrics to leave /metrics open")
    return None


def load_model(args):
    """A ``ServingModel`` from the command line's model arguments."""
    from ..inference import Recognizer
    from ..model_config import load_model_config
    from .model import ServingModel

    if not args.load_dir and not args.model_path:
        raise ValueError("give --load_dir (checkpoints) or --model_path (an exported pipeline)")
    if args.model_path and args.backend == "pytorch":
        raise ValueError("--model_path needs --backend onnxruntime or torchscript")
    if args.threads:
        torch.set_num_threads(args.threads)
    recognizer = Recognizer(load_model_config(args.model_config))
    lm_decoder = lm_decoder_for(args, recognizer) if args.lm_path else None  # a bad LM stops before the weights load
    if args.load_dir:
        recognizer.load(args.load_dir, args.ckpt_pattern)
    runner = recognizer.runner(args.backend, args.precision, args.model_path)
    name = os.path.splitext(os.path.basename(args.model_config))[0]
    return ServingModel.from_recognizer(recognizer, runner, name=name, lm_decoder=lm_decoder)


def lm_decoder_for(args, recognizer):
    """A function ``(log_probs, frame_seconds) -> {"text", "words"}``: beam search with the LM.

    Word times come from the beam search's own word frames, so they describe
    the text returned; there is no per-word confidence for beam results.
    """
    from ..inference import beam_decoder
    from ..parts.ctc_offsets import words_from_frames

    if not os.path.isfile(args.lm_path):
        raise FileNotFoundError(2, "language model not found", args.lm_path)
    decoder = beam_decoder(recognizer.labels, args.lm_path, args.beam_width, args.alpha, args.beta, num_cpus=1,
                           pruning=pruning_options(args))

    def decode(log_probs, frame_seconds):
        lengths = torch.tensor([log_probs.shape[0]])
        beams = decoder.decode(log_probs[None], lengths, word_frames=True)[0]
        if not beams:
            return {"text": "", "words": []}
        _, text, frames = beams[0]
        return {"text": text, "words": words_from_frames(frames, frame_seconds)}

    return decode


def main(argv=None):
    from nemo_core.utils.cli import one_line_errors

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with one_line_errors("nemo-serve", args.debug):
        from .app import Settings, create_app
        from .server import serve

        pruning_options(args)  # checked before the model loads, with or without --lm_path

        settings = Settings(max_body_bytes=int(args.max_body_mb * (1 << 20)), max_audio_s=args.max_audio_s,
                            max_stream_s=args.max_stream_s, request_timeout_s=args.request_timeout_s,
                            max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
                            max_queue=args.max_queue, api_keys=api_keys(args.api_key_file),
                            chunk_s=args.chunk_s, left_s=args.left_s, right_s=args.right_s,
                            final_pass_s=args.final_pass_s, partial_s=args.partial_s,
                            silence_gate_db=args.silence_gate_db,
                            metrics_keys=metrics_keys(args))
        app = create_app(load_model(args), settings)
        serve(app, args.graceful_timeout_s, host=args.host, port=args.port, log_level=args.log_level,
              access_log=False, timeout_graceful_shutdown=args.graceful_timeout_s, ws_max_size=1 << 20)


if __name__ == "__main__":
    main()
