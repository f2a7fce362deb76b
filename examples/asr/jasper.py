#!/usr/bin/env python
"""Train a Jasper/QuartzNet CTC speech recogniser: a typed DAG on nemo_core.

    python examples/asr/jasper.py --model_config examples/asr/configs/jasper10x5dr.yaml \\
        --train_dataset train.json --eval_datasets dev_clean.json dev_other.json --num_epochs 50

Also under ``python -m torch.distributed.launch --nproc_per_node=N`` and
``torchrun --nproc_per_node=N``. The experiment folder
``<work_dir>/<exp_name>/`` receives logs, TensorBoard events, checkpoints,
the resolved config and ``results.json``. A run that fails before its first
training step removes the folders it created (never one that existed).
"""
import argparse
import copy
import functools
import glob
import json
import logging
import os
import shutil
import sys

from ruamel.yaml import YAML

import nemo_core
import nemo_asr
from nemo_asr.ctc_graph import ctc_graph
from nemo_asr.helpers import monitor_asr_train_progress, process_evaluation_batch, process_evaluation_epoch
from nemo_asr.inference import add_pruning_args, pruning_options
from nemo_asr.language_model import DEFAULT_GROW
from nemo_asr.model_config import data_layer_arguments, load_model_config, modules_from_config
from nemo_core.utils.cli import UserError, add_debug_flag, one_line_errors

# optimiser names as NeMo 0.x spelled them (adam_w, lamb) and as torch does (adamw)
OPTIMIZER_NAMES = list(getattr(nemo_core.optim, "OPTIMIZER_NAMES", sorted(nemo_core.optim.OPTIMIZERS)))
BETAS_OPTIMIZERS = ("novograd", "adam", "adamw", "adam_w", "lamb")


def build_parser(description=__doc__, default_config=None):
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--model_config", default=default_config, help="YAML under examples/asr/configs/")
    add("--train_dataset", "--train_manifest", dest="train_dataset", help="training manifest(s), comma-separated")
    add("--eval_datasets", nargs="*", default=[],
        help="one eval DAG (and WER) per manifest, tagged by file name (two files of the same name: by their "
             "folders too, e.g. clean/dev and other/dev; a manifest given twice: dev, dev_2)")
    add("--final_eval_datasets", nargs="*", default=[], help="evaluated once, after training")
    add("--batch_size", type=int, default=32, help="per process")
    add("--eval_batch_size", type=int, default=None)
    add("--num_epochs", type=int, default=None)
    add("--max_steps", type=int, default=None)
    add("--lr", type=float, default=0.01)
    add("--warmup_steps", type=int, default=0)
    add("--weight_decay", type=float, default=0.001)
    add("--optimizer", default="novograd", choices=OPTIMIZER_NAMES, help="default: %(default)s")
    add("--beta1", type=float, default=0.95,
        help=f"for {', '.join(name for name in BETAS_OPTIMIZERS if name in OPTIMIZER_NAMES)}")
    add("--beta2", type=float, default=0.5)
    add("--lr_policy", default="CosineAnnealing", help="a nemo_core.optim policy name, or none")
    add("--min_lr", type=float, default=0.0)
    add("--iter_per_step", type=int, default=1, help="batches per optimiser step (gradient accumulation)")
    add("--grad_norm_clip", type=float, default=None)
    add("--amp_opt_level", default="O0", choices=[f"O{m.value}" for m in nemo_core.Optimization])
    add("--exp_name", default="asr_experiment")
    add("--work_dir", default="work_dir", help="the experiment folder is <work_dir>/<exp_name>")
    add("--checkpoint_dir", default=None,
        help="where checkpoints are saved (default: <work_dir>/<exp_name>/checkpoints)")
    add("--checkpoint_save_freq", type=int, default=1000, help="steps between checkpoints")
    add("--create_tb_writer", action=argparse.BooleanOptionalAction, default=True,
        help="write TensorBoard events (default: on; --no-create_tb_writer: off)")
    add("--tensorboard_dir", default=None, help="TensorBoard events (default: <work_dir>/<exp_name>/tensorboard)")
    add("--cudnn_benchmark", action=argparse.BooleanOptionalAction, default=True,
        help="let cuDNN pick the fastest convolution algorithms on a GPU (default: on)")
    add("--load_dir", default=None,
        help="resume from the newest complete checkpoint set here (must exist; a folder with weights but no "
             "trainer state initialises the weights and starts at step 0). Without it the run resumes from its "
             "own --checkpoint_dir when that holds a set")
    add("--finetune_from", default=None,
        help="folder with NGC-format encoder and decoder checkpoints, named after the modules "
             "(e.g. *JasperEncoder-STEP-*.pt / *JasperDecoderForCTC-STEP-*.pt)")
    add("--finetune_pattern", default="", help="only checkpoint files whose name contains this, e.g. 'quartznet15x5'")
    add("--perturb_config", default=None, help="YAML of audio perturbations for training")
    add("--eval_freq", type=int, default=None, help="steps between evaluations (default: every epoch)")
    add("--lm_order", type=int, default=0,
        help="after training, estimate an N-gram LM (modified Kneser-Ney) from the training transcripts, tune "
             "beam-search alpha/beta on the first eval set (a 3 x 3 grid that grows past an edge while the best pair "
             "lies on it, see --lm_grid_grow) and add beam + LM WER to the final table "
             "(<exp_dir>/train_text_Ngram.arpa; needs the lm extra; default 0: off)")
    add("--beam_width", type=int, default=64,
        help="beam width for --lm_order (default: %(default)s, as jasper_infer.py)")
    add("--lm_grid_grow", type=int, default=DEFAULT_GROW,
        help="for --lm_order: at most this many rounds that extend the alpha/beta grid by one step beyond an "
             "edge while the best pair lies on that edge (0: the fixed 3 x 3 grid; default: %(default)s)")
    add_pruning_args(parser)
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
    add_debug_flag(parser)
    nemo_core.add_distributed_args(parser)
    return parser


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


def experiment_folders(args):
    """``(exp_dir, checkpoint_dir, tensorboard_dir)`` of this run."""
    exp_dir = os.path.join(args.work_dir, args.exp_name)
    return (exp_dir, getattr(args, "checkpoint_dir", None) or os.path.join(exp_dir, "checkpoints"),
            getattr(args, "tensorboard_dir", None) or os.path.join(exp_dir, "tensorboard"))


def check_inputs(args):
    """The files and folders the run reads, checked before anything is created or built."""
    for option in ("train_dataset", "eval_datasets", "final_eval_datasets"):
        value = getattr(args, option) or []
        for given in [value] if isinstance(value, str) else value:
            for path in filter(None, (p.strip() for p in given.split(","))):
                if not os.path.isfile(path):
                    what = "is a folder, not a manifest file" if os.path.isdir(path) else "does not exist"
                    raise UserError(f"--{option} {path}: the manifest {what}; give a JSON-lines manifest "
                                    f"(one {{\"audio_filepath\", \"duration\", \"text\"}} per line)")
    for option in ("load_dir", "finetune_from"):
        path = getattr(args, option)
        if path and not os.path.isdir(path):
            what = "is a file, not a folder" if os.path.exists(path) else "does not exist"
            raise UserError(f"--{option} {path}: the checkpoint folder {what}; give the folder that holds the "
                            f"*-STEP-*.pt files")
    if args.perturb_config and not os.path.isfile(args.perturb_config):
        raise UserError(f"--perturb_config {args.perturb_config} does not exist; give a YAML file of perturbations")
    if hasattr(args, "cutoff_prob"):
        pruning_options(args)  # checked with or without --lm_order
    if getattr(args, "lm_order", 0):
        check_lm_options(args)


def check_lm_options(args):
    """``--lm_order`` needs an order of 2 or more, an eval set to tune on and the ``lm`` extra: all checked
    before training, not found missing after it."""
    from nemo_core.utils.cli import require

    if args.lm_order < 2:
        raise UserError(f"--lm_order {args.lm_order}: an n-gram LM needs order 2 or more (0 turns it off)")
    if args.beam_width < 1:
        raise UserError(f"--beam_width {args.beam_width}: give 1 or more")
    if args.lm_grid_grow < 0:
        raise UserError(f"--lm_grid_grow {args.lm_grid_grow}: give 0 (the fixed grid) or more")
    if not (args.eval_datasets or args.final_eval_datasets):
        raise UserError("--lm_order needs an eval set (--eval_datasets) to tune the LM weights on")
    for package in ("pyctcdecode", "kenlm"):
        require(package, "lm", "--lm_order (beam search with an n-gram LM)")


def eval_tags(paths):
    """A unique, readable tag per eval manifest, in order: the file name without its extension
    (``dev`` for ``data/dev.json``); files of the same name are told apart by their folders
    (``clean/dev``, ``other/dev``); a manifest given again gets ``dev_2``, ``dev_3``. The manifests
    of a comma-separated list join their tags with ``+``."""
    def folders(path):
        return [f for f in os.path.dirname(path).split(os.sep) if f]

    def name(key, depth):
        stems = [os.path.splitext(os.path.basename(path))[0] for path in key]
        return "+".join("/".join(folders(path)[max(len(folders(path)) - depth, 0):] + [stem]) if depth else stem
                        for path, stem in zip(key, stems))

    keys = [tuple(os.path.abspath(p.strip()) for p in path.split(",") if p.strip()) for path in paths]
    groups = {}
    for key in dict.fromkeys(keys):  # distinct manifests, grouped by their plain name
        groups.setdefault(name(key, 0), []).append(key)
    chosen = {}
    for plain, group in groups.items():
        names = [plain] * len(group)
        deepest = max(len(folders(path)) for key in group for path in key)
        for depth in range(1, deepest + 1) if len(group) > 1 else ():
            candidates = [name(key, depth) for key in group]
            if len(set(candidates)) == len(candidates):
                names = candidates
                break
        chosen.update(zip(group, names))
    reserved, tags = set(chosen.values()), []
    for key in keys:
        tag = chosen[key]
        if tag in tags:  # the same manifest again (or names no folder tells apart)
            number = 2
            while f"{tag}_{number}" in tags or f"{tag}_{number}" in reserved:
                number += 1
            tag = f"{tag}_{number}"
        tags.append(tag)
    return tags


class FirstStepWatcher(nemo_core.ActionCallback):
    """Records whether training completed a step (before that, a failed run has nothing worth keeping)."""

    def __init__(self):
        self.stepped = False

    def on_step_end(self, state):
        self.stepped = True


def folders_to_create(paths):
    """For each path, the top-most folder that creating it would create (None when it exists)."""
    created = []
    for path in map(os.path.abspath, paths):
        top = None
        while not os.path.exists(path) and os.path.dirname(path) != path:
            top, path = path, os.path.dirname(path)
        if top and top not in created:
            created.append(top)
    return created


def remove_created_folders(folders, nf):
    """A new experiment that failed before its first training step removes the folders it created (logs,
    config, TensorBoard events), so no empty experiment is left behind; a folder holding checkpoints stays."""
    logger = nf.logger if nf is not None else logging.getLogger("nemo_core")
    if nf is not None and nf.tb_writer is not None:
        nf.tb_writer.close()
    for handler in list(logger.handlers):  # the log file is inside
        if isinstance(handler, logging.FileHandler) and any(
                os.path.abspath(handler.baseFilename).startswith(folder + os.sep) for folder in folders):
            logger.removeHandler(handler)
            handler.close()
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        if any(name.endswith(".pt") for _, _, files in os.walk(folder) for name in files):
            logger.warning("Kept %s although the run failed before training: it holds checkpoints", folder)
            continue
        dropped = sum(1 for path in glob.glob(os.path.join(folder, "**", "dropped_utterances.jsonl"), recursive=True)
                      for _ in open(path, encoding="utf-8"))
        shutil.rmtree(folder, ignore_errors=True)
        logger.info("Removed %s: this run created it and failed before its first training step%s", folder,
                    f" (with its list of {dropped} dropped utterance(s); --bad_utterances stop names the first "
                    f"bad one as the error)" if dropped else "")


def train(args, cfg):
    """Build the DAGs of ``args`` and ``cfg`` and train; returns the summary (rank 0)."""
    check_inputs(args)
    folders = experiment_folders(args)  # an experiment that exists (a resumed run) is never cleaned up
    new_folders = [] if os.path.exists(folders[0]) else folders_to_create(folders)
    watcher, built = FirstStepWatcher(), {}
    try:
        return build_and_train(args, cfg, watcher, built)
    except BaseException:
        nf = built.get("nf")
        main_rank = nf.is_main if nf is not None else os.environ.get("RANK", "0") == "0"
        if new_folders and main_rank and not watcher.stepped:
            remove_created_folders(new_folders, nf)
        raise


def build_and_train(args, cfg, watcher, built):
    exp_dir, checkpoint_dir, tensorboard_dir = experiment_folders(args)
    nf = built["nf"] = nemo_core.NeuralModuleFactory(
        local_rank=args.local_rank,
        optimization_level=nemo_core.Optimization.from_opt_level(args.amp_opt_level),
        amp_dtype=None if getattr(args, "amp_dtype", "auto") == "auto" else args.amp_dtype,
        random_seed=args.random_seed, log_dir=exp_dir, checkpoint_dir=checkpoint_dir,
        create_tb_writer=getattr(args, "create_tb_writer", True), tensorboard_dir=tensorboard_dir,
        cudnn_benchmark=getattr(args, "cudnn_benchmark", True))
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
        **checks, **data_layer_arguments(cfg, "train"))
    eval_sets = [(path, False) for path in args.eval_datasets] + [(path, True) for path in args.final_eval_datasets]
    eval_layers = [nemo_asr.AudioToTextDataLayer(
        manifest_filepath=path, labels=labels, batch_size=args.eval_batch_size or args.batch_size,
        sample_rate=sample_rate, num_workers=args.num_workers, **checks, **data_layer_arguments(cfg, "eval"))
        for path, _ in eval_sets]
    preprocessor, encoder, decoder = modules_from_config(cfg)
    train_layer.drop_ctc_infeasible(preprocessor, encoder)
    augment = (nemo_asr.SpectrogramAugmentation(**cfg["SpectrogramAugmentation"])
               if cfg.get("SpectrogramAugmentation") else None)
    ctc_loss = nemo_asr.CTCLossNM(num_classes=len(labels), zero_infinity=args.ctc_zero_infinity)
    if args.finetune_from:
        finetune(encoder, decoder, args.finetune_from, logger, args.finetune_pattern)
    logger.info("Model: %s encoder weights, %s decoder weights, %d train utterances (%.2f h)",
                f"{encoder.num_weights:,}", f"{decoder.num_weights:,}", len(train_layer),
                train_layer.total_duration / 3600)

    # training DAG
    trained = ctc_graph(train_layer, preprocessor, encoder, decoder, loss=ctc_loss, augment=augment)
    callbacks = [nemo_core.SimpleLossLoggerCallback(
        tensors=trained.monitored, step_freq=args.log_freq,
        print_func=functools.partial(monitor_asr_train_progress, labels=labels, logger=logger))]
    # one eval DAG per dataset, sharing the modules (and weights) of the training DAG
    evaluators = {}
    steps_per_epoch = -(-len(train_layer) // (args.batch_size * nf.world_size * args.iter_per_step))
    for (path, final_only), layer, tag in zip(eval_sets, eval_layers, eval_tags([path for path, _ in eval_sets])):
        logger.info("Eval set %s: %s%s", tag, path, " (after training)" if final_only else "")
        evaluators[tag] = nemo_core.EvaluatorCallback(
            eval_tensors=ctc_graph(layer, preprocessor, encoder, decoder, loss=ctc_loss).monitored,
            user_iter_callback=functools.partial(process_evaluation_batch, labels=labels),
            user_epochs_done_callback=functools.partial(process_evaluation_epoch, tag=tag, logger=logger),
            eval_step=None if final_only else args.eval_freq,
            eval_epoch=None if final_only or args.eval_freq else 1)
    callbacks += list(evaluators.values())
    callbacks.append(nemo_core.CheckpointCallback(
        folder=nf.checkpoint_dir, load_from_folder=args.load_dir, step_freq=args.checkpoint_save_freq))
    callbacks.append(watcher)

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
    if args.optimizer in BETAS_OPTIMIZERS:
        params["betas"] = (args.beta1, args.beta2)
    logger.info("About %d steps per epoch", steps_per_epoch)
    result = nf.train([trained.loss], callbacks=callbacks, optimizer=args.optimizer, optimization_params=params,
                      lr_policy=policy, batches_per_step=args.iter_per_step, stop_on_nan_loss=args.stop_on_nan_loss,
                      max_consecutive_skips=args.max_consecutive_skips)
    lm = None
    if args.lm_order:
        manifests = dict(zip(evaluators, (path for path, _ in eval_sets)))
        lm = evaluate_with_transcript_lm(args, cfg, nf, exp_dir, (preprocessor, encoder, decoder), train_layer,
                                         manifests)
    return report(nf, exp_dir, evaluators, result, lm)


def evaluate_with_transcript_lm(args, cfg, nf, exp_dir, modules, train_layer, manifests):
    """``--lm_order``: the trained model's log-probs on every eval set (all ranks share the work), an
    n-gram LM from the training transcripts, alpha/beta tuned on the first eval set and beam + LM WER
    per eval set (rank 0; None on the other ranks)."""
    import time

    from nemo_asr.inference import Recognizer, runner_precision
    from nemo_asr.language_model import evaluate_with_lm, write_transcript_lm
    from nemo_asr.metrics import word_error_rate

    started = time.perf_counter()
    recognizer = Recognizer(cfg, modules)
    runner = recognizer.runner("pytorch", runner_precision(nf), device=nf.device)
    runs = {tag: recognizer.run(nf, path, args.eval_batch_size or args.batch_size, runner=runner,
                                verbose=nf.is_main)
            for tag, path in manifests.items()}
    if not nf.is_main:
        return None
    lm_path, sentences, words = write_transcript_lm(
        train_layer.transcripts(), os.path.join(exp_dir, f"train_text_{args.lm_order}gram.arpa"), args.lm_order)
    tune_on = next(iter(manifests))
    nf.logger.info("Beam search + %d-gram LM from %d training transcripts (%d words): %s; alpha/beta tuned on %s",
                   args.lm_order, sentences, words, lm_path, tune_on)
    result = evaluate_with_lm(runs, recognizer.labels, lm_path, tune_on, beam_width=args.beam_width,
                              pruning=pruning_options(args), grow=args.lm_grid_grow)
    result.update(lm_path=lm_path, order=args.lm_order, tuned_on=tune_on, seconds=time.perf_counter() - started,
                  greedy_wer={tag: word_error_rate(run["hypotheses"], run["references"])[0]
                              for tag, run in runs.items()})
    nf.logger.info("Beam search + LM: alpha %.2f, beta %.2f, beam %d; %d pairs tried; %.0f s", result["alpha"],
                   result["beta"], result["beam_width"], len(result["grid"]), result["seconds"])
    if result["on_edge"]:
        nf.logger.warning("Beam search + LM: the best pair (alpha %g, beta %g) still lies on an edge of the alpha/beta "
                          "grid after %d rounds of growing: better weights may lie beyond it (raise --lm_grid_grow, "
                          "or search its log-probs with scripts/tune_lm_params.py)", result["alpha"], result["beta"],
                          result["grow"])
    return result


def report(nf, exp_dir, evaluators, result, lm=None):
    """Print the WER table (greedy; with ``lm``, beam + LM next to it) and write results.json (rank 0)."""
    if not nf.is_main:
        return None
    rows = {}
    for tag, evaluator in evaluators.items():
        if evaluator.history:
            step, values = evaluator.history[-1]
            rows[tag] = {"step": step, "wer": values[f"Evaluation_WER_{tag}"], "loss": values[f"Evaluation_Loss_{tag}"],
                         "history": [(s, v[f"Evaluation_WER_{tag}"]) for s, v in evaluator.history]}
    summary = {"train": result, "eval": rows}
    if lm is not None:
        summary["beam_lm"] = lm
    with open(os.path.join(exp_dir, "results.json"), "w") as handle:
        json.dump(summary, handle, indent=1)
    if rows and lm is None:
        print("\n| eval set | step | WER | loss |\n|---|---|---|---|")
        for tag, row in rows.items():
            print(f"| {tag} | {row['step']} | {row['wer'] * 100:.2f}% | {row['loss']:.3f} |")
    elif rows:
        print(f"\n| eval set | step | greedy WER | beam {lm['beam_width']} + {lm['order']}-gram LM WER | loss |"
              "\n|---|---|---|---|---|")
        for tag, row in rows.items():
            tuned = " (tuned here)" if tag == lm["tuned_on"] else ""
            print(f"| {tag} | {row['step']} | {row['wer'] * 100:.2f}% | {lm['wer'][tag] * 100:.2f}%{tuned} "
                  f"| {row['loss']:.3f} |")
        pruning = lm.get("pruning", {})
        print(f"LM: {lm['lm_path']} (from the training transcripts); the same search in nemo-transcribe, "
              f"jasper_infer.py or nemo-serve: --lm_path {lm['lm_path']} --beam_width {lm['beam_width']} "
              f"--alpha {lm['alpha']:g} --beta {lm['beta']:g} --cutoff_prob {pruning.get('cutoff_prob', 1):g} "
              f"--beam_prune_logp={pruning.get('beam_prune_logp', float('-inf')):g}")
    sys.stdout.flush()
    return summary


if __name__ == "__main__":
    main()
