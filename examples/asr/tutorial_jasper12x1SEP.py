"""The NeMo 0.x ASR tutorial's training script (Jasper 12x1 with separable
convolutions), as published, with ``nemo.core`` replaced by ``nemo_core`` and
the data paths pointed at the AN4 subset in ``tests/data``. Comments are ours.

Run from anywhere: ``python examples/asr/tutorial_jasper12x1SEP.py`` (writes
``jasper12x1SEP/`` logs and checkpoints into the current folder). It takes no
options but ``--debug`` (show the traceback of an error); the full training
script with every option is ``examples/asr/jasper.py``.
"""
import argparse
import os
import sys

# --help prints the text above and exits before anything is built
parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
parser.add_argument("--debug", action="store_true", help="on failure, show the full traceback")
args, ignored = parser.parse_known_args()

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

import nemo_core
import nemo_asr
from nemo_core.utils.cli import describe_error


def one_line_error(kind, error, traceback):
    """An error ends the tutorial with one line (the whole traceback with --debug)."""
    if args.debug or not issubclass(kind, Exception):
        return sys.__excepthook__(kind, error, traceback)
    print(f"{os.path.basename(__file__)}: error: {describe_error(error)} (--debug shows the traceback)",
          file=sys.stderr)


sys.excepthook = one_line_error
if ignored:
    print(f"{os.path.basename(__file__)}: ignoring {' '.join(ignored)}: the tutorial takes no options "
          f"(examples/asr/jasper.py does)", file=sys.stderr)

nf = nemo_core.NeuralModuleFactory(
    log_dir='jasper12x1SEP',
    create_tb_writer=True)
tb_writer = nf.tb_writer
logger = nf.logger

train_dataset = os.path.join(REPO, "tests/data/an4_subset/train_manifest.json")

eval_datasets = os.path.join(REPO, "tests/data/an4_subset/test_manifest.json")

from ruamel.yaml import YAML

yaml = YAML(typ="safe")
with open(os.path.join(REPO, "examples/asr/configs/jasper12x1SEP.yaml")) as f:
    jasper_model_definition = yaml.load(f)
labels = jasper_model_definition['labels']

data_layer = nemo_asr.AudioToTextDataLayer(
    manifest_filepath=train_dataset,
    labels=labels, batch_size=32)
data_layer_val = nemo_asr.AudioToTextDataLayer(
    manifest_filepath=eval_datasets,
    labels=labels, batch_size=32, shuffle=False)

data_preprocessor = nemo_asr.AudioPreprocessing()
spec_augment = nemo_asr.SpectrogramAugmentation(rect_masks=5)

jasper_encoder = nemo_asr.JasperEncoder(
    feat_in=64,
    **jasper_model_definition['JasperEncoder'])
jasper_decoder = nemo_asr.JasperDecoderForCTC(
    feat_in=1024, num_classes=len(labels))
ctc_loss = nemo_asr.CTCLossNM(num_classes=len(labels))
greedy_decoder = nemo_asr.GreedyCTCDecoder()

audio_signal, audio_signal_len, transcript, transcript_len = data_layer()
processed_signal, processed_signal_len = data_preprocessor(
    input_signal=audio_signal, length=audio_signal_len)
aug_signal = spec_augment(input_spec=processed_signal)
encoded, encoded_len = jasper_encoder(
    audio_signal=aug_signal, length=processed_signal_len)
log_probs = jasper_decoder(encoder_output=encoded)
predictions = greedy_decoder(log_probs=log_probs)
loss = ctc_loss(
    log_probs=log_probs, targets=transcript,
    input_length=encoded_len, target_length=transcript_len)

audio_signal_v, audio_signal_len_v, transcript_v, transcript_len_v = data_layer_val()
processed_signal_v, processed_signal_len_v = data_preprocessor(
    input_signal=audio_signal_v, length=audio_signal_len_v)
encoded_v, encoded_len_v = jasper_encoder(
    audio_signal=processed_signal_v, length=processed_signal_len_v)
log_probs_v = jasper_decoder(encoder_output=encoded_v)
predictions_v = greedy_decoder(log_probs=log_probs_v)
loss_v = ctc_loss(
    log_probs=log_probs_v, targets=transcript_v,
    input_length=encoded_len_v, target_length=transcript_len_v)

from nemo_asr.helpers import monitor_asr_train_progress, \
    process_evaluation_batch, process_evaluation_epoch

from functools import partial
train_callback = nemo_core.SimpleLossLoggerCallback(
    tb_writer=tb_writer,
    tensors=[loss, predictions, transcript, transcript_len],
    print_func=partial(
        monitor_asr_train_progress,
        labels=labels,
        logger=logger
    ))

saver_callback = nemo_core.CheckpointCallback(
    folder="./",
    step_freq=100)

eval_callback = nemo_core.EvaluatorCallback(
    eval_tensors=[loss_v, predictions_v, transcript_v, transcript_len_v],
    user_iter_callback=partial(
        process_evaluation_batch,
        labels=labels
        ),
    user_epochs_done_callback=partial(
        process_evaluation_epoch, tag="DEV-CLEAN", logger=logger
        ),
    eval_step=500,
    tb_writer=tb_writer)

nf.train(
    tensors_to_optimize=[loss],
    callbacks=[train_callback, eval_callback, saver_callback],
    optimizer="novograd",
    optimization_params={
        "num_epochs": 50, "lr": 0.02, "weight_decay": 1e-4
        }
    )
