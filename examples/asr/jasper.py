#!/usr/bin/env python
"""Train a Jasper/QuartzNet CTC speech recogniser: a typed DAG on nemo_core.

    python examples/asr/jasper.py --model_config examples/asr/configs/jasper10x5dr.yaml \\
        --train_dataset train.json --eval_datasets dev_clean.json dev_other.json --num_epochs 50

Also under ``python -m torch.distributed.launch --nproc_per_node=N`` and
``torchrun --nproc_per_node=N``. The experiment folder
``<work_dir>/<exp_name>/`` receives logs, TensorBoard events, checkpoints,
the resolved config and ``results.json``.
"""
import argparse
import copy
import functools
import json
import os
import sys

from ruamel.yaml import YAML

import nemo_core
import nemo_asr
from nemo_asr.helpers import monitor_asr_train_progress, process_evaluation_batch, process_evaluation_epoch
from nemo_asr.model_config import load_model_config, modules_from_config
from nemo_core.utils.cli import one_line_errors


def build_parser(description=__doc__, default_config=None):
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--model_config", default=default_config, help="YAML under examples/asr/configs/")
    add("--train_dataset", help="training manifest(s), comma-separated")
    add("--eval_datasets", nargs="*", default=[], help="one eval DAG (and WER) per manifest")
    add("--final_eval_datasets", nargs="*", default=[], help="evaluated once, after training")
    add("--batch_size", type=int, default=32, help="per process")
    add("--eval_batch_size", type=int, default=None)
    add("--num_epochs", type=int, default=None)
    add("--max_steps", type=int, default=None)
    add("--lr", type=float, default=0.01)
    add("--warmup_steps", type=int, default=0)
    add("--weight_decay", type=float, default=0.001)
    add("--optimizer", default="novograd", help="novograd, sgd, adam, adamw")
    add("--beta1", type=float, default=0.95)
    add("--beta2", type=float, default=0.5)
    add("--lr_policy", default="CosineAnnealing", help="a nemo_core.optim policy name, or none")
    add("--min_lr", type=float, default=0.0)
    add("--iter_per_step", type=int, default=1, help="batches per optimiser step (gradient accumulation)")
    add("--grad_norm_clip", type=float, default=None)
    add("--amp_opt_level", default="O0", choices=[f"O{m.value}" for m in nemo_core.Optimization])
    add("--exp_name", default="asr_experiment")
    add("--work_dir", default="work_dir")
    add("--checkpoint_save_freq", type=int, default=1000, help="steps between checkpoints")
    add("--load_dir", default=None,
        help="resume from the newest complete checkpoint set here (must exist; a folder with weights but no "
             "trainer state initialises the weights and starts at step 0). Without it the run resumes from its "
             "own <work_dir>/<exp_name>/checkpoints when that holds a set")
    add("--finetune_from", default=None,
        help="folder with NGC-format *JasperEncoder-STEP-*.pt / *JasperDecoderForCTC-STEP-*.pt")
    add("--finetune_pattern", default="", help="only checkpoint files whose name contains this, e.g. 'quartznet15x5'")
    add("--perturb_config", default=None, help="YAML of audio perturbations for training")
    add("--eval_freq", type=int, default=None, help="steps between evaluations (default: every epoch)")
    add("--log_freq", type=int, default=25, help="steps between training log lines")
    add("--random_seed", type=int, default=None)
    add("--num_workers", type=int, default=0)
    add("--bucketing", action="store_true", help="group utterances of similar length in batches")
    add("--amp_dtype", default="auto", choices=["auto", "float16", "bfloat16"],
        help="half type for O1-O3: auto = float16 on GPU (with loss scaling), bfloat16 on CPU; float16 on CPU "
             "runs exactly what a GPU runs")
    reliability = parser.add_argument_group("reliability (README: Reliability)")
    reliability.add_argument(
        "--bad_utterances", default="skip", choices=["skip", "stop"],
        help="training utterances that are unreadable, have NaN/inf samples or a transcript CTC cannot align: "
             "skip them (each listed in <exp_dir>/dropped_utterances.jsonl) or stop with an error (default: skip)")
    reliability.add_argument(
        "--ctc_zero_infinity", action=argparse.BooleanOptionalAction, default=True,
        help="an utterance CTC cannot align contributes zero loss instead of inf (reported; default: on)")
    reliability.add_argument(
        "--max_consecutive_skips", type=int, default=nemo_core.actions.guard.DEFAULT_MAX_CONSECUTIVE_SKIPS,
        help="steps with non-finite loss/gradients are skipped; stop after this many in a row (0: never; "
             "default: %(default)s)")
    reliability.add_argument("--stop_on_nan_loss", action="store_true",
                             help="stop at the first non-finite loss (weights stay those of the last good step)")
    add("--debug", action="store_true", help="show the full traceback of an error")
    nemo_core.add_distributed_args(parser)
    return parser


def data_layer_kwargs(cfg, split):
    section = dict(cfg.get("AudioToTextDataLayer", {}))
    kwargs = {k: v for k, v in section.items() if k not in ("train", "eval")}
    kwargs.update(section.get(split, {}))
    return kwargs


def finetune(encoder, decoder, folder, logger, pattern=""):
    """Initialise from NGC-format checkpoints (newest complete set in ``folder``);
    a decoder for another vocabulary (or none in the folder) starts from scratch."""
    loaded = nemo_core.restore_modules([encoder, decoder], folder, pattern, strict=False, logger=logger)
    if encoder not in loaded.module_states:
        raise nemo_core.CheckpointError(f"--finetune_from {folder}: the encoder checkpoint cannot be used: "
                                        f"{loaded.skipped.get(encoder.name, 'no file')}")
    logger.info("Encoder initialised from %s", loaded.set.files[encoder.name])
    if decoder in loaded.module_states:
        logger.info("Decoder initialised from %s", loaded.set.files[decoder.name])
    elif decoder.name in loaded.set.files:
        logger.warning("Decoder checkpoint %s does not fit this model (%s output classes): the vocabulary differs, "
                       "so the decoder is re-initialised", loaded.set.files[decoder.name], decoder.num_classes)
    else:
        logger.warning("No decoder checkpoint in %s; the decoder starts from scratch", folder)


def main(argv=None, parser=None):
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    if not args.train_dataset:
        parser.error("--train_dataset is required")
    if args.num_epochs is None and args.max_steps is None:
        args.num_epochs = 10
    with one_line_errors("jasper.py", args.debug):
        return train(args, load_model_config(args.model_config))


def train(args, cfg):
    exp_dir = os.path.join(args.work_dir, args.exp_name)
    nf = nemo_core.NeuralModuleFactory(
        local_rank=args.local_rank,
        optimization_level=nemo_core.Optimization.from_opt_level(args.amp_opt_level),
        amp_dtype=None if getattr(args, "amp_dtype", "auto") == "auto" else args.amp_dtype,
        random_seed=args.random_seed, log_dir=exp_dir, checkpoint_dir=os.path.join(exp_dir, "checkpoints"),
        create_tb_writer=True, cudnn_benchmark=True)
    logger = nf.logger
    labels = cfg["labels"]
    if nf.is_main:
        resolved = copy.deepcopy(cfg)
        resolved["args"] = {k: v for k, v in vars(args).items()}
        with open(os.path.join(exp_dir, "config.yaml"), "w") as handle:
            YAML(typ="safe").dump(resolved, handle)

    sample_rate = cfg.get("sample_rate", 16000)
    # every utterance dropped (unreadable, NaN/inf samples, too long for CTC, duration filters) is listed here
    checks = {"skip_bad_files": args.bad_utterances == "skip",
              "dropped_report": os.path.join(exp_dir, "dropped_utterances.jsonl")}
    if nf.is_main and os.path.exists(checks["dropped_report"]):  # a resumed run lists its drops afresh
        os.remove(checks["dropped_report"])
    train_layer = nemo_asr.AudioToTextDataLayer(
        manifest_filepath=args.train_dataset, labels=labels, batch_size=args.batch_size, sample_rate=sample_rate,
        num_workers=args.num_workers, perturb_config=args.perturb_config, bucketing=args.bucketing,
        **checks, **data_layer_kwargs(cfg, "train"))
    eval_sets = [(path, False) for path in args.eval_datasets] + [(path, True) for path in args.final_eval_datasets]
    eval_layers = [nemo_asr.AudioToTextDataLayer(
        manifest_filepath=path, labels=labels, batch_size=args.eval_batch_size or args.batch_size,
        sample_rate=sample_rate, num_workers=args.num_workers, **checks, **data_layer_kwargs(cfg, "eval"))
        for path, _ in eval_sets]
    preprocessor, encoder, decoder = modules_from_config(cfg)
    train_layer.drop_ctc_infeasible(preprocessor, encoder)
    augment = (nemo_asr.SpectrogramAugmentation(**cfg["SpectrogramAugmentation"])
               if cfg.get("SpectrogramAugmentation") else None)
    ctc_loss = nemo_asr.CTCLossNM(num_classes=len(labels), zero_infinity=args.ctc_zero_infinity)
    greedy = nemo_asr.GreedyCTCDecoder()
    if args.finetune_from:
        finetune(encoder, decoder, args.finetune_from, logger, args.finetune_pattern)
    logger.info("Model: %s encoder weights, %s decoder weights, %d train utterances (%.2f h)",
                f"{encoder.num_weights:,}", f"{decoder.num_weights:,}", len(train_layer),
                train_layer.total_duration / 3600)

    # training DAG
    audio, audio_len, transcript, transcript_len = train_layer()
    spec, spec_len = preprocessor(input_signal=audio, length=audio_len)
    if augment is not None:
        spec = augment(input_spec=spec)
    encoded, encoded_len = encoder(audio_signal=spec, length=spec_len)
    log_probs = decoder(encoder_output=encoded)
    predictions = greedy(log_probs=log_probs)
    loss = ctc_loss(log_probs=log_probs, targets=transcript, input_length=encoded_len, target_length=transcript_len)

    callbacks = [nemo_core.SimpleLossLoggerCallback(
        tensors=[loss, predictions, transcript, transcript_len], step_freq=args.log_freq,
        print_func=functools.partial(monitor_asr_train_progress, labels=labels, logger=logger))]
    # one eval DAG per dataset, sharing the modules (and weights) of the training DAG
    evaluators = {}
    steps_per_epoch = -(-len(train_layer) // (args.batch_size * nf.world_size * args.iter_per_step))
    for (path, final_only), layer in zip(eval_sets, eval_layers):
        tag = os.path.splitext(os.path.basename(path))[0]
        audio_e, audio_len_e, transcript_e, transcript_len_e = layer()
        spec_e, spec_len_e = preprocessor(input_signal=audio_e, length=audio_len_e)
        encoded_e, encoded_len_e = encoder(audio_signal=spec_e, length=spec_len_e)
        log_probs_e = decoder(encoder_output=encoded_e)
        predictions_e = greedy(log_probs=log_probs_e)
        loss_e = ctc_loss(log_probs=log_probs_e, targets=transcript_e, input_length=encoded_len_e,
                          target_length=transcript_len_e)
        evaluators[tag] = nemo_core.EvaluatorCallback(
            eval_tensors=[loss_e, predictions_e, transcript_e, transcript_len_e],
            user_iter_callback=functools.partial(process_evaluation_batch, labels=labels),
            user_epochs_done_callback=functools.partial(process_evaluation_epoch, tag=tag, logger=logger),
            eval_step=None if final_only else args.eval_freq,
            eval_epoch=None if final_only or args.eval_freq else 1)
    callbacks += list(evaluators.values())
    callbacks.append(nemo_core.CheckpointCallback(
        folder=nf.checkpoint_dir, load_from_folder=args.load_dir, step_freq=args.checkpoint_save_freq))

    policy = None
    if args.lr_policy and args.lr_policy.lower() != "none":
        policy = nemo_core.optim.get_lr_policy(args.lr_policy, warmup_steps=args.warmup_steps, min_lr=args.min_lr)
    params = {"lr": args.lr, "weight_decay": args.weight_decay}
    if args.num_epochs is not None:
        params["num_epochs"] = args.num_epochs
    if args.max_steps is not None:
        params["max_steps"] = args.max_steps
    if args.grad_norm_clip:
        params["grad_norm_clip"] = args.grad_norm_clip
    if args.optimizer in ("novograd", "adam", "adamw"):
        params["betas"] = (args.beta1, args.beta2)
    logger.info("About %d steps per epoch", steps_per_epoch)
    result = nf.train([loss], callbacks=callbacks, optimizer=args.optimizer, optimization_params=params,
                      lr_policy=policy, batches_per_step=args.iter_per_step, stop_on_nan_loss=args.stop_on_nan_loss,
                      max_consecutive_skips=args.max_consecutive_skips)
    return report(nf, exp_dir, evaluators, result)


def report(nf, exp_dir, evaluators, result):
    """Print the WER table and write results.json (rank 0)."""
    if not nf.is_main:
        return None
    rows = {}
    for tag, evaluator in evaluators.items():
        if evaluator.history:
            step, values = evaluator.history[-1]
            rows[tag] = {"step": step, "wer": values[f"Evaluation_WER_{tag}"], "loss": values[f"Evaluation_Loss_{tag}"],
                         "history": [(s, v[f"Evaluation_WER_{tag}"]) for s, v in evaluator.history]}
    summary = {"train": result, "eval": rows}
    with open(os.path.join(exp_dir, "results.json"), "w") as handle:
        json.dump(summary, handle, indent=1)
    if rows:
        print("\n| eval set | step | WER | loss |\n|---|---|---|---|")
        for tag, row in rows.items():
            print(f"| {tag} | {row['step']} | {row['wer'] * 100:.2f}% | {row['loss']:.3f} |")
    sys.stdout.flush()
    return summary


if __name__ == "__main__":
    main()
