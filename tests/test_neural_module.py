import collections

import pytest
import torch

import nemo_core
from nemo_core import (
    ChannelType, CheckpointError, LengthsType, MelSpectrogramType, NeuralModuleCallError,
    NeuralPortMissingInputError, NeuralPortNameMismatchError, NeuralPortNmTensorMismatchError,
    NeuralType, NeuralTypeComparisonResult, NeuralTypeError, NmTensor, StateDictMismatchError,
    TrainableNM, ZerosDataLayer,
)
from nemo_core.tutorials import L1Loss, MSELoss, RealFunctionDataLayer, TaylorNet


class Encoder(TrainableNM):
    """A toy 'encoder' whose input port declares its feature count, like JasperEncoder."""

    def __init__(self, feat_in, hidden=8, placement=None):
        super().__init__(placement=placement)
        self.feat_in = feat_in
        self.conv = torch.nn.Conv1d(feat_in, hidden, 1)

    @property
    def input_ports(self):
        return collections.OrderedDict(
            audio_signal=NeuralType(("B", ("D", self.feat_in), "T"), MelSpectrogramType()),
            length=NeuralType(("B",), LengthsType()),
        )

    @property
    def output_ports(self):
        return collections.OrderedDict(
            outputs=NeuralType(("B", "D", "T"), ChannelType()),
            encoded_lengths=NeuralType(("B",), LengthsType()),
        )

    def forward(self, audio_signal, length):
        return self.conv(audio_signal), length


def features_layer(n_mels):
    return ZerosDataLayer(
        size=4, dtype=torch.float32, batch_size=2,
        output_ports={
            "processed_signal": NeuralType(("B", nemo_core.AxisType("D", n_mels), "T"), MelSpectrogramType()),
            "processed_length": NeuralType(("B",), LengthsType()),
        },
        shapes={"processed_signal": (n_mels, 10), "processed_length": ()},
    )


def test_axis_pair_shorthand():
    assert NeuralType(("B", ("D", 64), "T"), MelSpectrogramType()).axes[1] == nemo_core.AxisType("D", 64)


def test_feature_mismatch_fails_at_wiring_line():
    signal, length = features_layer(80)()
    encoder = Encoder(feat_in=64)
    with pytest.raises(NeuralPortNmTensorMismatchError) as info:
        encoder(audio_signal=signal, length=length)
    err = info.value
    assert err.port_name == "audio_signal" and err.result is NeuralTypeComparisonResult.DIM_INCOMPATIBLE
    message = str(err)
    for fragment in ("Encoder", "'audio_signal'", "D=64", "D=80", "DIM_INCOMPATIBLE", "ZerosDataLayer"):
        assert fragment in message
    assert isinstance(err, NeuralTypeError)
    # the right size wires fine and returns outputs in port order
    outputs, lengths = Encoder(feat_in=80)(audio_signal=signal, length=length)
    assert isinstance(outputs, NmTensor) and outputs.name == "outputs" and lengths.name == "encoded_lengths"
    assert outputs.producer_args["audio_signal"] is signal


def test_unknown_port_missing_input_positional_and_mixing():
    signal, length = features_layer(64)()
    encoder = Encoder(feat_in=64)
    with pytest.raises(NeuralPortNameMismatchError, match="'audio'.*valid input ports are: audio_signal, length"):
        encoder(audio=signal, length=length)
    with pytest.raises(NeuralPortMissingInputError, match="missing required input.*length"):
        encoder(audio_signal=signal)
    with pytest.raises(NeuralModuleCallError, match="keyword arguments naming its input ports.*audio_signal, length"):
        encoder(signal, length)
    with pytest.raises(NeuralModuleCallError, match="NmTensors for audio_signal and real values for length"):
        encoder(audio_signal=signal, length=torch.tensor([10, 10]))


def test_optional_port_may_be_omitted():
    class WithOptional(TrainableNM):
        @property
        def input_ports(self):
            return {"x": NeuralType(("B", "D"), ChannelType()),
                    "mask": NeuralType(("B", "D"), ChannelType(), optional=True)}

        @property
        def output_ports(self):
            return {"y": NeuralType(("B", "D"), ChannelType())}

        def forward(self, x, mask=None):
            return x if mask is None else x * mask

    x, _ = RealFunctionDataLayer(n=4, batch_size=2)()
    assert isinstance(WithOptional()(x=x), NmTensor)


def test_eager_call_runs_the_module():
    net = TaylorNet(dim=3)
    x = torch.linspace(-1, 1, 5).unsqueeze(1)
    expected = net.fc1(torch.cat([x ** 0, x, x ** 2], dim=1))
    assert torch.allclose(net(x=x), expected)
    with pytest.raises(NeuralModuleCallError, match="data layer"):
        RealFunctionDataLayer(n=4, batch_size=2)(x=x)


def test_config_round_trip(tmp_path):
    net = TaylorNet(dim=5, name="poly")
    path = tmp_path / "taylor.yaml"
    net.export_to_config(path)
    rebuilt = nemo_core.NeuralModule.import_from_config(path)
    assert type(rebuilt) is TaylorNet and rebuilt.dim == 5 and rebuilt.name == "poly"
    assert rebuilt.init_config == net.init_config

    layer = RealFunctionDataLayer(n=50, batch_size=7, f=torch.cos, x_lo=-1.0, x_hi=2.0)
    layer.export_to_config(tmp_path / "dl.yaml")
    again = RealFunctionDataLayer.import_from_config(tmp_path / "dl.yaml")
    assert again.init_config["f"] is torch.cos and len(again) == 50 and again.batch_size == 7
    x, y = again.dataset[:]
    assert torch.allclose(y, torch.cos(x)) and x.min() >= -1.0 and x.max() <= 2.0

    zeros = features_layer(80)
    zeros.export_to_config(tmp_path / "zeros.yaml")
    z2 = ZerosDataLayer.import_from_config(tmp_path / "zeros.yaml")
    assert z2.output_ports == zeros.output_ports
    assert z2.dataset[0][0].shape == (80, 10)

    with pytest.raises(ValueError, match="is not a TrainableNM|describes"):
        TrainableNM.import_from_config(tmp_path / "dl.yaml")


def test_config_rejects_unserialisable_argument(tmp_path):
    layer = RealFunctionDataLayer(n=4, batch_size=2, f=lambda v: v * 2)
    with pytest.raises(ValueError, match="RealFunctionDataLayer.f"):
        layer.export_to_config(tmp_path / "bad.yaml")


def test_save_restore_and_mismatch_errors(tmp_path):
    net = TaylorNet(dim=4)
    path = str(tmp_path / "TaylorNet-STEP-1.pt")
    net.save_to(path)
    assert set(torch.load(path)) == {"fc1.weight", "fc1.bias"}  # plain state_dict (NGC layout)
    other = TaylorNet(dim=4)
    other.restore_from(path)
    assert torch.equal(other.fc1.weight, net.fc1.weight)

    wrong_shape = TaylorNet(dim=3)
    with pytest.raises(StateDictMismatchError, match=r"mis-shaped key fc1.weight: checkpoint \(1, 4\) vs module \(1, 3\)"):
        wrong_shape.restore_from(path)

    torch.save({"fc1.weight": torch.zeros(1, 4), "fc2.bias": torch.zeros(1)}, tmp_path / "wrong.pt")
    with pytest.raises(StateDictMismatchError) as info:
        TaylorNet(dim=4).restore_from(str(tmp_path / "wrong.pt"))
    assert info.value.missing == ["fc1.bias"] and info.value.unexpected == ["fc2.bias"]
    assert "wrong.pt" in str(info.value)

    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt.pt"):
        TaylorNet(dim=4).restore_from(str(tmp_path / "corrupt.pt"))


def test_freeze_num_weights_placement_repr():
    net = TaylorNet(dim=4)
    assert net.num_weights == 5
    net.freeze()
    assert net.num_weights == 0 and net.is_frozen
    net.unfreeze()
    assert net.num_weights == 5
    assert net.placement is nemo_core.DeviceType.CPU and net.fc1.weight.device.type == "cpu"
    text = repr(net)
    assert "TaylorNet" in text and "weights=5" in text and "x: NeuralType((B, D), ChannelType)" in text
    loss = MSELoss()
    assert loss.num_weights == 0 and "LossType" in repr(loss)
    assert L1Loss()(predictions=torch.ones(2, 1), target=torch.zeros(2, 1)).item() == 1.0


def test_shared_module_shares_weights_across_dags():
    net = TaylorNet(dim=2)
    x1, _ = RealFunctionDataLayer(n=4, batch_size=2)()
    x2, _ = RealFunctionDataLayer(n=4, batch_size=2)()
    a, b = net(x=x1), net(x=x2)
    assert a.producer is b.producer is net and a.unique_name != b.unique_name
    assert "TaylorNet" in repr(a)
