"""The model registry: every model rebuilds from its ``to_config()``, read from its signature."""

from __future__ import annotations

import inspect
import json

import pytest
import torch
from torch import nn

from neurep.models import ConfigurableModule, build, registered_names

#: name -> (a small valid configuration, the shape of an input to run it on). Every registered
#: model needs one here, so a new model is round-tripped as soon as it is registered.
EXAMPLES: dict[str, tuple[dict, tuple[int, ...]]] = {
    "conv_transpose": (
        {"ndim": 1, "in_channels": 3, "out_channels": 2, "strides": [2, 2], "widths": [4]},
        (2, 3, 5),
    ),
    "nerv": (
        {
            "ndim": 2,
            "in_channels": 3,
            "out_channels": 2,
            "strides": [2, 2],
            "widths": [4, 5],
            "head_kernel": 1,
        },
        (1, 3, 3, 2),
    ),
    "lpnet": (
        {
            "ndim": 2,
            "in_channels": 2,
            "strides": [4, 2],
            "widths": [4, 6],
            "state_size": [2, 3],
            "level_norm": True,
            "state_norm": True,
            "window_span": [0.1, 1.0],
            "hidden_channels": 3,
        },
        (1, 2, 16, 8),
    ),
    "convnext": (
        {"ndim": 1, "in_channels": 2, "strides": [2, 2], "widths": [3, 4], "embedding_scale": 0.5},
        (2, 2, 8),
    ),
}


def test_every_registered_model_has_an_example() -> None:
    missing = sorted(set(registered_names()) - set(EXAMPLES))
    assert not missing, f"add a small configuration to EXAMPLES for: {missing}"


@pytest.mark.parametrize("name", registered_names())
def test_a_model_rebuilds_from_its_stored_configuration(name: str) -> None:
    configuration, input_shape = EXAMPLES[name]
    torch.manual_seed(0)
    model = build({"name": name, "configuration": configuration}).eval()
    stored = json.loads(json.dumps(model.to_config()))  # as it comes back from a file
    assert stored["name"] == name
    torch.manual_seed(1)  # other initial weights, so only load_state_dict makes them equal
    rebuilt = build(stored).eval()
    assert json.dumps(rebuilt.to_config()) == json.dumps(stored)  # same keys, order, values
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == shapes
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(input_shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


@pytest.mark.parametrize("name", registered_names())
def test_the_configuration_is_every_argument_in_signature_order(name: str) -> None:
    configuration, _ = EXAMPLES[name]
    model = build({"name": name, "configuration": configuration})
    stored = model.to_config()["configuration"]
    signature = inspect.signature(type(model).__init__)  # the class's own, through the wrapper
    assert list(stored) == list(signature.parameters)[1:]  # defaults included, self left out
    assert {k: stored[k] for k in configuration} == configuration


class _Scaled(ConfigurableModule):
    """A test model whose arguments are declared only in its signature."""

    def __init__(self, width: int, depth: int = 2, *, gain: float = 1.5, shape=(1, 2)) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)


def test_a_subclass_records_positional_keyword_and_default_arguments() -> None:
    assert _Scaled(3).configuration == {"width": 3, "depth": 2, "gain": 1.5, "shape": [1, 2]}
    model = _Scaled(4, 5, gain=0.5, shape=(3,))
    assert model.to_config() == {
        "name": "",
        "configuration": {"width": 4, "depth": 5, "gain": 0.5, "shape": [3]},
    }
    assert list(_Scaled(gain=2.0, width=1).configuration) == ["width", "depth", "gain", "shape"]


def test_the_outermost_signature_wins_and_classes_without_init_inherit_it() -> None:
    class Wider(_Scaled):
        def __init__(self, width: int, extra: int = 7) -> None:
            super().__init__(width, gain=0.25)  # the inner signature is not what is stored

    class Same(_Scaled):
        pass

    assert Wider(2).configuration == {"width": 2, "extra": 7}
    assert Same(2, gain=3.0).configuration == _Scaled(2, gain=3.0).configuration


def test_keyword_arguments_are_flattened_and_star_args_refused() -> None:
    class Open(ConfigurableModule):
        def __init__(self, size: int, **options: int) -> None:
            super().__init__()

    assert Open(2, b=1, a=3).configuration == {"size": 2, "b": 1, "a": 3}
    with pytest.raises(TypeError, match="args"):

        class Variadic(ConfigurableModule):
            def __init__(self, *sizes: int) -> None:
                super().__init__()


def test_bad_arguments_raise_the_constructors_own_error() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        _Scaled(3, nope=1)
    with pytest.raises(ValueError, match="bad configuration"):
        build({"name": "conv_transpose", "configuration": {"ndim": 1, "nope": 1}})
