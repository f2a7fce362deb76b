"""Build a recogniser from a model config + checkpoint folder and run it over
manifests: shared by ``jasper_infer.py``, ``transcribe`` and ``nemo-serve``.

There is one inference path: ``Recognizer.runner`` gives an ``InferenceRunner``
over the ``AcousticPipeline`` (features -> encoder -> CTC head), run eagerly
(pytorch) or from its exported file (torchscript, onnxruntime; fp32 or int8);
only that backend varies. The typed DAG (``nemo_asr.ctc_graph``) is for
training and training-time evaluation."""
import os

import torch

from .data_layer import AudioToTextDataLayer
from .greedy_ctc_decoder import GreedyCTCDecoder
from .helpers import post_process_predictions, post_process_transcripts
from .model_config import modules_from_config


class Recognizer:
    """Preprocessor + encoder + decoder from a NeMo-style model config
    (``modules``: these three, already built from ``cfg``, e.g. just trained)."""

    def __init__(self, cfg, modules=None):
        self.cfg = cfg
        self.labels = cfg["labels"]
        self.sample_rate = cfg.get("sample_rate", 16000)
        self.preprocessor, self.encoder, self.decoder = modules or modules_from_config(cfg)
        self.greedy = GreedyCTCDecoder()
        hop = self.preprocessor.featurizer.hop_length / self.sample_rate
        self.frame_seconds = hop * self.encoder.total_stride

    def load(self, folder, pattern=""):
        """Restore encoder and decoder from the newest complete checkpoint set in ``folder``."""
        from nemo_core.checkpointing import restore_modules

        self.loaded_checkpoint = restore_modules([self.encoder, self.decoder], folder, pattern)  # a LoadedCheckpoint
        return self

    def runner(self, backend, precision="fp32", model_path=None, workdir=None, cache_dir=None, check_weights=None,
               device="cpu"):
        """An ``InferenceRunner`` for these (loaded) weights, on ``device``.

        torchscript/onnxruntime: without ``model_path`` the model is exported
        once per checkpoint and config into ``cache_dir`` (default
        ``$NEMO_CACHE_DIR`` or ``~/.cache/nemo_asr/exports``) and reused on the
        next call; ``workdir`` is used only when that folder cannot be written.
        A ``model_path`` (or cached file) exported from other weights or
        another config is refused (``nemo_asr.export.ModelFileMismatchError``);
        one exported elsewhere, without identity, is checked for its inputs
        and number of classes, with a warning. ``check_weights`` (default:
        whether ``load`` restored a checkpoint) compares the file's weights
        with these; without a checkpoint (serving a file with only its config)
        the file's own weights are the model and only the config is compared.
        """
        from .export import AcousticPipeline, verify_model_file
        from .inference_runner import BACKENDS, InferenceRunner

        if backend == "pytorch":
            return InferenceRunner("pytorch", model=AcousticPipeline(self.preprocessor, self.encoder, self.decoder),
                                   precision=precision, device=device)
        if backend not in BACKENDS:
            raise ValueError(f"Unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
        identity = self._export_identity()
        if model_path is None:
            model_path = self._exported_file(backend, identity, cache_dir, workdir)
        runner = InferenceRunner(backend, path=model_path, precision=precision, device=device)
        if check_weights is None:
            check_weights = getattr(self, "loaded_checkpoint", None) is not None
        verify_model_file(model_path, runner.metadata, identity, probe=runner.probe, check_weights=check_weights)
        return runner

    def _export_identity(self):
        """What an exported file must match: these weights, this config, and where the weights came from."""
        from .export import ModelIdentity

        loaded = getattr(self, "loaded_checkpoint", None)
        source = ModelIdentity.describe_checkpoint(loaded) if loaded is not None else None
        return ModelIdentity(self.labels, self.preprocessor, self.encoder, self.decoder, source)

    def _exported_file(self, backend, identity, cache_dir, workdir):
        """The cached export for ``identity`` (written on first use); ``workdir`` if the cache is not writable."""
        import logging
        import tempfile

        from .export import cached_export, export_cache_dir

        d_format = "onnx" if backend == "onnxruntime" else "torchscript"
        folder = cache_dir or export_cache_dir()
        try:
            return cached_export(self.preprocessor, self.encoder, self.decoder, identity, d_format, folder)[0]
        except OSError as err:
            fallback = workdir or tempfile.mkdtemp(prefix="nemo_asr_export_")
            logging.getLogger("nemo_asr").warning(
                "Cannot use the export cache %s (%s); exporting into %s instead (set NEMO_CACHE_DIR to a writable "
                "folder to reuse exports)", folder, err.strerror or err, fallback)
            return cached_export(self.preprocessor, self.encoder, self.decoder, identity, d_format, fallback)[0]

    def check_checkpoints(self, folder, pattern=""):
        """Fail early, with the sets on offer, unless ``folder`` holds exactly one checkpoint set
        (name prefix) matching ``pattern``; returns that prefix (``""`` for files without one).

        An NGC download may hold several models in one folder
        (``small_qn-JasperEncoder-STEP-*.pt``, ``jasper10x5-JasperEncoder-STEP-*.pt``...):
        ``pattern`` (``--ckpt_pattern``) is a part of the file names that picks one.
        """
        from nemo_core.checkpointing import CheckpointError, checkpoint_names, describe_prefixes, sets_by_prefix

        folder = os.fspath(folder)
        names = list(checkpoint_names([self.encoder, self.decoder]).values())
        if not os.path.isdir(folder):
            kind = "is not a folder" if os.path.exists(folder) else "does not exist"
            raise CheckpointError(f"Checkpoint folder {folder} {kind} (--load_dir): give the folder holding "
                                  f"{' and '.join(f'*{name}-STEP-*.pt' for name in names)}")
        sets = sets_by_prefix(folder, names)
        if not sets:
            raise CheckpointError(f"No checkpoint set for {', '.join(names)} in {folder} (files named "
                                  f"[PREFIX-]{names[0]}-STEP-N.pt etc.); is --load_dir the right folder?")
        matching = {prefix: steps for prefix, steps in sets.items()
                    if any(all(pattern in os.path.basename(path) for path in files.values())
                           for files in steps.values())}
        if not matching:
            raise CheckpointError(f"No checkpoint set in {folder} matches --ckpt_pattern {pattern!r}; "
                                  f"it holds {describe_prefixes(sets)}: pass one of these names")
        if len(matching) > 1:
            which = f" matching --ckpt_pattern {pattern!r}" if pattern else ""
            raise CheckpointError(f"{folder} holds several checkpoint sets{which}: {describe_prefixes(matching)}; "
                                  "choose one with --ckpt_pattern NAME")
        return next(iter(matching))

    def data_layer(self, manifest, batch_size, check_audio=True):
        return AudioToTextDataLayer(manifest_filepath=manifest, labels=self.labels, batch_size=batch_size,
                                    sample_rate=self.sample_rate, shuffle=False, min_duration=None,
                                    max_duration=None, check_audio=check_audio)

    def run(self, nf, manifest, batch_size, load_dir=None, verbose=True, runner=None, ckpt_pattern="",
            check_audio=True):
        """Per-utterance log-probs (valid frames), greedy hypotheses, references, frame labels.

        Batches go through ``runner`` (an ``InferenceRunner``). Without one, the
        pytorch pipeline runs on ``nf``'s device at ``nf``'s precision (O0:
        fp32; O1-O3: autocast to its half type), after restoring the set in
        ``load_dir`` whose file names contain ``ckpt_pattern`` (when given).
        Under ``torchrun`` each rank recognises one contiguous block of the
        manifest and every rank gets all results, in manifest order.
        ``verbose``: a progress bar over batches on a terminal.
        ``check_audio=False`` skips the data layer's header pass (for manifests
        already checked).
        """
        from tqdm import tqdm

        if runner is None:
            if load_dir is not None:
                self.load(load_dir, ckpt_pattern)
            runner = self.runner("pytorch", runner_precision(nf), device=nf.device)
        layer = self.data_layer(manifest, batch_size, check_audio=check_audio)
        batches = []
        loader = layer.make_dataloader(training=False, distributed=nf.distributed)  # this rank's block
        for audio, audio_len, transcript, transcript_len in tqdm(loader, desc="infer", unit="batch", leave=False,
                                                                 disable=None if verbose else True):
            lp, n = runner(audio, audio_len)
            batches.append((lp, n, self.greedy(log_probs=lp, log_probs_length=n), transcript, transcript_len))
        if nf.distributed.is_active:  # every rank gets all batches, in data-set order
            batches = [b for rank in nf.distributed.all_gather_objects(batches) for b in rank]
        columns = list(zip(*batches)) or [()] * 5
        log_probs, lengths, predictions, transcripts, transcript_lengths = (list(c) for c in columns)
        utterance_log_probs, frame_labels = [], []
        for lp, n, pred in zip(log_probs, lengths, predictions):
            for i in range(lp.shape[0]):
                utterance_log_probs.append(lp[i, : int(n[i])].float())
                frame_labels.append(pred[i, : int(n[i])].tolist())
        return {
            "log_probs": utterance_log_probs,
            "hypotheses": post_process_predictions(predictions, self.labels),
            "references": post_process_transcripts(transcripts, transcript_lengths, self.labels),
            "frame_labels": frame_labels,
            "entries": layer.dataset.entries,
        }


def runner_precision(nf):
    """The runner precision matching ``nf``'s optimisation level: fp32 at O0, else its half type under autocast."""
    from nemo_core import Optimization

    if nf.precision.level == Optimization.mxprO0:
        return "fp32"
    return "fp16" if nf.precision.half_dtype == torch.float16 else "bf16"


# The beam search's pruning in every tool (jasper.py's after-training table, jasper_infer.py, nemo-transcribe,
# nemo-serve, tune_lm_params.py), so alpha/beta tuned by one give the same text in the others: per frame the tokens
# holding 99.9 % of the mass, beams within 10 (natural log) of the best (pyctcdecode's own default). On the demo's
# dev set (200 utterances, beam 16, 2 processes) a pass took 4-6 s instead of 14 s unpruned, and WER was lower
# (5.1-5.6 % against 6.6-6.7 %); on the engine-holdout test set 22.84 % against 25.74 %: the unpruned search lets the
# LM pull in characters the acoustics ruled out. The module itself (BeamSearchDecoderWithLM) keeps NeMo's default,
# no pruning.
DEFAULT_PRUNING = {"cutoff_prob": 0.999, "beam_prune_logp": -10.0}


def add_pruning_args(parser):
    """``--cutoff_prob`` and ``--beam_prune_logp`` (defaults: ``DEFAULT_PRUNING``); ``pruning_options`` reads
    them back."""
    parser.add_argument("--cutoff_prob", type=float, default=DEFAULT_PRUNING["cutoff_prob"],
                        help="beam search: per frame, expand only the tokens holding this share of the probability "
                             "mass; 1 expands all (default: %(default)s)")
    parser.add_argument("--beam_prune_logp", type=float, default=DEFAULT_PRUNING["beam_prune_logp"],
                        help="beam search: drop beams this far (natural log) below the best; write "
                             "--beam_prune_logp=-inf to keep all (default: %(default)s)")


def pruning_options(args):
    """``{"cutoff_prob", "beam_prune_logp"}`` from ``add_pruning_args``' options, checked (a ``UserError`` names
    the option)."""
    from nemo_core.utils.cli import UserError

    if not 0.0 < args.cutoff_prob <= 1.0:
        raise UserError(f"--cutoff_prob {args.cutoff_prob:g}: give a share of the mass in (0, 1]; 1 turns it off")
    if not args.beam_prune_logp < 0.0:
        raise UserError(f"--beam_prune_logp {args.beam_prune_logp:g}: give a negative log-prob margin, e.g. -10; "
                        f"--beam_prune_logp=-inf turns it off")
    return {"cutoff_prob": args.cutoff_prob, "beam_prune_logp": args.beam_prune_logp}


def beam_decoder(labels, lm_path, beam_width, alpha, beta, num_cpus=1, pruning=None):
    """A ``BeamSearchDecoderWithLM``: build it before the acoustic model runs, so a missing LM,
    a broken one or a missing ``kenlm``/``pyctcdecode`` stops the tool before any work.
    ``pruning``: ``cutoff_prob``, ``cutoff_top_n``, ``beam_prune_logp`` (default: ``DEFAULT_PRUNING``)."""
    from .beam_search_decoder import BeamSearchDecoderWithLM

    pruning = DEFAULT_PRUNING if pruning is None else pruning
    return BeamSearchDecoderWithLM(labels, beam_width, alpha, beta, lm_path=lm_path, num_cpus=num_cpus, **pruning)


def _decode(log_probs, decoder, word_frames, progress, chunk_size=64):
    """Best beam of each utterance (list of (T, C) log-prob tensors), in chunks, with a progress bar."""
    from tqdm import tqdm

    best = []
    with tqdm(total=len(log_probs), desc="beam search", unit="utt", leave=False,
              disable=None if progress else True) as bar:
        for start in range(0, len(log_probs), chunk_size):
            chunk = log_probs[start:start + chunk_size]
            padded = torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True)
            lengths = torch.tensor([t.shape[0] for t in chunk])
            for beams in decoder.decode(padded, lengths, word_frames=word_frames):
                best.append(beams[0] if beams else ((0.0, "", []) if word_frames else (0.0, "")))
            bar.update(len(chunk))
    return best


def beam_search(log_probs, labels=None, lm_path=None, beam_width=None, alpha=None, beta=None, num_cpus=1, decoder=None,
                progress=True):
    """Best beam-search text per utterance (list of (T, C) log-prob tensors).

    ``decoder`` (from ``beam_decoder``) is used as it is when given (the other
    arguments are then not needed); otherwise one is built from them.
    """
    if decoder is None:
        decoder = beam_decoder(labels, lm_path, beam_width, alpha, beta, num_cpus)
    return [text for _, text in _decode(log_probs, decoder, False, progress)]


def beam_search_with_words(log_probs, decoder, frame_seconds, progress=True):
    """``[(text, words)]`` per utterance: the best beam's text and its words'
    ``{"word", "start", "end"}`` (seconds), taken from the beam search itself,
    so the times describe the words of that text."""
    from .parts.ctc_offsets import words_from_frames

    return [(text, words_from_frames(frames, frame_seconds))
            for _, text, frames in _decode(log_probs, decoder, True, progress)]
