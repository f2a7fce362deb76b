#!/usr/bin/env python
"""Merge manifests into one, optionally keeping only durations in
[--min_duration, --max_duration]; relative audio paths become absolute."""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from nemo_asr.parts.data_prep import read_manifest_rows, write_manifest  # noqa: E402
from nemo_core.utils.cli import add_debug_flag, one_line_errors  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--manifests", nargs="+", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--min_duration", type=float, default=None)
    parser.add_argument("--max_duration", type=float, default=None)
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    with one_line_errors(os.path.basename(__file__), args.debug):
        return merge(args)


def merge(args):
    rows, dropped = [], 0
    for path in args.manifests:
        for row in read_manifest_rows(path):
            if (args.min_duration is not None and row["duration"] < args.min_duration) or \
                    (args.max_duration is not None and row["duration"] > args.max_duration):
                dropped += 1
                continue
            rows.append(row)
    write_manifest(rows, args.output)
    hours = sum(r["duration"] for r in rows) / 3600
    print(f"{len(rows)} utterances ({hours:.2f} h) written to {args.output}; {dropped} outside the duration range")
    return rows


if __name__ == "__main__":
    main()
