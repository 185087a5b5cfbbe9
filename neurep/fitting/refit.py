"""Round and refit: a fitted decoder's weights rounded one tensor at a time, the rest refitted.

Rounding every weight of a fitted decoder at once (post-training quantisation) leaves each
tensor's rounding error for nobody to absorb: at int6 that cost a Kodak fit 0.36 dB. Here
the affine-coded tensors are rounded to their stored grid largest first; after each, the
parameters still in float (the tensors not rounded yet, the biases and other float16-stored
vectors, and the embedding) take a few Adam steps on the signal against the rounded ones.
The last round refits only what storage keeps in float. Each rounded tensor is snapped with
its extremes pinned (:meth:`~neurep.fitting.qat.FakeQuantiser.snap_`), so storage finds the
grid it was rounded to. Measured: +0.15 dB at int6 for 4.4 s on a 768x512 image (RESULTS.md,
"Rate"). Only the decoder runs (the encoder's output is the embedding being refitted), on the
whole signal at once, so signals of one item (images, arrays, shapes) use it; a clip's frames
would each need a batch, and clips are stored as rounded.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch

from neurep.fitting.cpu import with_fit_settings
from neurep.fitting.loop import _CHANNELS_LAST, ADAM_BETAS, FitResult, _loss, as_unit
from neurep.fitting.qat import FakeQuantiser

__all__ = ["REFIT_LEARNING_RATE", "REFIT_STEPS", "round_and_refit"]

#: Adam steps after each tensor is rounded (and once more after the last).
REFIT_STEPS = 20
#: Their learning rate: about 3x the end of a fit's schedule, as the refit starts cold.
REFIT_LEARNING_RATE = 1e-3


@with_fit_settings
def round_and_refit(
    result: FitResult,
    signal: torch.Tensor,
    precision: str,
    *,
    step_scales: dict[str, float] | None = None,
    loss: str = "mse",
    steps: int = REFIT_STEPS,
) -> FitResult:
    """``result`` with its decoder's affine-coded weights on ``precision``'s grids (as
    storage will round them) and the other parameters and the embedding refitted around them.

    Args:
        result: a finished fit (CPU decoder); not modified.
        signal: (1, C, *S) the fitted signal, float in [0, 1] or uint8.
        precision: an integer precision (``"int8"`` .. ``"int4"``).
        step_scales: per-tensor step factors the datum will be stored with
            (:mod:`neurep.fitting.steps`); None: min-max steps.
        loss: the fit's loss ("mse" or "bce").
        steps: Adam steps per rounded tensor.

    Returns:
        A new :class:`FitResult` (its decoder and embedding are new tensors).
    """
    if signal.shape[0] != 1:
        raise ValueError(f"round_and_refit needs one item, got {signal.shape[0]}")
    decoder = copy.deepcopy(result.decoder)
    embedding = result.embedding.clone().requires_grad_(True)
    quantiser = FakeQuantiser.for_decoder(decoder, precision, step_scales)
    parameters = dict(decoder.named_parameters())
    order = sorted(quantiser.grids, key=lambda name: -parameters[name].numel())
    target = as_unit(signal)
    spatial = tuple(signal.shape[2:])
    crop = (..., *(slice(0, s) for s in spatial))  # the decoder's output is padded
    layout = _CHANNELS_LAST.get(target.dim())
    if layout is not None:  # as in the fit: several times faster convolutions on CPU
        decoder.to(memory_format=layout)
    rounded: set[str] = set()
    for name in [*order, None]:
        if name is not None:
            # the grid of the weights as they are now, which storage's min-max will find
            grid = FakeQuantiser.for_decoder(decoder, precision, step_scales).grids[name]
            FakeQuantiser(quantiser.bits, {name: grid}).snap_(decoder)
            rounded.add(name)
        free = [p for n, p in parameters.items() if n not in rounded]
        for n, p in parameters.items():
            p.requires_grad_(n not in rounded)
        optimiser = torch.optim.Adam([*free, embedding], lr=REFIT_LEARNING_RATE, betas=ADAM_BETAS)
        for _ in range(steps):
            objective = _loss(decoder(embedding)[crop], target, loss)
            optimiser.zero_grad(set_to_none=True)
            objective.backward()
            optimiser.step()
    decoder.requires_grad_(True)
    decoder.to(memory_format=torch.contiguous_format)
    decoder.eval()
    return replace(result, decoder=decoder, embedding=embedding.detach())
