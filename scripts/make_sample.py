"""Regenerate ``neurep/samples/sample.png``, the demo image bundled with neurep.

The picture is synthetic (made here, CC0): a sky gradient, hills, a sun, a striped building and
fine noise texture, so it has smooth areas, edges and detail like a photograph. It is small
(384x256) so the demo runs in well under a minute on a laptop CPU.

    python scripts/make_sample.py
"""

from pathlib import Path

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 256, 384


def render(seed: int = 2026) -> np.ndarray:
    """(H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    image = np.zeros((HEIGHT, WIDTH, 3))
    sky = y / HEIGHT
    image[...] = np.stack([0.35 + 0.3 * sky, 0.55 + 0.25 * sky, 0.95 - 0.2 * sky], axis=-1)
    sun = (x - 300) ** 2 + (y - 60) ** 2 < 28**2
    image[sun] = [1.0, 0.85, 0.35]
    for amplitude, period, base, colour in [
        (18, 140, 170, (0.25, 0.5, 0.2)),
        (12, 90, 200, (0.18, 0.4, 0.15)),
    ]:
        hill = y > base + amplitude * np.sin(x / period * 2 * np.pi + base)
        image[hill] = colour
    building = (x > 60) & (x < 150) & (y > 90) & (y < 215)
    stripes = (np.floor(y / 9) % 2 == 0) & building
    image[building] = [0.7, 0.66, 0.6]
    image[stripes] = [0.5, 0.45, 0.42]
    windows = building & ((x - 60) % 22 > 12) & ((y - 90) % 18 > 10)
    image[windows] = [0.15, 0.2, 0.3]
    grass = y > 200
    image[grass] += rng.normal(0, 0.06, size=(int(grass.sum()), 3))
    image += rng.normal(0, 0.015, size=image.shape)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


if __name__ == "__main__":
    target = Path(__file__).resolve().parents[1] / "neurep" / "samples" / "sample.png"
    Image.fromarray(render()).save(target, optimize=True)
    print(f"wrote {target}")
