#!/usr/bin/env python
"""Offline speed perturbation (as in the QuartzNet recipe): for each rate,
resample every utterance so it plays ``rate`` times faster, write the WAVs and
a manifest with the new durations; the output manifest also lists the
originals unless ``--no_original``."""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from nemo_asr.parts.data_prep import parallel_map, read_manifest_rows, write_manifest  # noqa: E402
from nemo_core.utils.cli import UserError, add_debug_flag, one_line_errors  # noqa: E402


def perturb(job):
    import soundfile as sf

    from nemo_asr.parts.audio import load_audio, resample

    source, destination, rate, sample_rate = job
    samples = resample(load_audio(source, sample_rate), sample_rate, int(round(sample_rate / rate)))
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    sf.write(destination, samples, sample_rate, subtype="PCM_16")
    return len(samples) / sample_rate


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input_manifest", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.9, 1.1])
    parser.add_argument("--sample_rate", type=int, default=16000)
    parser.add_argument("--no_original", action="store_true")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    bad = [rate for rate in args.rates if rate <= 0]
    if bad:  # before any work
        parser.error(f"--rates must be positive, got {' '.join(f'{rate:g}' for rate in bad)}")
    with one_line_errors(os.path.basename(__file__), args.debug):
        return perturb_manifest(args)


def perturb_manifest(args):
    rows = read_manifest_rows(args.input_manifest)
    missing = [(number, row["audio_filepath"]) for number, row in enumerate(rows, 1)
               if not os.path.isfile(row["audio_filepath"])]
    if missing:  # before any work
        number, path = missing[0]
        raise UserError(f"{args.input_manifest}: the audio file {path} of utterance {number} does not exist"
                        f"{f' (nor those of {len(missing) - 1} more)' if len(missing) > 1 else ''}; fix the "
                        f"manifest (relative paths resolve against its folder)")
    out_rows = [] if args.no_original else list(rows)
    for rate in args.rates:
        jobs = [(r["audio_filepath"], os.path.join(args.output_dir, f"speed_{rate:g}",
                                                    os.path.splitext(os.path.basename(r["audio_filepath"]))[0] + ".wav"),
                 rate, args.sample_rate) for r in rows]
        durations = parallel_map(perturb, jobs, args.workers, desc=f"speed {rate:g}")
        out_rows += [dict(r, audio_filepath=os.path.abspath(j[1]), duration=round(d, 4))
                     for r, j, d in zip(rows, jobs, durations)]
    name = os.path.splitext(os.path.basename(args.input_manifest))[0]
    output = write_manifest(out_rows, os.path.join(args.output_dir, f"{name}_speed_perturbed.json"))
    print(f"{len(out_rows)} utterances written to {output}")
    return output


if __name__ == "__main__":
    main()
