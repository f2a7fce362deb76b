"""Helpers for data-preparation scripts: parallel audio conversion, manifests."""
import json
import multiprocessing
import os
import sys

import numpy as np
import soundfile as sf

from nemo_core.deployment import write_atomic

from .audio import load_audio


def convert_to_wav(job):
    """(source, destination, sample_rate) -> duration; mono 16-bit PCM WAV."""
    source, destination, sample_rate = job
    samples = load_audio(source, sample_rate)
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    tmp = destination + ".part"
    sf.write(tmp, np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, destination)
    return len(samples) / sample_rate


def parallel_map(fn, jobs, workers=None, desc="processing"):
    """``[fn(job) for job in jobs]`` over a process pool, with a progress bar on a terminal."""
    from tqdm import tqdm

    workers = workers or os.cpu_count() or 1
    if workers <= 1 or len(jobs) < 2:
        return [fn(job) for job in tqdm(jobs, desc=desc, disable=not sys.stderr.isatty())]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return list(tqdm(pool.imap(fn, jobs, chunksize=4), total=len(jobs), desc=desc,
                         disable=not sys.stderr.isatty()))


def write_manifest(rows, path):
    """Write ``rows`` as JSON lines to ``path``, whole or not at all (``write_atomic``), so a manifest
    that exists is never a truncated one."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)

    write_atomic(path, write)
    return path


def read_manifest_rows(path):
    """Raw manifest rows (dicts, extra keys kept) with absolute audio paths; errors name file:line."""
    from .manifest import check_row, iter_manifest_rows

    folder = os.path.dirname(os.path.abspath(path))
    rows = []
    for where, row in iter_manifest_rows(path):
        row["audio_filepath"] = check_row(row, where, folder, require_text=False).audio_filepath
        rows.append(row)
    return rows
