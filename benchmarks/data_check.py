"""What the data check costs: ``AudioToTextDataLayer`` construction with the header pass
(``check_audio=True``, the default) vs without (``check_audio=False``).

Writes ``--num`` real WAV files of distinct content (random noise, 0.5-5 s,
16 kHz, int16 with every 20th one float32) and a manifest into a temporary
folder, then times construction:

1. ``check_audio=False``: manifest parsing, validation, tokenising;
2. ``check_audio=True``, first pass: the files were JUST WRITTEN, so their
   headers are in the page cache;
3. ``check_audio=True``, second pass (same, warm);
4. ``check_audio=True`` after asking the kernel to evict the files from the
   page cache (``sync`` + ``posix_fadvise(DONTNEED)`` per file; our own files
   only). On a virtual machine the host may still cache the disk, so this is
   "cold as far as this machine can make it", not a cold spinning disk.

The header pass's cost is (2..4) minus (1). It also times ``read_headers``
alone with 1 thread and with the default thread count, warm and after eviction.
Prints a markdown table and writes JSON.
"""
import argparse
import json
import os
import tempfile
import time

import numpy as np
import soundfile as sf

import nemo_asr
from nemo_asr.parts.data_check import HEADER_THREADS, read_headers
from results_file import cpu_model, write_results

HERE = os.path.dirname(os.path.abspath(__file__))
LABELS = [" "] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["'"]
WORDS = ("yes", "no", "stop", "go", "repeat", "enter", "erase", "rubout", "one", "two", "three")


def write_corpus(folder, count, seed=0):
    """``count`` WAV files of distinct noise and their manifest; returns the manifest path."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, seconds in enumerate(rng.uniform(0.5, 5.0, size=count)):
        frames = int(seconds * 16000)
        name = f"{i:05d}.wav"
        if i % 20 == 0:
            sf.write(os.path.join(folder, name), (0.1 * rng.standard_normal(frames)).astype(np.float32), 16000,
                     subtype="FLOAT")
        else:
            sf.write(os.path.join(folder, name), rng.integers(-3000, 3000, frames, dtype=np.int16), 16000,
                     subtype="PCM_16")
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 6))))
        rows.append({"audio_filepath": name, "duration": round(frames / 16000, 4), "text": text})
    manifest = os.path.join(folder, "manifest.json")
    with open(manifest, "w") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in rows)
    return manifest


def evict_from_page_cache(folder):
    """Ask the kernel to drop our files' cached pages (clean after ``sync``); no root needed."""
    os.sync()
    for name in os.listdir(folder):
        fd = os.open(os.path.join(folder, name), os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def construct(manifest, check_audio):
    """Seconds to build the data layer, and its utterance count."""
    start = time.perf_counter()
    layer = nemo_asr.AudioToTextDataLayer(manifest_filepath=manifest, labels=LABELS, batch_size=32,
                                          max_duration=None, check_audio=check_audio)
    return time.perf_counter() - start, len(layer)


def time_read_headers(folder, num_threads, evict=False):
    """Seconds for ``read_headers`` over every WAV file in ``folder`` (evicted from the page cache first)."""
    if evict:
        evict_from_page_cache(folder)
    paths = sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".wav"))
    start = time.perf_counter()
    read_headers(paths, num_threads)
    return time.perf_counter() - start


def time_passes(folder, manifest, num):
    """Construction seconds per pass, and ``read_headers`` seconds per 10,000 by threads and cache."""
    runs = {}
    runs["check_audio=False"], kept = construct(manifest, False)
    runs["check_audio=True, pass 1 (files just written: in the page cache)"], checked = construct(manifest, True)
    runs["check_audio=True, pass 2"], _ = construct(manifest, True)
    threads = {f"{n} thread(s), {'evicted' if evict else 'warm'}": time_read_headers(folder, n, evict) * 10000 / num
               for evict in (False, True) for n in (1, HEADER_THREADS)}
    evict_from_page_cache(folder)
    runs["check_audio=True after page-cache eviction (fadvise DONTNEED)"], _ = construct(manifest, True)
    assert kept == checked == num, (kept, checked)
    return runs, threads


def print_table(summary):
    """The markdown table (and the thread comparison) of ``summary``."""
    print(f"{summary['utterances']} WAV files ({summary['corpus_megabytes']:.0f} MB) written in "
          f"{summary['write_seconds']:.1f} s on {summary['cpu']}, {summary['cpu_cores']} cores; "
          f"header threads {summary['header_threads']}.")
    print("NOTE: the files were just written, so they are in the page cache (passes 1-2).\n")
    print("| AudioToTextDataLayer construction | seconds | s per 10,000 utterances | header pass, s per 10,000 |")
    print("|---|---|---|---|")
    for name, seconds in summary["construction_seconds"].items():
        extra = summary["header_pass_seconds_per_10k"].get(name)
        extra = "(baseline)" if extra is None else f"{extra:.2f}"
        print(f"| {name} | {seconds:.2f} | {summary['construction_seconds_per_10k'][name]:.2f} | {extra} |")
    print("\nread_headers alone, s per 10,000: "
          + ", ".join(f"{name}: {seconds:.2f}" for name, seconds in summary["read_headers_seconds_per_10k"].items()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=10000, help="utterances (files) to write and check")
    parser.add_argument("--quick", action="store_true", help="200 utterances (a smoke test)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "data_check.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.num = 200
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        manifest = write_corpus(folder, args.num)
        write_seconds = time.perf_counter() - start
        runs, threads = time_passes(folder, manifest, args.num)
        megabytes = sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder)) / 1e6
    baseline = runs["check_audio=False"]
    summary = {
        "utterances": args.num, "corpus_megabytes": round(megabytes, 1), "write_seconds": write_seconds,
        "header_threads": HEADER_THREADS, "cpu": cpu_model(), "cpu_cores": os.cpu_count(),
        "construction_seconds": runs,
        "construction_seconds_per_10k": {name: s * 10000 / args.num for name, s in runs.items()},
        "header_pass_seconds_per_10k": {name: (s - baseline) * 10000 / args.num for name, s in runs.items()
                                        if name != "check_audio=False"},
        "read_headers_seconds_per_10k": threads,
        "note": "files were just written, so passes 1 and 2 read headers from the page cache; the "
                "eviction pass asks the kernel to drop them first (a VM's host may still cache the disk)",
    }
    print_table(summary)
    write_results(args.out, summary)
    return summary


if __name__ == "__main__":
    main()
