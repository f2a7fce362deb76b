import pytest

from nemo_core.neural_types import (
    AudioSignal, AxisKind, AxisType, ChannelType, ElementType, EncodedRepresentation, LabelsType,
    LengthsType, LogprobsType, MelSpectrogramType, MFCCSpectrogramType, NeuralType,
    NeuralTypeComparisonResult as R, PredictionsType, SpectrogramType, VoidType,
)


def spec(elements, d=None):
    return NeuralType(("B", AxisType("D", d), "T"), elements)


def test_same_and_subclass_directions():
    assert spec(MelSpectrogramType()).compare(spec(MelSpectrogramType())) is R.SAME
    # a port typed with the parent accepts the child...
    assert spec(SpectrogramType()).compare(spec(MelSpectrogramType())) is R.GREATER
    assert spec(ChannelType()).compare(spec(MFCCSpectrogramType())) is R.GREATER
    # ...but a port wanting mel features refuses generic spectrograms
    assert spec(MelSpectrogramType()).compare(spec(SpectrogramType())) is R.LESS
    assert spec(MelSpectrogramType()).compare(spec(MFCCSpectrogramType())) is R.INCOMPATIBLE
    assert NeuralType(("B", "T"), LabelsType()).compare(NeuralType(("B", "T"), PredictionsType())) is R.GREATER


def test_axes_results():
    mel = MelSpectrogramType()
    assert spec(mel).compare(NeuralType(("B", "D"), mel)) is R.DIM_INCOMPATIBLE
    assert spec(mel).compare(NeuralType(("B", "T", "D"), mel)) is R.TRANSPOSE_SAME
    assert spec(mel).compare(NeuralType(("B", "T", "C"), mel)) is R.DIM_INCOMPATIBLE
    listy = NeuralType((AxisType("B", is_list=True), "T"), LabelsType())
    assert NeuralType(("B", "T"), LabelsType()).compare(listy) is R.CONTAINER_SIZE_MISMATCH
    assert NeuralType(("B", "ANY"), LabelsType()).compare(NeuralType(("B", "T"), LabelsType())) is R.SAME
    # scalar vs tensor
    assert NeuralType(None, LengthsType()).compare(NeuralType(("B",), LengthsType())) is R.DIM_INCOMPATIBLE


def test_sized_axes_are_checked():
    assert spec(MelSpectrogramType(), 64).compare(spec(MelSpectrogramType(), 80)) is R.DIM_INCOMPATIBLE
    assert spec(MelSpectrogramType(), 64).compare(spec(MelSpectrogramType(), 64)) is R.SAME
    # unsized on either side cannot be checked and is accepted
    assert spec(MelSpectrogramType(), 64).compare(spec(MelSpectrogramType())) is R.SAME
    assert spec(MelSpectrogramType()).compare(spec(MelSpectrogramType(), 80)) is R.SAME


def test_parameterised_elements():
    audio = lambda f: NeuralType(("B", "T"), AudioSignal(freq=f))  # noqa: E731
    assert audio(16000).compare(audio(16000)) is R.SAME
    assert audio(16000).compare(audio(8000)) is R.INCOMPATIBLE
    assert audio(None).compare(audio(16000)) is R.GREATER
    assert audio(16000).compare(audio(None)) is R.LESS


def test_void_and_root_accept_anything():
    assert NeuralType().compare(spec(MelSpectrogramType(), 80)) is R.SAME
    assert NeuralType(("B", "T"), VoidType()).compare(NeuralType(("B", "T"), LogprobsType())) is R.SAME
    assert NeuralType(("B", "T"), LogprobsType()).compare(NeuralType(("B", "T"), VoidType())) is R.SAME


def test_user_subclasses():
    class PhonemeLabels(LabelsType):
        pass

    class StressedPhonemes(PhonemeLabels):
        pass

    port = NeuralType(("B", "T"), PhonemeLabels())
    assert port.compare(NeuralType(("B", "T"), StressedPhonemes())) is R.GREATER
    assert port.compare(NeuralType(("B", "T"), LabelsType())) is R.LESS
    assert port.compare(NeuralType(("B", "T"), EncodedRepresentation())) is R.INCOMPATIBLE
    assert issubclass(PhonemeLabels, ElementType)


def test_compatibility_set_and_parsing():
    assert {r for r in R if r.is_compatible} == {R.SAME, R.GREATER}
    assert AxisType("b").kind is AxisKind.Batch and AxisType("time").kind is AxisKind.Time
    with pytest.raises(ValueError, match="valid kinds"):
        AxisType("Q")
    assert "D=64" in repr(spec(MelSpectrogramType(), 64))
