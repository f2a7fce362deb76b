#!/usr/bin/env python
"""Convert the CMU AN4 corpus (``an4_sphere.tar.gz`` layout) to 16 kHz WAV and
write ``train_manifest.json`` / ``test_manifest.json``.

Expected under ``--data_root``::

    an4/etc/an4_train.fileids, an4_train.transcription, an4_test.fileids, an4_test.transcription
    an4/wav/<fileid>.sph            (NIST SPHERE, read by libsndfile)
"""
import argparse
import logging
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from nemo_asr.parts.data_prep import convert_to_wav, parallel_map, write_manifest  # noqa: E402
from nemo_core.utils.cli import UserError, add_debug_flag, one_line_errors  # noqa: E402

logger = logging.getLogger("process_an4_data")
_TRANSCRIPT = re.compile(r"^(?:<s>)?\s*(?P<text>.*?)\s*(?:</s>)?\s*\((?P<id>[^)]+)\)\s*$")


def read_split(root, split):
    etc = os.path.join(root, "an4", "etc")
    fileids_path = os.path.join(etc, f"an4_{split}.fileids")
    transcription_path = os.path.join(etc, f"an4_{split}.transcription")
    for path in (fileids_path, transcription_path):
        if not os.path.isfile(path):
            raise UserError(f"AN4 file {path} is missing; is --data_root the folder holding an4/ "
                            f"(an4_sphere.tar.gz extracted)?")
    with open(fileids_path) as handle:
        fileids = [line.strip() for line in handle if line.strip()]
    texts = []
    with open(transcription_path) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            match = _TRANSCRIPT.match(line.strip())
            if not match:
                raise UserError(f"{transcription_path}:{number}: cannot parse {line.strip()!r}; expected "
                                f"'<s> text </s> (file_id)'")
            texts.append((match.group("id"), match.group("text").lower()))
    if len(texts) != len(fileids):
        raise UserError(f"{fileids_path} lists {len(fileids)} file ids but {transcription_path} has "
                        f"{len(texts)} transcriptions; they must match line for line")
    pairs = []
    for fileid, (utt, text) in zip(fileids, texts):
        if os.path.basename(fileid) != utt:
            raise UserError(f"{fileids_path}: file id {fileid} does not match transcription id {utt} of "
                            f"{transcription_path}; they must match line for line")
        pairs.append((os.path.join(root, "an4", "wav", fileid + ".sph"), text))
    return pairs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", required=True)
    parser.add_argument("--output_dir", default=None, help="default: <data_root>/an4_converted")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with one_line_errors(os.path.basename(__file__), args.debug):
        return convert(args)


def convert(args):
    out = args.output_dir or os.path.join(args.data_root, "an4_converted")
    manifests = []
    for split in ("train", "test"):
        pairs = read_split(args.data_root, split)
        jobs = [(sph, os.path.join(out, "wav", split, os.path.basename(sph)[:-4] + ".wav"), 16000) for sph, _ in pairs]
        durations = parallel_map(convert_to_wav, jobs, args.workers, desc=f"an4 {split}")
        rows = [{"audio_filepath": os.path.abspath(wav), "duration": round(d, 4), "text": text}
                for (_, wav, _), d, (_, text) in zip(jobs, durations, pairs)]
        manifests.append(write_manifest(rows, os.path.join(out, f"{split}_manifest.json")))
        logger.info("%s: %d utterances -> %s", split, len(rows), manifests[-1])
    return manifests


if __name__ == "__main__":
    main()
