"""Streaming recognition: accuracy against offline decoding, latency, and real-time capacity.

1. Accuracy (no server): every utterance of ``--manifest`` is decoded offline
   (whole utterance, one pass) and streamed through ``BufferedCTCStream``
   windows; reports WER against the references for both, and how many
   streamed texts equal the offline ones.
2. Live (``nemo-serve`` on loopback, real-time pacing, 100 ms frames): for
   1, 2, 4, ... simultaneous streams, the time from the end of audio to the
   final text, the interval between partials, and whether every stream kept
   up (final within ``--max_final_s`` of the end of audio).

    python benchmarks/serve_streaming.py [--model_config CFG --load_dir DIR --manifest test.json]

Without ``--manifest``, the 40 AN4 utterances are joined four at a time
(0.25 s pauses) into 10 streams of ~5 s, so windows really overlap.
``--pause_s 10 --pause_dbfs -60`` joins them with 10 s of quiet-room noise
instead: what a window that holds only a pause turns into (``extra_words``
counts the words beyond the reference's, summed over the streams).
"""
import argparse
import json
import os
import platform
import sys
import threading
import time

import numpy as np
import soundfile as sf

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.join(HERE, "..")
sys.path.insert(0, REPO)

from results_file import write_results  # noqa: E402
from serve_process import ServerProcess  # noqa: E402

DEFAULT_CONFIG = os.path.join(REPO, "tests", "data", "configs", "tiny_quartznet.yaml")
DEFAULT_LOAD_DIR = os.path.join(REPO, "tests", "data", "serve_model")
AN4 = os.path.join(REPO, "tests", "data", "an4_subset")


def utterances(manifest, join=1, pause_s=0.25, pause_dbfs=None):
    """[(samples at 16 kHz quantised to int16, reference text)]; ``join`` manifest utterances per stream,
    ``pause_s`` apart: digital silence, or white noise at ``pause_dbfs`` (RMS, dB full scale)."""
    if manifest is None:
        rows = []
        for name in ("train_manifest.json", "test_manifest.json"):
            rows += [json.loads(line) for line in open(os.path.join(AN4, name), encoding="utf-8") if line.strip()]
        rows.sort(key=lambda r: r["audio_filepath"])
        folder, groups = AN4, [rows[i:i + 4] for i in range(0, len(rows), 4)]
    else:
        folder = os.path.dirname(os.path.abspath(manifest))
        rows = [json.loads(line) for line in open(manifest, encoding="utf-8") if line.strip()]
        groups = [rows[i:i + join] for i in range(0, len(rows), join)]
    out = []
    rng = np.random.default_rng(0)
    pause = np.zeros(int(round(pause_s * 16000)), dtype=np.float32)
    for group in groups:
        parts = []
        for row in group:
            path = row["audio_filepath"]
            samples, rate = sf.read(path if os.path.isabs(path) else os.path.join(folder, path), dtype="float32")
            if samples.ndim > 1:
                samples = samples.mean(axis=1)
            if rate != 16000:
                from nemo_asr.parts.audio import resample

                samples = resample(samples, rate, 16000)
            noise = 0.0 if pause_dbfs is None else rng.normal(0.0, 10 ** (pause_dbfs / 20), len(pause))
            parts += [samples, (pause + noise).astype(np.float32)]
        samples = np.concatenate(parts[:-1]) if len(group) > 1 else parts[0]
        samples = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
        out.append((samples, " ".join(row.get("text", "") for row in group)))
    return out


def accuracy(model, data, chunk_s, left_s, right_s, partial_s, silence_gate_db=None):
    from nemo_asr.metrics import char_error_rate, word_error_rate

    offline, streamed, references, windows = [], [], [], 0
    for pcm, reference in data:
        samples = pcm.astype(np.float32) / 32768
        offline.append(model.decode(model.infer_batch([samples])[0])["text"])
        stream = model.new_stream(chunk_s, left_s, right_s, partial_s, silence_gate_db)
        step = 1600

        def run(windows):
            ran = 0
            for window in windows:  # as the server does: a silent window is blank, without a model call
                stream.commit(window, None if window.silent else model.infer_batch([window.audio.numpy()])[0])
                ran += not window.silent
            return ran

        for start in range(0, len(samples), step):
            stream.feed(samples[start:start + step])
            windows += run(stream.ready_windows())
        windows += run(stream.final_windows())
        streamed.append(stream.text(model.labels))
        references.append(reference)
    return {"chunk_s": chunk_s, "left_s": left_s, "right_s": right_s, "partial_s": min(partial_s, chunk_s),
            "silence_gate_db": silence_gate_db,
            "streams": len(data), "windows": windows,  # preview windows included: they cost model time too
            "wer_offline": word_error_rate(offline, references)[0],
            "wer_streamed": word_error_rate(streamed, references)[0],
            "identical": sum(a == b for a, b in zip(offline, streamed)),
            "wer_streamed_vs_offline": word_error_rate(streamed, offline)[0],
            "extra_words_offline": extra_words(offline, references),
            "extra_words_streamed": extra_words(streamed, references),
            "cer_streamed_vs_offline": char_error_rate(streamed, offline)[0]}


def extra_words(texts, references):
    """Words beyond the reference's, summed over utterances: what a model invents (in pauses, say)."""
    return sum(max(0, len(text.split()) - len(reference.split())) for text, reference in zip(texts, references))


def live_stream(port, pcm, results, frame_s=0.1):
    from websockets.sync.client import connect

    step = int(16000 * frame_s)
    partial_times = []
    with connect(f"ws://127.0.0.1:{port}/v1/stream", max_size=None) as ws:
        json.loads(ws.recv(timeout=30))
        done = threading.Event()
        final = {}

        def reader():
            while True:
                message = json.loads(ws.recv(timeout=120))
                if message["type"] == "partial":
                    partial_times.append(time.perf_counter())
                else:
                    final.update(message, received=time.perf_counter())
                    done.set()
                    return

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        started = time.perf_counter()
        for i, start in enumerate(range(0, len(pcm), step)):
            delay = started + i * frame_s - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            ws.send(pcm[start:start + step].tobytes())
        end_of_audio = time.perf_counter()
        ws.send(json.dumps({"eof": True}))
        done.wait(120)
    intervals = np.diff(partial_times).tolist() if len(partial_times) > 1 else []
    results.append({"final_s": final.get("received", np.inf) - end_of_audio, "intervals": intervals,
                    "ok": final.get("type") == "final"})


def live(args, data, levels):
    extra = ["--chunk_s", str(args.chunk_s), "--left_s", str(args.left_s), "--right_s", str(args.right_s),
             "--partial_s", str(args.partial_s), "--max_batch_size", "32"]
    rows = []
    with ServerProcess(REPO, args.model_config, args.load_dir, extra) as server:
        port = server.port
        for n in levels:
            results = []
            threads = [threading.Thread(target=live_stream, args=(port, data[i % len(data)][0], results))
                       for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            finals = np.array([r["final_s"] for r in results])
            intervals = [x for r in results for x in r["intervals"]]
            kept_up = bool(all(r["ok"] for r in results) and finals.max() <= args.max_final_s)
            rows.append({"streams": n, "final_p50_s": float(np.median(finals)), "final_max_s": float(finals.max()),
                         "partial_interval_mean_s": float(np.mean(intervals)) if intervals else None,
                         "partial_interval_p90_s": float(np.percentile(intervals, 90)) if intervals else None,
                         "kept_up": kept_up})
            print(f"{n:3d} streams: final {np.median(finals) * 1e3:.0f} ms (max {finals.max() * 1e3:.0f}), "
                  f"partials every {rows[-1]['partial_interval_mean_s'] or 0:.2f} s, kept up: {kept_up}", flush=True)
            if not kept_up:
                break
    return rows


def main(argv=None):
    from nemo_asr.serve.cli import gate_db

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_config", default=DEFAULT_CONFIG)
    parser.add_argument("--load_dir", default=DEFAULT_LOAD_DIR)
    parser.add_argument("--manifest", default=None, help="held-out test manifest (default: AN4 subset, joined)")
    parser.add_argument("--join", type=int, default=1,
                        help="--manifest utterances joined per stream (--pause_s apart): long streams exercise "
                             "the commit and preview windows that short ones never reach")
    parser.add_argument("--pause_s", type=float, default=0.25, help="pause between joined utterances")
    parser.add_argument("--pause_dbfs", type=float, default=None,
                        help="fill pauses with white noise at this RMS level, e.g. -60 (default: digital silence)")
    parser.add_argument("--chunk_s", type=float, default=2.0)
    parser.add_argument("--partial_s", type=float, default=1.0)
    parser.add_argument("--left_s", type=float, default=2.0)
    parser.add_argument("--right_s", type=float, default=1.0)
    parser.add_argument("--silence_gate_db", type=gate_db, default=30.0,
                        help="the server's silence gate (0: off; default: %(default)s, the server's)")
    parser.add_argument("--compare_chunks", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure 1 s and 0.5 s chunks next to the given windows")
    parser.add_argument("--streams", type=int, nargs="*", default=[1, 2, 4, 8, 16, 32, 64],
                        help="simultaneous live streams to try; none (--streams with no value): accuracy only")
    parser.add_argument("--max_final_s", type=float, default=1.0, help="a stream keeps up when its final text "
                                                                        "comes within this after its audio ends")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "serve_streaming.json"))
    args = parser.parse_args(argv)

    from nemo_asr.inference import Recognizer
    from nemo_asr.model_config import load_model_config
    from nemo_asr.serve.model import ServingModel

    recognizer = Recognizer(load_model_config(args.model_config)).load(args.load_dir)
    model = ServingModel.from_recognizer(recognizer, recognizer.runner("pytorch"))
    data = utterances(args.manifest, args.join, args.pause_s, args.pause_dbfs)
    settings = [(args.chunk_s, args.left_s, args.right_s, args.partial_s)]
    if args.compare_chunks:
        settings += [(1.0, 2.0, 1.0, 1.0), (0.5, 1.0, 0.5, 0.5)]
    rows = [accuracy(model, data, *s, silence_gate_db=args.silence_gate_db) for s in dict.fromkeys(settings)]
    print("Buffered windows only (the server's final pass is not used here):")
    print(f"Silence gate: {args.silence_gate_db:g} dB" if args.silence_gate_db else "Silence gate: off")  # None: off
    print("| chunk / left / right / partial s | streams | windows | WER offline | WER streamed | identical | "
          "CER streamed vs offline | extra words offline / streamed |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['chunk_s']} / {r['left_s']} / {r['right_s']} / {r['partial_s']} | {r['streams']} | "
              f"{r['windows']} | {r['wer_offline'] * 100:.2f}% | "
              f"{r['wer_streamed'] * 100:.2f}% | {r['identical']}/{r['streams']} | "
              f"{r['cer_streamed_vs_offline'] * 100:.2f}% | {r['extra_words_offline']} / "
              f"{r['extra_words_streamed']} |", flush=True)
    live_rows = live(args, data, args.streams) if args.streams else []
    write_results(args.output, {"machine": {"cpu": platform.processor() or platform.machine(),
                                            "cores": os.cpu_count()},
                                "model_config": os.path.relpath(args.model_config, REPO),
                                "manifest": args.manifest or "AN4 subset, 4 utterances per stream",
                                "join": args.join if args.manifest else 4,
                                "pause_s": args.pause_s, "pause_dbfs": args.pause_dbfs,
                                "stream_seconds": [round(float(np.percentile([len(p) / 16000 for p, _ in data], q)), 2)
                                                   for q in (0, 50, 100)],
                                "accuracy": rows, "live": live_rows})


if __name__ == "__main__":
    main()
