#!/usr/bin/env python
"""Prepare LibriSpeech: download (where a network exists) or take archives /
extracted trees you already have, convert FLAC to 16 kHz WAV in parallel, and
write one manifest per subset (``<data_root>/<subset>.json``) with durations.

    python scripts/get_librispeech_data.py --data_root data --data_sets dev_clean,train_clean_100
    python scripts/get_librispeech_data.py --data_root data --data_sets ALL --archive_dir /mnt/downloads
"""
import argparse
import glob
import logging
import os
import sys
import tarfile
import urllib.request

from tqdm import tqdm

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from nemo_asr.parts.data_prep import convert_to_wav, parallel_map, write_manifest  # noqa: E402
from nemo_core.utils.cli import UserError, add_debug_flag, one_line_errors  # noqa: E402

logger = logging.getLogger("get_librispeech_data")
URL = "https://www.openslr.org/resources/12/{name}.tar.gz"
SUBSETS = ["dev_clean", "dev_other", "test_clean", "test_other", "train_clean_100", "train_clean_360",
           "train_other_500"]


def folder_name(subset):
    return subset.replace("_", "-")  # dev_clean -> dev-clean


def find_source(subset, data_root, archive_dir):
    """An extracted tree or archive for ``subset``; downloads when neither exists."""
    name = folder_name(subset)
    for base in filter(None, (archive_dir, data_root)):
        for tree in (os.path.join(base, "LibriSpeech", name), os.path.join(base, name)):
            if os.path.isdir(tree):
                return tree
        archive = os.path.join(base, f"{name}.tar.gz")
        if os.path.isfile(archive):
            return extract(archive, data_root, name)
    archive = os.path.join(data_root, f"{name}.tar.gz")
    download(URL.format(name=name), archive, subset)
    return extract(archive, data_root, name)


def show_progress():
    return sys.stderr.isatty()


def download(url, archive, subset):
    """``url`` to ``archive`` (through ``archive.part``), with a progress bar in bytes."""
    logger.info("Downloading %s", url)
    with tqdm(unit="B", unit_scale=True, unit_divisor=1024, desc=f"download {os.path.basename(archive)}",
              disable=not show_progress()) as bar:
        def report(blocks, block_size, total):
            if total > 0:
                bar.total = total
            bar.update(blocks * block_size - bar.n)

        try:
            urllib.request.urlretrieve(url, archive + ".part", reporthook=report)
        except OSError as err:
            raise UserError(f"{subset}: no archive or tree under --archive_dir/--data_root and the download "
                            f"failed ({err}); fetch {url} yourself and pass --archive_dir") from err
    os.replace(archive + ".part", archive)


def extract(archive, data_root, name):
    """Unpack ``archive`` under ``data_root`` in one streaming pass, with a progress bar over its bytes."""
    logger.info("Extracting %s", archive)
    try:
        with open(archive, "rb") as raw, \
                tqdm.wrapattr(raw, "read", total=os.path.getsize(archive), desc=f"extract {os.path.basename(archive)}",
                              disable=not show_progress()) as counted, \
                tarfile.open(fileobj=counted, mode="r|*") as tar:
            tar.extractall(data_root, filter="data")
    except (tarfile.TarError, EOFError) as err:
        raise UserError(f"{archive}: not a readable .tar.gz archive ({err}); delete it and download it again") from err
    tree = os.path.join(data_root, "LibriSpeech", name)
    if not os.path.isdir(tree):
        raise UserError(f"{archive} did not contain LibriSpeech/{name}; is it the LibriSpeech {name} archive?")
    return tree


def transcripts(tree):
    """utterance id -> lower-case text, from every ``*.trans.txt`` under ``tree``."""
    texts = {}
    for path in glob.glob(os.path.join(tree, "*", "*", "*.trans.txt")):
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    utt, _, text = line.strip().partition(" ")
                    if not text:
                        raise UserError(f"{path}:{number}: line has no transcript; fix or re-extract the archive")
                    texts[utt] = text.lower()
    return texts


def prepare(subset, data_root, archive_dir, workers, sample_rate=16000):
    tree = find_source(subset, data_root, archive_dir)
    texts = transcripts(tree)
    flacs = sorted(glob.glob(os.path.join(tree, "*", "*", "*.flac")))
    if not flacs:
        raise UserError(f"No .flac files under {tree}; is it a LibriSpeech tree (<speaker>/<chapter>/*.flac)?")
    wav_dir = os.path.join(data_root, "wav", subset)
    jobs, rows = [], []
    for flac in flacs:
        utt = os.path.splitext(os.path.basename(flac))[0]
        if utt not in texts:
            raise UserError(f"{flac}: no transcript line for {utt} in the *.trans.txt files beside it")
        jobs.append((flac, os.path.join(wav_dir, utt + ".wav"), sample_rate))
    durations = parallel_map(convert_to_wav, jobs, workers, desc=f"{subset} flac->wav")
    for (flac, wav, _), duration in zip(jobs, durations):
        utt = os.path.splitext(os.path.basename(flac))[0]
        rows.append({"audio_filepath": os.path.abspath(wav), "duration": round(duration, 4), "text": texts[utt]})
    manifest = write_manifest(rows, os.path.join(data_root, f"{subset}.json"))
    logger.info("%s: %d utterances, %.2f h -> %s", subset, len(rows), sum(r["duration"] for r in rows) / 3600, manifest)
    return manifest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", required=True)
    parser.add_argument("--data_sets", "--data_set", default="dev_clean",
                        help=f"comma-separated: {', '.join(SUBSETS)} or ALL")
    parser.add_argument("--archive_dir", default=None, help="existing *.tar.gz archives or extracted trees")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    subsets = SUBSETS if args.data_sets == "ALL" else [s.strip().replace("-", "_") for s in args.data_sets.split(",")]
    unknown = [s for s in subsets if s not in SUBSETS]
    if unknown:
        parser.error(f"unknown data set(s) {', '.join(unknown)}; valid: {', '.join(SUBSETS)}, ALL")
    with one_line_errors(os.path.basename(__file__), args.debug):
        if args.archive_dir and not os.path.isdir(args.archive_dir):
            raise UserError(f"--archive_dir {args.archive_dir} is not a folder; give the folder holding the "
                            f"*.tar.gz archives or extracted LibriSpeech trees")
        os.makedirs(args.data_root, exist_ok=True)
        return [prepare(s, args.data_root, args.archive_dir, args.workers) for s in subsets]


if __name__ == "__main__":
    main()
