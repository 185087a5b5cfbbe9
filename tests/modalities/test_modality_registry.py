"""The modality registry: choosing an adapter, plugging a new one in, rebuilding from metadata."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
import torch

import neurep.modalities as modalities
from neurep.errors import FormatError, InputError
from neurep.modalities import (
    ArrayAdapter,
    ImageAdapter,
    ModalityAdapter,
    adapter_from_config,
    register,
    resolve,
    unregister,
)


class _Frames(list):
    """A stand-in for a future modality's input type."""


class FakeVideoAdapter(ModalityAdapter):
    name: ClassVar[str] = "fake-video"
    description: ClassVar[str] = "lists of frames"
    extensions: ClassVar[tuple[str, ...]] = (".fakevid",)
    spatial_ndim = 2

    def __init__(self, frames: int) -> None:
        self.frames = frames

    @classmethod
    def accepts(cls, obj: Any) -> bool:
        return isinstance(obj, _Frames) or str(obj).endswith(".fakevid")

    @classmethod
    def from_object(cls, obj):
        return cls(len(obj)), torch.zeros(len(obj), 1, 2, 2)

    def from_signal(self, signal):
        return _Frames(range(signal.shape[0]))

    def to_config(self):
        return {"name": self.name, "configuration": {"frames": self.frames}}

    @classmethod
    def from_config(cls, config):
        return cls(config["configuration"]["frames"])


@pytest.fixture
def fake_video():
    register(FakeVideoAdapter, priority=20)
    yield FakeVideoAdapter
    unregister(FakeVideoAdapter.name)


def test_builtins_are_registered_in_priority_order():
    names = modalities.names()
    # voxels (bool 3-D arrays) before image, video before the array fallback
    assert names[:2] == ["voxels", "image"]
    assert names.index("points") < names.index("mesh") < names.index("array")
    assert names[-1] == "array"
    assert set(names) == {"voxels", "image", "video", "points", "mesh", "array"}


def test_a_new_adapter_plugs_in_without_touching_the_others(fake_video):
    assert resolve(_Frames([1, 2, 3])) is FakeVideoAdapter
    assert resolve("clip.fakevid") is FakeVideoAdapter
    assert resolve("clip.png") is ImageAdapter
    adapter, _ = FakeVideoAdapter.from_object(_Frames([1, 2]))
    assert adapter_from_config(adapter.to_config()).frames == 2
    assert "fake-video" in modalities.names()


def test_priority_decides_between_adapters_that_both_accept(fake_video):
    class GreedyAdapter(FakeVideoAdapter):
        name = "greedy"

        @classmethod
        def accepts(cls, obj):
            return isinstance(obj, np.ndarray)

    register(GreedyAdapter, priority=95)
    try:
        assert resolve(np.zeros(10)) is ArrayAdapter  # array (90) is tried first
        unregister("greedy")
        register(GreedyAdapter, priority=5)
        assert resolve(np.zeros(10)) is GreedyAdapter
    finally:
        unregister("greedy")


def test_a_name_cannot_be_taken_twice():
    class Impostor(ImageAdapter):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register(Impostor)
    register(ImageAdapter, priority=10)  # the same class again is harmless
    assert resolve(np.zeros((4, 4), np.uint8)) is ImageAdapter
    with pytest.raises(TypeError):
        register(dict)


def test_explicit_modality_wins_and_unknown_names_list_the_known_ones():
    assert resolve(np.zeros((4, 4), np.uint8), modality="ARRAY") is ArrayAdapter
    with pytest.raises(InputError, match=r"image.*array|array.*image"):
        resolve(np.zeros(3), modality="audio")


def test_unsupported_objects_get_one_message_naming_what_is_supported():
    with pytest.raises(InputError) as caught:
        resolve({"not": "a datum"})
    message = str(caught.value)
    assert "dict" in message and "image:" in message and "array:" in message
    assert "modality=" in message and "\n" not in message


def test_missing_files_without_a_known_extension_are_reported_as_missing(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        resolve(tmp_path / "nothing.here")


def test_existing_file_of_unknown_content_is_unsupported(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(InputError, match="cannot tell"):
        resolve(path)


@pytest.mark.parametrize(
    "config",
    [
        None,
        {"configuration": {}},
        {"name": "hologram", "configuration": {}},
        {"name": "image", "configuration": "kind=numpy"},
    ],
)
def test_bad_modality_metadata_raises_format_error(config):
    with pytest.raises(FormatError):
        adapter_from_config(config)
