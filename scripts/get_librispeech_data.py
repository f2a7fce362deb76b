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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from nemo_asr.parts.data_prep import convert_to_wav, parallel_map, write_manifest  # noqa: E402

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
    logger.info("Downloading %s", URL.format(name=name))
    try:
        urllib.request.urlretrieve(URL.format(name=name), archive + ".part")
    except OSError as err:
        raise SystemExit(f"{subset}: no archive or tree under --archive_dir/--data_root and the download "
                         f"failed ({err}); fetch {URL.format(name=name)} yourself and pass --archive_dir") from err
    os.replace(archive + ".part", archive)
    return extract(archive, data_root, name)


def extract(archive, data_root, name):
    logger.info("Extracting %s", archive)
    with tarfile.open(archive) as tar:
        tar.extractall(data_root, filter="data")
    tree = os.path.join(data_root, "LibriSpeech", name)
    if not os.path.isdir(tree):
        raise SystemExit(f"{archive} did not contain LibriSpeech/{name}")
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
                        raise SystemExit(f"{path}:{number}: line has no transcript")
                    texts[utt] = text.lower()
    return texts


def prepare(subset, data_root, archive_dir, workers, sample_rate=16000):
    tree = find_source(subset, data_root, archive_dir)
    texts = transcripts(tree)
    flacs = sorted(glob.glob(os.path.join(tree, "*", "*", "*.flac")))
    if not flacs:
        raise SystemExit(f"No .flac files under {tree}")
    wav_dir = os.path.join(data_root, "wav", subset)
    jobs, rows = [], []
    for flac in flacs:
        utt = os.path.splitext(os.path.basename(flac))[0]
        if utt not in texts:
            raise SystemExit(f"{flac}: no transcript line for {utt}")
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    subsets = SUBSETS if args.data_sets == "ALL" else [s.strip().replace("-", "_") for s in args.data_sets.split(",")]
    unknown = [s for s in subsets if s not in SUBSETS]
    if unknown:
        parser.error(f"unknown data set(s) {', '.join(unknown)}; valid: {', '.join(SUBSETS)}, ALL")
    os.makedirs(args.data_root, exist_ok=True)
    return [prepare(s, args.data_root, args.archive_dir, args.workers) for s in subsets]


if __name__ == "__main__":
    main()
