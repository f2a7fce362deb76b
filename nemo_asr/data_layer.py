"""AudioToTextDataLayer: manifests -> (audio, audio length, transcript, transcript length)."""
import collections

from nemo_core import AudioSignal, DataLayerNM, LabelsType, LengthsType, NeuralType

from .parts.dataset import AudioTextDataset, CharTokenizer, make_collate
from .parts.manifest import read_manifests
from .parts.perturb import AudioAugmentor


class AudioToTextDataLayer(DataLayerNM):
    """Speech + character transcripts from JSON-lines manifests (comma-separate several).

    ``perturb_config``: YAML path, dict or list (see ``parts/perturb.py``).
    ``skip_bad_files``: skip missing/undecodable audio with a warning instead of
    raising. ``bucketing``: order each window of ``bucket_batches`` batches by
    duration so batches hold similar lengths (less padding); the window order
    still follows the shuffled order.
    """

    def __init__(self, manifest_filepath, labels, batch_size, sample_rate=16000, int_values=False, bos_id=None,
                 eos_id=None, pad_id=0, min_duration=0.1, max_duration=None, normalize_transcripts=True,
                 trim_silence=False, load_audio=True, drop_last=False, shuffle=True, num_workers=0,
                 perturb_config=None, skip_bad_files=False, bucketing=False, bucket_batches=16,
                 augmentor_seed=None, placement=None, name=None):
        super().__init__(batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, drop_last=drop_last,
                         placement=placement, name=name)
        self._sample_rate = sample_rate
        self.labels = list(labels)
        entries = read_manifests(manifest_filepath, min_duration=min_duration, max_duration=max_duration,
                                 check_files=load_audio, skip_bad_files=skip_bad_files)
        augmentor = AudioAugmentor.from_config(perturb_config, sample_rate, seed=augmentor_seed) if perturb_config else None
        self._dataset = AudioTextDataset(
            entries, CharTokenizer(self.labels, normalize=normalize_transcripts), sample_rate,
            int_values=int_values, trim_silence=trim_silence, augmentor=augmentor, bos_id=bos_id, eos_id=eos_id,
            load_audio_data=load_audio, skip_bad_files=skip_bad_files)
        self._collate = make_collate(pad_id)
        if bucketing:
            self.bucket_lengths = self._dataset.durations
            self.bucket_batches = int(bucket_batches)

    @property
    def output_ports(self):
        return collections.OrderedDict(
            audio_signal=NeuralType(("B", "T"), AudioSignal(freq=self._sample_rate)),
            a_sig_length=NeuralType(("B",), LengthsType()),
            transcripts=NeuralType(("B", "T"), LabelsType()),
            transcript_length=NeuralType(("B",), LengthsType()),
        )

    @property
    def dataset(self):
        return self._dataset

    @property
    def collate_fn(self):
        return self._collate

    @property
    def total_duration(self):
        return sum(self._dataset.durations)
