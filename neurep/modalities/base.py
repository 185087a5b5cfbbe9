"""The interface every modality adapter implements (see docs/ARCHITECTURE.md).

An adapter turns the user's object into a *signal*, a float32 tensor of shape
``(B, C, *spatial)`` with values in ``[0, 1]``, and turns a (reconstructed) signal back into
an object of the same kind, shape, dtype and value range. Everything needed for the way back
is kept in a JSON-able ``{"name", "configuration"}`` dict that goes into the ``.nrep`` file.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import math
import os
import typing
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from neurep.errors import FormatError, InputError


class ModalityAdapter(abc.ABC):
    """Converts one kind of datum to and from a signal ``(B, C, *spatial)`` in ``[0, 1]``.

    A subclass sets :attr:`name` and :attr:`Configuration` (a frozen dataclass: what the file
    keeps to restore the user's object), and implements :meth:`accepts`,
    :meth:`from_object`, :meth:`from_signal`, :attr:`value_range` and :meth:`as_array`.
    :meth:`to_config` / :meth:`from_config` come from the dataclass. Register it with
    :func:`neurep.modalities.register` (docs/ARCHITECTURE.md, "Adding a modality").
    """

    name: ClassVar[str]
    """Registry name stored in the file: ``"image"``, ``"array"``, later ``"video"``..."""
    spatial_ndim: int
    """Number of spatial axes of the signal (image 2, array 1..3, video 2)."""
    loss: ClassVar[str] = "mse"
    """Training loss that suits the signal: ``"mse"`` or ``"bce"`` (occupancy)."""
    description: ClassVar[str] = ""
    """One line naming the inputs this adapter takes; shown when no adapter fits an input."""
    extensions: ClassVar[tuple[str, ...]] = ()
    """Lower-case file suffixes (with the dot) this adapter reads, in order of preference."""
    Configuration: ClassVar[type]
    """A frozen dataclass of JSON values; an instance is :attr:`configuration`."""
    item_axis: ClassVar[bool] = False
    """Whether the datum has an axis of items the user sees (video's frames): its tensors
    (:meth:`signal_as_tensor`, embeddings in datasets) keep the B axis; others drop it."""
    item_label: ClassVar[str] = "items"
    """What one of the signal's B items is called in progress bars ("frames" for video)."""
    read_options: ClassVar[tuple[str, ...]] = ()
    """Keyword options :meth:`from_object` takes (video: ``frames``, ``size``); ``neurep.fit``
    passes its extra keyword arguments through :meth:`read`, which rejects any other."""
    decode_options: ClassVar[tuple[str, ...]] = ()
    """Keyword options :meth:`from_signal` takes (shapes: ``kind``), passed on by
    :meth:`NeuralDatum.decode <neurep.datum.NeuralDatum.decode>`, which rejects any other."""

    def __init__(self, configuration: Any) -> None:
        self.configuration = configuration

    @property
    def preset_profile(self) -> str:
        """Which of a preset's profiles this datum is fitted with (``"image"``,
        ``"volume"``, ...; see :class:`neurep.fitting.Preset`); default: :attr:`name`."""
        return self.name

    # ---- choosing an adapter -------------------------------------------------------------

    @classmethod
    @abc.abstractmethod
    def accepts(cls, obj: Any) -> bool:
        """Cheap sniffing by type, shape, dtype or file extension; never reads a file."""

    @classmethod
    def sniff(cls, path: Path) -> bool:
        """Whether the existing file ``path`` looks like this adapter's kind by its content.

        Used only when no adapter :meth:`accepts` the path (unknown or missing extension).
        The default says no.
        """
        return False

    # ---- the way there and back ------------------------------------------------------------

    @classmethod
    @abc.abstractmethod
    def from_object(cls, obj: Any, **options: Any) -> tuple[ModalityAdapter, torch.Tensor]:
        """Read ``obj``; return an adapter that remembers how to restore it, and the signal
        ``(B, C, *spatial)``: float32 in ``[0, 1]``, or uint8 standing for ``value / 255``
        (a long video stays 1 byte a sample; the fitting loop converts it per batch).

        ``options`` are those named in :attr:`read_options`.
        Raises :class:`~neurep.errors.InputError` when ``obj`` cannot be used.
        """

    @classmethod
    def read(cls, obj: Any, **options: Any) -> tuple[ModalityAdapter, torch.Tensor]:
        """:meth:`from_object` after checking that every option is one of
        :attr:`read_options` (InputError naming the ones this modality takes otherwise)."""
        unknown = sorted(set(options) - set(cls.read_options))
        if unknown:
            takes = ", ".join(cls.read_options) or "none"
            raise InputError(
                f"the {cls.name} modality takes no option {', '.join(map(repr, unknown))} "
                f"(its options: {takes})"
            )
        return cls.from_object(obj, **options)

    @abc.abstractmethod
    def from_signal(self, signal: torch.Tensor, **options: Any) -> Any:
        """``(B, C, *spatial)`` float in about ``[0, 1]`` -> the user's kind, with the same
        shape, dtype and value range as the object given to :meth:`from_object`.

        ``options`` are those named in :attr:`decode_options`."""

    def signal_as_tensor(self, signal: torch.Tensor) -> torch.Tensor:
        """A decoded signal ``(B, C, *spatial)`` in [0, 1] as the float32 tensor ML
        pipelines get (``NeuralDatum.as_tensor``, ``neurep.data.NeuralDataset``).

        The default is the one item, ``(C, *spatial)`` in [0, 1]: images ``C x H x W``,
        shapes' occupancy probabilities ``1 x D x H x W``. Video keeps its frame axis,
        arrays return to their own units.
        """
        return signal if self.item_axis else signal[0]

    def signal_shape(self) -> tuple[int, ...] | None:
        """``(B, C, *spatial)`` of the signal this configuration restores from, or None if
        the adapter does not say; a file whose signal disagrees is refused on load."""
        return None

    def concatenate(self, parts: list[Any]) -> Any:
        """Decodes of consecutive batches of items, as one (a long clip decodes in batches).

        The default joins numpy arrays and tensors along their first (item) axis.
        """
        if all(isinstance(part, torch.Tensor) for part in parts):
            return torch.cat(parts)
        return np.concatenate([np.asarray(part) for part in parts])

    def single_item(self, decoded: Any) -> Any:
        """The decode of one item picked by an index, from the decode of that item alone.

        Images and arrays have no item axis (the decode is the item); video drops its frame
        axis, so that ``decode(i)`` is ``decode()[i]``.
        """
        return decoded

    def to_config(self) -> dict[str, Any]:
        """``{"name": self.name, "configuration": {... JSON values only ...}}``."""
        return {"name": self.name, "configuration": dataclasses.asdict(self.configuration)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModalityAdapter:
        """Rebuild the adapter from :meth:`to_config`'s output (read back from a file).

        Every field of :attr:`Configuration` must be present; values are converted to the
        field's type (``str``, ``int``, ``list[int]``, ``list[...]``; other types as they
        are) and then checked by :meth:`check_configuration`.

        Raises :class:`~neurep.errors.FormatError` when the configuration is malformed.
        """
        fields = configuration_of(config, cls.name)
        configuration = parse_configuration(cls.Configuration, fields, cls.name)
        cls.check_configuration(configuration)
        return cls(configuration)

    @classmethod  # noqa: B027 - an optional hook, not an abstract method
    def check_configuration(cls, configuration: Any) -> None:
        """Raise :class:`~neurep.errors.FormatError` if a parsed configuration (from an
        untrusted file) cannot be restored. The default accepts everything."""

    # ---- measuring (docs/ARCHITECTURE.md, "Measuring quality") -----------------------------

    @property
    def num_pixels(self) -> int | None:
        """Pixels of the datum for bits-per-pixel, or ``None`` where bpp does not apply."""
        return None

    @property
    def value_range(self) -> tuple[float, float]:
        """``(low, high)`` in original units: the values the signal's 0 and 1 stand for."""
        raise NotImplementedError(f"{type(self).__name__} does not define value_range")

    @property
    def data_range(self) -> float:
        """``high - low`` of :attr:`value_range`: what PSNR and MS-SSIM are measured against."""
        low, high = self.value_range
        return float(high) - float(low)

    def as_array(self, obj: Any) -> np.ndarray:
        """An object of this adapter's kinds (original or decoded) as ``(B, C, *spatial)``
        float64 values in original units (not normalised)."""
        raise NotImplementedError(f"{type(self).__name__} does not define as_array")

    def measure(self, original: Any, datum: Any) -> dict[str, Any]:
        """The quality record of a fitted ``datum`` (a NeuralDatum of this adapter) against
        ``original``: what the fit pipeline stores. The default is :meth:`quality` of
        ``datum.decode()``; shapes also use the decoded occupancy probabilities."""
        return self.quality(original, datum.decode())

    def measure_psnr(self, original: Any, datum: Any) -> float:
        """The PSNR (dB) that :meth:`measure` reports, alone: what a search over storage
        settings compares, without the cost of MS-SSIM and other metrics."""
        from neurep import metrics

        data_range = self.data_range if self.data_range > 0 else 1.0  # constant datum
        return metrics.psnr(self.as_array(original), self.as_array(datum.decode()), data_range)

    def quality(self, original: Any, decoded: Any) -> dict[str, float | None]:
        """PSNR (dB) and MS-SSIM between the user's object and its decoding.

        Both are measured on the objects themselves, i.e. on values already rounded to the
        original dtype and in original units, against :attr:`data_range`. PSNR is ``inf`` when
        the two are identical. MS-SSIM is computed for 2-D data only (``None`` otherwise, and
        for images under 3 pixels on a side); see :func:`neurep.metrics.ms_ssim` for how
        images too small for five scales are handled.
        """
        from neurep import metrics

        reference = self.as_array(original)  # (B, C, *S)
        test = self.as_array(decoded)  # (B, C, *S)
        if reference.shape != test.shape:
            raise ValueError(
                f"decoded shape {test.shape} differs from the original's {reference.shape}"
            )
        data_range = self.data_range if self.data_range > 0 else 1.0  # constant datum
        result: dict[str, float | None] = {
            "psnr": metrics.psnr(reference, test, data_range),
            "ms_ssim": None,
        }
        if self.spatial_ndim == 2 and min(reference.shape[-2:]) >= metrics.MIN_SSIM_SIDE:
            low = float(self.value_range[0])  # SSIM expects values in [0, data_range]
            result["ms_ssim"] = metrics.ms_ssim(reference - low, test - low, data_range)
        return result


# ---- helpers shared by adapters --------------------------------------------------------------


def is_path(obj: Any) -> bool:
    """Whether ``obj`` is a file path (``str`` or ``os.PathLike``)."""
    return isinstance(obj, str | os.PathLike)


def path_suffix(obj: Any) -> str:
    """Lower-case suffix of a path-like ``obj`` (``""`` when it has none or is not a path)."""
    return Path(os.fspath(obj)).suffix.lower() if is_path(obj) else ""


def read_head(path: Path, size: int = 16) -> bytes:
    """The first ``size`` bytes of ``path`` (``b""`` if it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError:
        return b""


def configuration_of(config: Any, adapter_name: str) -> dict[str, Any]:
    """Check ``{"name": adapter_name, "configuration": {...}}`` and return the configuration."""
    if not isinstance(config, dict) or not isinstance(config.get("configuration"), dict):
        raise FormatError(
            f"modality configuration must be {{'name': ..., 'configuration': {{...}}}}, "
            f"got {config!r}"
        )
    if config.get("name") != adapter_name:
        raise FormatError(
            f"modality configuration is for {config.get('name')!r}, not {adapter_name!r}"
        )
    return config["configuration"]


def parse_configuration(dataclass: type, fields: dict[str, Any], adapter_name: str) -> Any:
    """``dataclass(**fields)`` with each value converted to its field's annotated type.

    Raises FormatError naming the first missing field or the conversion that failed.
    """
    hints = _type_hints(dataclass)
    values = {}
    for field in dataclasses.fields(dataclass):
        if field.name not in fields:
            raise FormatError(
                f"{adapter_name} modality configuration lacks the field {field.name!r}"
            )
        try:
            values[field.name] = _convert(fields[field.name], hints[field.name])
        except (TypeError, ValueError, OverflowError) as error:
            raise FormatError(
                f"{adapter_name} modality configuration is malformed: {error}"
            ) from error
    return dataclass(**values)


@functools.cache
def _type_hints(dataclass: type) -> dict[str, Any]:
    """``typing.get_type_hints`` once per class: it evaluates each string annotation."""
    return typing.get_type_hints(dataclass)


def _convert(value: Any, hint: Any) -> Any:
    """``value`` as ``hint`` for the simple types configurations use; others unchanged."""
    if hint is str or hint is int or hint is float:
        return hint(value)
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint) or (Any,)
        return [int(v) for v in value] if item is int else list(value)
    return value


def json_number(value: float | int) -> float | int:
    """A numpy or Python number as a plain JSON-able Python number."""
    number = value.item() if isinstance(value, np.generic) else value
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"non-finite number {number} cannot be stored")
    return number
