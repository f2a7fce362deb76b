"""Training data is checked before the first step, and nothing is dropped without being listed.

Real WAV files (soundfile), the real AN4 audio, the real preprocessor and
encoder; no mocks.
"""
import json
import logging
import os

import numpy as np
import pytest
import soundfile as sf
import torch

import nemo_asr
from nemo_asr.parts.audio import NonFiniteSamplesError, audio_header, load_audio
from nemo_asr.parts.data_check import UnusableUtterancesError, check_headers, ctc_required_frames
from nemo_asr.parts.manifest import read_manifests

from conftest import REPO

AN4 = os.path.join(REPO, "tests", "data", "an4_subset")
GOOD = {"audio_filepath": os.path.join(AN4, "wav", "an46-mmap-b.wav"), "duration": 1.0, "text": "stop"}
LABELS = [" "] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["'"]
TINY_ENCODER = [  # odd strides and an even kernel, so the length arithmetic is not just ceil(n / 2)
    {"filters": 8, "repeat": 1, "kernel": [11], "stride": [3], "dilation": [1], "dropout": 0.0, "residual": False},
    {"filters": 8, "repeat": 2, "kernel": [4], "stride": [1], "dilation": [1], "dropout": 0.0, "residual": False,
     "separable": True},
    {"filters": 8, "repeat": 1, "kernel": [4], "stride": [2], "dilation": [1], "dropout": 0.0, "residual": False},
    {"filters": 12, "repeat": 1, "kernel": [5], "stride": [1], "dilation": [2], "dropout": 0.0, "residual": False},
]
SMALL_QN = [  # tests/data/ngc_compat/small_qn.yaml's blocks, smaller filters
    {"filters": 16, "repeat": 1, "kernel": [33], "stride": [2], "dilation": [1], "dropout": 0.0, "residual": False,
     "separable": True},
    {"filters": 16, "repeat": 2, "kernel": [33], "stride": [1], "dilation": [1], "dropout": 0.0, "residual": True,
     "separable": True},
    {"filters": 16, "repeat": 1, "kernel": [29], "stride": [1], "dilation": [2], "dropout": 0.0, "residual": False,
     "separable": True},
    {"filters": 24, "repeat": 1, "kernel": [1], "stride": [1], "dilation": [1], "dropout": 0.0, "residual": False},
]


def write_manifest(path, rows):
    with open(path, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return str(path)


def write_wav(path, seconds, subtype="PCM_16", sr=16000):
    samples = 0.1 * np.sin(np.arange(int(round(seconds * sr))) * 0.05).astype(np.float32)
    sf.write(path, samples, sr, subtype=subtype)
    return str(path)


def layer(manifest, **kwargs):
    kwargs.setdefault("batch_size", 4)
    kwargs.setdefault("shuffle", False)
    return nemo_asr.AudioToTextDataLayer(manifest_filepath=manifest, labels=LABELS, **kwargs)


def report_lines(path):
    rows = [json.loads(line) for line in open(path)]
    assert all(set(r) == {"audio_filepath", "source", "kind", "reason"} for r in rows)
    return rows


def test_non_finite_durations_and_offsets_are_rejected_with_file_and_line(tmp_path):
    for index, (key, value) in enumerate([("duration", float("nan")), ("duration", float("inf")),
                                          ("offset", float("nan"))]):
        path = write_manifest(tmp_path / f"m{index}.json", [GOOD, dict(GOOD, **{key: value})])
        with pytest.raises(nemo_asr.ManifestError, match=f"m{index}.json:2: {key} must be a finite number"):
            layer(path)


def test_wrong_manifest_duration_is_corrected_listed_and_filtered_on_the_true_one(tmp_path, caplog):
    long_wav = write_wav(tmp_path / "long.wav", 30.0)  # 30 s declared as 1.0 s
    manifest = write_manifest(tmp_path / "m.json", [GOOD, {"audio_filepath": long_wav, "duration": 1.0, "text": "hi"}])
    report = tmp_path / "exp" / "dropped_utterances.jsonl"
    with caplog.at_level(logging.WARNING, logger="nemo_asr"):
        data = layer(manifest, max_duration=20.0, dropped_report=str(report))
    assert len(data) == 1 and data.dataset.entries[0].audio_filepath == GOOD["audio_filepath"]
    rows = report_lines(report)
    assert [r["kind"] for r in rows] == ["duration_mismatch", "too_long"]
    assert all(r["audio_filepath"] == long_wav and r["source"].endswith("m.json:2") for r in rows)
    assert "30.000 s" in rows[0]["reason"] and "max_duration 20.0" in rows[1]["reason"]
    summary = [r.message for r in caplog.records if "checked in" in r.message]
    assert len(summary) == 1 and "1 dropped (too_long: 1)" in summary[0] and str(report) in summary[0]
    unfiltered = layer(manifest, max_duration=None, bucketing=True)
    assert unfiltered.dataset.durations == [1.0, 30.0] and unfiltered.bucket_lengths == [1.0, 30.0]
    assert layer(manifest, check_audio=False, max_duration=20.0).dataset.durations == [1.0, 1.0]  # opted out


def test_nan_samples_are_skipped_and_listed_or_raise_naming_file_and_line(tmp_path, caplog):
    samples = np.full(8000, 0.1, dtype=np.float32)
    samples[100] = np.nan
    sf.write(tmp_path / "nan.wav", samples, 16000, subtype="FLOAT")
    with pytest.raises(NonFiniteSamplesError, match="nan.wav holds 1 non-finite"):
        load_audio(str(tmp_path / "nan.wav"), 16000)
    manifest = write_manifest(tmp_path / "m.json", [GOOD, {"audio_filepath": "nan.wav", "duration": 0.5, "text": "a"}])
    strict = layer(manifest)  # the header is fine: only loading can see NaN samples
    with pytest.raises(nemo_asr.AudioLoadError, match=r"nan.wav holds 1 non-finite .*m.json:2"):
        list(strict.make_dataloader(training=False))
    report = tmp_path / "dropped.jsonl"
    skipping = layer(manifest, skip_bad_files=True, dropped_report=str(report), num_workers=1)
    with caplog.at_level(logging.WARNING, logger="nemo_asr"):
        (batch,) = list(skipping.make_dataloader(training=False))  # loaded in a worker process
    assert batch[0].shape[0] == 1 and torch.isfinite(batch[0]).all()
    (row,) = report_lines(report)
    assert row["kind"] == "non_finite_samples" and row["source"].endswith("m.json:2")


def test_unreadable_empty_missing_files_dropped_and_listed_or_one_error(tmp_path, caplog):
    (tmp_path / "garbage.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    (tmp_path / "folder.wav").mkdir()
    write_wav(tmp_path / "short.wav", 0.5)
    bad = [{"audio_filepath": name, "duration": 1.0, "text": "a"}
           for name in ("garbage.wav", "empty.wav", "folder.wav", "missing.wav")]
    bad.append({"audio_filepath": "short.wav", "duration": 0.2, "offset": 0.6, "text": "a"})  # past the end
    manifest = write_manifest(tmp_path / "m.json", [GOOD] + bad)
    with pytest.raises(nemo_asr.AudioLoadError, match="folder.wav is a folder"):
        audio_header(str(tmp_path / "folder.wav"))
    assert audio_header(GOOD["audio_filepath"]) == (16000, 16000)

    report = tmp_path / "strict.jsonl"
    with pytest.raises(UnusableUtterancesError) as info:
        layer(manifest, dropped_report=str(report))
    message = str(info.value)
    assert message.startswith("5 utterance(s) cannot be used (unreadable: 5)")
    for line, name in enumerate(("garbage.wav", "empty.wav", "folder.wav", "missing.wav", "short.wav"), 2):
        assert f"m.json:{line}: " in message and name in message
    assert "has no samples" in message and "is a folder" in message and "past the end" in message
    assert f"all are listed in {report}" in message and len(report_lines(report)) == 5
    assert isinstance(info.value, nemo_asr.ManifestError)

    skipped = tmp_path / "skipped.jsonl"
    data = layer(manifest, skip_bad_files=True, dropped_report=str(skipped))
    assert len(data) == 1
    rows = report_lines(skipped)
    assert [r["kind"] for r in rows] == ["unreadable"] * 5
    assert [r["source"].rsplit(":", 1)[1] for r in rows] == ["2", "3", "4", "5", "6"]
    entries = read_manifests(manifest, check_files=False)
    assert check_headers(entries, num_threads=3) == check_headers(entries, num_threads=1)  # threads: same answer
    with caplog.at_level(logging.WARNING, logger="nemo_asr"):  # without a report file: one warning each
        layer(manifest, skip_bad_files=True)
    assert sum("Dropped utterance [unreadable]" in r.message for r in caplog.records) == 5


def test_ctc_infeasible_utterance_dropped_with_the_real_modules(tmp_path):
    clip = write_wav(tmp_path / "clip.wav", 0.1)
    text = "abcdefghij" * 6  # 60 characters, no adjacent repeats
    manifest = write_manifest(tmp_path / "m.json", [GOOD, {"audio_filepath": clip, "duration": 0.1, "text": text}])
    pre = nemo_asr.AudioToMelSpectrogramPreprocessor(dither=0.0)
    encoder = nemo_asr.JasperEncoder(jasper=SMALL_QN, activation="relu", feat_in=64)
    with pytest.raises(UnusableUtterancesError, match=r"1 utterance\(s\) cannot be used \(ctc_infeasible: 1\)"):
        layer(manifest, min_duration=0.05).drop_ctc_infeasible(pre, encoder)
    report = tmp_path / "dropped.jsonl"
    data = layer(manifest, min_duration=0.05, skip_bad_files=True, bucketing=True, dropped_report=str(report))
    (dropped,) = data.drop_ctc_infeasible(pre, encoder)
    assert dropped.kind == "ctc_infeasible" and dropped.audio_filepath == clip
    assert "needs 60 CTC frames" in dropped.reason and "only 5 frames" in dropped.reason  # 10 mel frames / 2
    assert len(data) == 1 and data.bucket_lengths == [1.0]
    (row,) = report_lines(report)
    assert row == {"audio_filepath": clip, "source": dropped.source, "kind": "ctc_infeasible",
                   "reason": dropped.reason}


def test_encoded_lengths_equal_the_forward_pass():
    samples = torch.tensor([1, 159, 160, 161, 1601, 4000, 7777, 16000])
    pre = nemo_asr.AudioToMelSpectrogramPreprocessor(dither=0.0)
    audio = torch.randn(len(samples), int(samples.max())) * 0.1
    with torch.no_grad():
        spec, spec_len = pre(input_signal=audio, length=samples)
        assert torch.equal(pre.frames_for_samples(samples), spec_len)
        for blocks, stride, channels in ((TINY_ENCODER, 6, 12), (SMALL_QN, 2, 24)):
            encoder = nemo_asr.JasperEncoder(jasper=blocks, activation="relu", feat_in=64)
            encoder.eval()
            _, encoded_len = encoder(audio_signal=spec, length=spec_len)
            assert torch.equal(encoder.encoded_lengths(pre.frames_for_samples(samples)), encoded_len)
            assert encoder.total_stride == stride and encoder.out_channels == channels
    mfcc = nemo_asr.AudioToMFCCPreprocessor(n_mfcc=20)
    assert torch.equal(mfcc.frames_for_samples(samples), mfcc(input_signal=audio, length=samples)[1])


def test_ctc_required_frames_counts_a_blank_between_repeats():
    assert ctc_required_frames([1, 1, 2]) == 4 and ctc_required_frames("hello") == 6
    assert ctc_required_frames([3, 3, 3]) == 5 and ctc_required_frames([]) == 0
    from nemo_asr.losses import ctc_required_frames as batched

    targets = torch.tensor([[1, 1, 2, 2], [3, 3, 3, 0], [5, 0, 0, 0]])
    assert batched(targets, torch.tensor([4, 3, 1])).tolist() == [6, 5, 1]


def test_ctc_loss_infeasible_utterance_zero_loss_finite_gradient_and_warning(caplog):
    torch.manual_seed(0)
    logits = torch.randn(2, 6, len(LABELS) + 1, requires_grad=True)
    targets = torch.tensor([[1, 2, 3, 0], [4, 4, 5, 5]])  # the second needs 6 frames (2 repeats)
    input_length, target_length = torch.tensor([6, 5]), torch.tensor([3, 4])
    loss = nemo_asr.CTCLossNM(num_classes=len(LABELS), zero_infinity=True, reduction="none")
    with caplog.at_level(logging.WARNING, logger="nemo_asr"):
        losses = loss(log_probs=logits.log_softmax(-1), targets=targets, input_length=input_length,
                      target_length=target_length)
    assert losses[1].item() == 0.0 and torch.isfinite(losses[0]) and losses[0] > 0
    losses.sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[0].abs().sum() > 0
    assert logits.grad[1].abs().sum() == 0
    (warning,) = [r.message for r in caplog.records if "CTC cannot align" in r.message]
    assert "1 of 2 utterance(s)" in warning and "zero loss" in warning and "Running total: 1" in warning

    default = nemo_asr.CTCLossNM(num_classes=len(LABELS))  # zero_infinity=False, NeMo's default: unchanged
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nemo_asr"), torch.no_grad():
        for _ in range(100):
            value = default(log_probs=logits.log_softmax(-1), targets=targets, input_length=input_length,
                            target_length=target_length)
    assert torch.isinf(value)
    warnings = [r.message for r in caplog.records if "CTC cannot align" in r.message]
    assert len(warnings) == 6  # the first 5 batches, then the 100th
    assert "infinite loss" in warnings[-1] and "Running total: 100 utterance(s) in 100 batch(es)" in warnings[-1]
