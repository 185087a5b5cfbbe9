"""A file whose metadata lies about the decoder, signal or embedding fails cleanly on decode.

The container checks (zip, zarr, safetensors, schema) are in tests/formats; these pin what
``NeuralDatum`` adds: the decoder built from the metadata must consume exactly the stored
weights and embedding, and the decode must not be able to ask for an absurd output.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import neurep
from neurep.formats import open_nrep, write_nrep


@pytest.fixture(scope="module")
def valid_file(tmp_path_factory):
    image = np.random.default_rng(0).integers(0, 256, size=(24, 40, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("hostile") / "valid.nrep"
    neurep.fit(image, preset="fast", steps=2, precision="float32", progress=False).save(path)
    with open_nrep(path) as reader:
        parts = (
            reader.metadata,
            {"embedding": reader.read_array("embedding")},
            reader.read_tensors(),
        )
    return path, parts


def _rewrite(tmp_path, parts, edit=None, tensors_edit=None):
    metadata, arrays, tensors = copy.deepcopy(parts)
    for key in ("format", "format_version", "created", "library"):
        metadata.pop(key)
    metadata["weights"] = {
        k: v for k, v in metadata["weights"].items() if k in ("precision", "quantization")
    }
    if edit:
        edit(metadata)
    if tensors_edit:
        tensors_edit(tensors)
    path = tmp_path / "edited.nrep"
    write_nrep(path, metadata=metadata, arrays=arrays, tensors=tensors)
    return path


def _decode(path):
    return neurep.load(path).decode()


def test_the_unedited_file_decodes(valid_file, tmp_path):
    _, parts = valid_file
    decoded = _decode(_rewrite(tmp_path, parts))
    assert decoded.shape == (24, 40, 3)


@pytest.mark.parametrize(
    ("what", "edit"),
    [
        ("unknown decoder", lambda m: m["decoder"].update(name="mystery")),
        ("huge widths", lambda m: m["decoder"]["configuration"].update(widths=[10**6] * 3)),
        ("too many stages", lambda m: m["decoder"]["configuration"].update(strides=[2] * 40)),
        ("other widths", lambda m: m["decoder"]["configuration"]["widths"].__setitem__(0, 7)),
        ("absurd signal", lambda m: m["signal"].update(shape=[1, 3, 10**6, 10**6])),
        ("signal rank", lambda m: m["signal"].update(shape=[1, 3, 24])),
        ("signal channels", lambda m: m["signal"].update(shape=[1, 4, 24, 40])),
        ("ndim", lambda m: m["decoder"]["configuration"].update(ndim=5)),
        ("bad modality", lambda m: m["modality"].update(name="nonexistent")),
        (
            "modality shape",
            lambda m: m["modality"]["configuration"].update(shape=[15, 24, 3]),
        ),
        ("signal height", lambda m: m["signal"].update(shape=[1, 3, 17, 40])),
    ],
)
def test_lying_metadata_raises_format_error(valid_file, tmp_path, what, edit):
    _, parts = valid_file
    path = _rewrite(tmp_path, parts, edit)
    with pytest.raises(neurep.FormatError):
        _decode(path)


def test_a_file_of_an_unknown_modality_still_loads_its_metadata(valid_file, tmp_path):
    _, parts = valid_file
    path = _rewrite(tmp_path, parts, lambda m: m["modality"].update(name="from-a-plugin"))
    datum = neurep.load(path)
    assert datum.metadata["modality"]["name"] == "from-a-plugin"
    with pytest.raises(neurep.FormatError, match="not known"):
        datum.decode()


def test_non_finite_weights_raise_format_error(valid_file, tmp_path):
    _, parts = valid_file

    def poison(tensors):
        name = next(k for k, v in tensors.items() if v.is_floating_point())
        tensors[name] = tensors[name].clone()
        tensors[name].view(-1)[0] = float("nan")

    with pytest.raises(neurep.FormatError, match=r"NaN|non-finite"):
        _decode(_rewrite(tmp_path, parts, tensors_edit=poison))


def test_missing_weight_raises_format_error(valid_file, tmp_path):
    """Dropped from both the tensors and their quantisation record: only the decoder knows."""
    _, parts = valid_file
    victim = sorted(parts[2])[0]

    if parts[0]["weights"]["quantization"]["version"] == 2:  # format 1.1: a letter per tensor
        victim = None

    def forget(metadata):
        q = metadata["weights"]["quantization"]
        if victim is None:
            q["layout"] = q["layout"][:-1]
        else:
            q["tensors"].pop(victim)

    edit = None if victim is None else (lambda t: t.pop(victim))
    path = _rewrite(tmp_path, parts, forget, tensors_edit=edit)
    with pytest.raises(neurep.FormatError, match=r"weights do not match|one letter for each"):
        _decode(path)


_CONFIG_KEYS = ("ndim", "in_channels", "out_channels")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key=st.sampled_from([*_CONFIG_KEYS, "strides", "widths", "signal"]),
    value=st.one_of(
        st.integers(-3, 10**7),
        st.lists(st.integers(-3, 300), max_size=20),
        st.text(max_size=5),
        st.none(),
        st.booleans(),
    ),
)
def test_any_decoder_or_signal_value_decodes_or_raises_format_error(
    valid_file, tmp_path_factory, key, value
):
    _, parts = valid_file

    def edit(metadata):
        if key == "signal":
            metadata["signal"]["shape"] = value
        else:
            metadata["decoder"]["configuration"][key] = value

    try:
        path = _rewrite(tmp_path_factory.mktemp("h"), parts, edit)
    except neurep.FormatError:
        return  # the schema refuses to write it: fine, a reader would refuse it too
    try:
        decoded = _decode(path)
    except neurep.FormatError:
        return
    assert isinstance(decoded, np.ndarray)


def test_decoding_twice_reads_the_weights_once(valid_file, monkeypatch):
    path, _ = valid_file
    datum = neurep.load(path)
    first = datum.decode()
    monkeypatch.setattr(type(datum._reader), "read_tensors", lambda self: pytest.fail("reread"))
    np.testing.assert_array_equal(first, datum.decode())
    assert torch.is_tensor(datum.decode_signal())


def test_a_dataset_reads_embeddings_of_a_file_that_cannot_decode(valid_file, tmp_path):
    """The embedding output validates the file but not what only decoding needs."""
    from neurep.data import NeuralDataset

    _, parts = valid_file

    def lie(metadata):
        metadata["signal"]["shape"] = [1, 3, 24, 41]

    path = _rewrite(tmp_path, parts, edit=lie)
    embedding = NeuralDataset([path], output="embedding")[0]
    assert torch.equal(embedding, torch.from_numpy(parts[1]["embedding"][0]))
    for output in ("decoded", "datum", "encoded"):
        with pytest.raises(neurep.FormatError, match="inconsistent metadata"):
            NeuralDataset([path], output=output)[0]
