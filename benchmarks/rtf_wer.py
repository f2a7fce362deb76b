"""Real-time factor of the whole pipeline (features + acoustic model + greedy
decode) and WER on a held-out manifest, for PyTorch fp32 eager vs PyTorch
int8 (torch.ao: ``--torch_int8 torch_static`` and/or ``torch_dynamic``) vs ONNX
Runtime fp32 vs ONNX Runtime int8 (and PyTorch bf16), as the quantisation
tutorial measures them: warm-up first, then the whole set, one utterance at a
time (batch 1, as a server would see requests), the pipelines interleaved
utterance by utterance. Prints the WER change and the RTF ratio; writes JSON.

Defaults use the demo model and corpus (run the demo first); any model config
works, DeepSpeech2 included (``--model_config
examples/asr/configs/deepspeech2_demo.yaml --load_dir ...``).
"""
import argparse
import os
import sys
import tempfile
import time

from ruamel.yaml import YAML

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.join(HERE, "..")
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "scripts"))

import nemo_core  # noqa: E402
from nemo_asr.export import AcousticPipeline, export_pipeline  # noqa: E402
from nemo_asr.helpers import post_process_predictions, post_process_transcripts  # noqa: E402
from nemo_asr.inference import Recognizer  # noqa: E402
from nemo_asr.inference_runner import InferenceRunner  # noqa: E402
from nemo_asr.metrics import word_error_rate  # noqa: E402
from nemo_asr.quantization import (TORCH_METHODS, QuantizationError, feature_batches, quantize_pipeline,  # noqa: E402
                                   quantize_pipeline_dynamic, quantize_torch)
from results_file import machine_info, write_results  # noqa: E402

DEMO = os.path.join(REPO, "work_dir")
# interleaved pipelines: ONNX Runtime's threads must not spin-wait on the cores PyTorch runs on next
NO_SPINNING = {"session.intra_op.allow_spinning": "0"}


def evaluate_side_by_side(recognizer, runners, batches, warmup):
    """Every pipeline on every utterance, interleaved (the order rotates per
    utterance), so that load on a shared machine hits all pipelines alike."""
    names = list(runners)
    for audio, audio_len, _, _ in batches[:warmup]:
        for runner in runners.values():
            runner(audio, audio_len)
    hypotheses = {name: [] for name in names}
    seconds = {name: 0.0 for name in names}
    references, audio_s = [], 0.0
    for index, (audio, audio_len, transcript, transcript_len) in enumerate(batches):
        for name in names[index % len(names):] + names[:index % len(names)]:
            started = time.perf_counter()
            log_probs, lengths = runners[name](audio, audio_len)
            predictions = recognizer.greedy(log_probs=log_probs, log_probs_length=lengths)
            seconds[name] += time.perf_counter() - started
            hypotheses[name] += post_process_predictions([predictions], recognizer.labels)
        references += post_process_transcripts([transcript], [transcript_len], recognizer.labels)
        audio_s += float(audio_len.sum()) / recognizer.sample_rate
    return {name: {"wer": word_error_rate(hypotheses[name], references)[0], "rtf": seconds[name] / audio_s,
                   "audio_s": audio_s, "processing_s": seconds[name]} for name in names}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_config", default=os.path.join(REPO, "examples", "asr", "configs", "quartznet_demo.yaml"))
    parser.add_argument("--load_dir", default=os.path.join(DEMO, "quartznet_demo", "checkpoints"))
    parser.add_argument("--manifest", default=os.path.join(DEMO, "demo_corpus", "test_manifest.json"))
    parser.add_argument("--calibration_manifest", default=os.path.join(DEMO, "demo_corpus", "train_manifest.json"))
    parser.add_argument("--num_calibration", type=int, default=64)
    parser.add_argument("--torch_int8", nargs="*", default=list(TORCH_METHODS), choices=TORCH_METHODS,
                        help="torch.ao int8 pipelines to add (default: both; none: leave them out)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--max_utterances", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "rtf_wer.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.max_utterances, args.num_calibration, args.warmup = 4, 4, 1
    from quantize import calibration_batches

    with open(args.model_config) as handle:
        cfg = YAML(typ="safe").load(handle)
    nemo_core.NeuralModuleFactory(placement=nemo_core.DeviceType.CPU)
    recognizer = Recognizer(cfg)
    if args.load_dir and os.path.isdir(args.load_dir):
        recognizer.load(args.load_dir)
    elif not args.quick:
        parser.error(f"--load_dir {args.load_dir} does not exist: run the demo (examples/asr/quartznet.py) first")
    layer = recognizer.data_layer(args.manifest, batch_size=1)
    batches = list(layer.make_dataloader(training=False))[: args.max_utterances]
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_pipeline(recognizer.preprocessor, recognizer.encoder, recognizer.decoder,
                               os.path.join(tmp, "model.onnx"))
        calibration = calibration_batches(args.calibration_manifest, args.num_calibration, recognizer.sample_rate)
        int8 = quantize_pipeline(fp32, os.path.join(tmp, "model_int8.onnx"), calibration)
        runners = {
            "pytorch_fp32": recognizer.runner("pytorch", "fp32"),
            "pytorch_bf16": recognizer.runner("pytorch", "bf16"),
            "onnxruntime_fp32": InferenceRunner("onnxruntime", path=fp32, session_config=NO_SPINNING),
            "onnxruntime_int8": InferenceRunner("onnxruntime", path=int8, session_config=NO_SPINNING),
        }
        try:  # ONNX Runtime's dynamic int8 LSTM (DeepSpeech2); other models have nothing it covers
            dynamic = quantize_pipeline_dynamic(fp32, os.path.join(tmp, "model_int8_dynamic.onnx"))
            runners["onnxruntime_int8_dynamic"] = InferenceRunner("onnxruntime", path=dynamic,
                                                                  session_config=NO_SPINNING)
        except QuantizationError as err:
            print(f"no onnxruntime_int8_dynamic row: {err}")
        features = feature_batches(recognizer.preprocessor, calibration)
        for method in args.torch_int8:
            encoder, decoder = quantize_torch(recognizer.encoder, recognizer.decoder, method, features)
            runners[f"pytorch_int8_{method.split('_')[1]}"] = InferenceRunner(
                "pytorch", model=AcousticPipeline(recognizer.preprocessor, encoder, decoder))
        results = evaluate_side_by_side(recognizer, runners, batches, args.warmup)
    base = results["pytorch_fp32"]
    print("| pipeline | WER | WER change vs fp32 (points) | RTF | speed-up vs pytorch fp32 |\n|---|---|---|---|---|")
    for name, r in results.items():
        r["wer_change_points"] = (r["wer"] - base["wer"]) * 100
        r["speedup"] = base["rtf"] / r["rtf"]
        print(f"| {name} | {r['wer'] * 100:.2f}% | {r['wer_change_points']:+.2f} | {r['rtf']:.4f} | {r['speedup']:.2f} |")
    int8_vs_fp32 = results["onnxruntime_fp32"]["rtf"] / results["onnxruntime_int8"]["rtf"]
    for name in ("onnxruntime_int8", "onnxruntime_int8_dynamic"):
        if name in results:
            print(f"\n{name} vs ONNX Runtime fp32: "
                  f"{results['onnxruntime_fp32']['rtf'] / results[name]['rtf']:.2f}x faster, WER "
                  f"{(results[name]['wer'] - results['onnxruntime_fp32']['wer']) * 100:+.2f} points")
    write_results(args.out, {"model_config": os.path.relpath(args.model_config, REPO), "manifest": args.manifest,
                             "utterances": len(batches), "machine": machine_info(),
                             "int8_speedup_over_ort_fp32": int8_vs_fp32, "results": results}, indent=1)
    return results


if __name__ == "__main__":
    main()
