"""Load test of ``nemo-serve`` on loopback: concurrency x (batching on / off), side by side.

Starts the real server (``python -m nemo_asr.serve.cli``) as a subprocess for
each batching setting, then for each concurrency level keeps that many
clients posting WAV files (AN4 utterances, or ``--manifest``) until
``--requests`` answers have come back or ``--seconds`` have passed. Reports
p50/p90/p99 latency, throughput in audio seconds per second and errors;
prints a markdown table and writes JSON.

    python benchmarks/serve_load.py [--model_config CFG --load_dir DIR] [--concurrency 1 4 16 64]
"""
import argparse
import io
import json
import os
import platform
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import soundfile as sf

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.join(HERE, "..")
sys.path.insert(0, REPO)

from results_file import write_results  # noqa: E402
from serve_process import ServerProcess  # noqa: E402

DEFAULT_CONFIG = os.path.join(REPO, "tests", "data", "configs", "tiny_quartznet.yaml")
DEFAULT_LOAD_DIR = os.path.join(REPO, "tests", "data", "serve_model")
AN4 = os.path.join(REPO, "tests", "data", "an4_subset", "test_manifest.json")


def audio_bodies(manifest, limit=40):
    """(WAV bytes, seconds) of the manifest's files (concatenated in pairs for a few seconds each)."""
    folder = os.path.dirname(os.path.abspath(manifest))
    rows = [json.loads(line) for line in open(manifest, encoding="utf-8") if line.strip()][:limit]
    waves = []
    for row in rows:
        path = row["audio_filepath"]
        samples, rate = sf.read(path if os.path.isabs(path) else os.path.join(folder, path), dtype="float32")
        waves.append((samples, rate))
    bodies = []
    for first, second in zip(waves[::2], waves[1::2]):
        samples = np.concatenate([first[0], np.zeros(4000, np.float32), second[0]])
        buffer = io.BytesIO()
        sf.write(buffer, samples, first[1], format="WAV", subtype="PCM_16")
        bodies.append((buffer.getvalue(), len(samples) / first[1]))
    return bodies


def run_level(port, bodies, concurrency, max_requests, max_seconds):
    url = f"http://127.0.0.1:{port}/v1/transcribe"
    latencies, audio_seconds, errors = [], [], []
    lock = threading.Lock()
    counter = iter(range(max_requests))
    stop_at = time.perf_counter() + max_seconds

    def client():
        for i in counter:
            if time.perf_counter() > stop_at:
                return
            body, seconds = bodies[i % len(bodies)]
            started = time.perf_counter()
            try:
                request = urllib.request.Request(url, data=body, method="POST",
                                                 headers={"Content-Type": "audio/wav"})
                with urllib.request.urlopen(request, timeout=120) as response:
                    json.loads(response.read())
                with lock:
                    latencies.append(time.perf_counter() - started)
                    audio_seconds.append(seconds)
            except (urllib.error.URLError, OSError, ValueError) as err:
                with lock:
                    errors.append(str(getattr(err, "code", err)))

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1e3 if latencies else np.array([np.nan])
    return {"concurrency": concurrency, "requests": len(latencies), "errors": len(errors),
            "error_kinds": sorted(set(errors)), "p50_ms": float(np.percentile(ms, 50)),
            "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)),
            "audio_s_per_s": sum(audio_seconds) / wall, "wall_s": wall}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_config", default=DEFAULT_CONFIG)
    parser.add_argument("--load_dir", default=DEFAULT_LOAD_DIR)
    parser.add_argument("--manifest", default=AN4)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--requests", type=int, default=200, help="per concurrency level (upper bound)")
    parser.add_argument("--seconds", type=float, default=30.0, help="per concurrency level (upper bound)")
    parser.add_argument("--max_batch_size", type=int, default=16, help="batching on: this; off: 1")
    parser.add_argument("--max_wait_ms", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", default=os.path.join(HERE, "results", "serve_load.json"))
    args = parser.parse_args(argv)

    bodies = audio_bodies(args.manifest)
    rows = []
    for label, batch in (("on", args.max_batch_size), ("off", 1)):
        extra = ["--max_batch_size", str(batch), "--max_wait_ms", str(args.max_wait_ms), "--max_queue", "1024"]
        if args.threads:
            extra += ["--threads", str(args.threads)]
        with ServerProcess(REPO, args.model_config, args.load_dir, extra) as server:
            run_level(server.port, bodies, 2, 8, 10)  # warm the connection path
            for concurrency in args.concurrency:
                row = run_level(server.port, bodies, concurrency, args.requests, args.seconds)
                row["batching"] = label
                rows.append(row)
                print(f"batching {label:3s} concurrency {concurrency:3d}: p50 {row['p50_ms']:.0f} ms, "
                      f"{row['audio_s_per_s']:.1f} audio s/s, {row['errors']} errors", flush=True)
    print("\n| batching | concurrency | requests | p50 ms | p90 ms | p99 ms | audio s / s | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['batching']} | {row['concurrency']} | {row['requests']} | {row['p50_ms']:.0f} | "
              f"{row['p90_ms']:.0f} | {row['p99_ms']:.0f} | {row['audio_s_per_s']:.1f} | {row['errors']} |")
    write_results(args.output, {"machine": {"cpu": platform.processor() or platform.machine(),
                                            "cores": os.cpu_count()},
                                "model_config": os.path.relpath(args.model_config, REPO),
                                "mean_audio_s": float(np.mean([s for _, s in bodies])),
                                "max_batch_size": args.max_batch_size, "max_wait_ms": args.max_wait_ms,
                                "rows": rows})


if __name__ == "__main__":
    main()
