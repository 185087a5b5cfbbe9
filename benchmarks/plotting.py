"""Rate-distortion plots: our curves (solid) beside the published Kodak anchors (dashed, muted).

    plot_rd(curves, "../shared/anchors/kodak_rd_reference.json", "rd.png", "Kodak")
    plot_points([{"name": "LPNet-S3K", "bpp": 1.2, "psnr": 27.9}], "pts.png", "LPNet")

``curves`` are result objects in CompressAI's layout (``{"name", "results": {"bpp": [...],
"psnr-rgb": [...], ...}}``). The anchors file holds ``{"curves": {name: {"bpp", "psnr"}},
"paper_points": {name: {"psnr", "bpp" (may be null), ...}}}``; a paper point without a rate is
drawn as a dotted horizontal line. Only PSNR anchors exist, so they are drawn only for the
``psnr-rgb`` metric. Figures are rendered with matplotlib's Agg canvas directly (no pyplot, no
global state, no display needed), so importing this module changes no matplotlib settings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["add_anchors", "add_curves", "add_points", "load_anchors", "plot_points", "plot_rd"]

_ANCHOR_COLOURS = (
    "#7f7f7f",
    "#a6761d",
    "#8c6d8c",
    "#6b8e9f",
    "#9a9a5a",
    "#b08080",
    "#5f7f5f",
    "#9f8f6f",
    "#707090",
)
_ANCHOR_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">")
_RATELESS_STYLES = (":", (0, (1, 3)), (0, (4, 2, 1, 2)), (0, (6, 3)), (0, (2, 1)))
_YLABEL = {"psnr-rgb": "PSNR-RGB [dB]", "ms-ssim-rgb": "MS-SSIM-RGB"}


def load_anchors(path: str | Path) -> dict:
    """Read the anchors JSON; returns ``{"curves": {...}, "paper_points": {...}}``."""
    data = json.loads(Path(path).read_text())
    return {"curves": data.get("curves", {}), "paper_points": data.get("paper_points", {})}


def add_anchors(ax: Axes, anchors: dict, *, names: Sequence[str] | None = None) -> None:
    """Draw published PSNR curves dashed in muted colours, and rate-less paper points dotted."""
    for i, (name, c) in enumerate(anchors["curves"].items()):
        if names is not None and name not in names:
            continue
        ax.plot(
            c["bpp"],
            c["psnr"],
            linestyle="--",
            linewidth=1.0,
            markersize=3,
            marker=_ANCHOR_MARKERS[i % len(_ANCHOR_MARKERS)],
            color=_ANCHOR_COLOURS[i % len(_ANCHOR_COLOURS)],
            alpha=0.8,
            label=f"{name} (published)",
        )
    n_rateless = 0
    for name, p in anchors["paper_points"].items():
        if (names is not None and name not in names) or p.get("psnr") is None:
            continue
        if p.get("bpp") is None:  # no rate: a horizontal line, named in the legend
            style = _RATELESS_STYLES[n_rateless % len(_RATELESS_STYLES)]
            n_rateless += 1
            ax.axhline(
                p["psnr"],
                linestyle=style,
                linewidth=1.0,
                color="#444444",
                alpha=0.8,
                label=f"{name}: {p['psnr']} dB, rate not reported",
            )
        else:
            ax.scatter(
                [p["bpp"]],
                [p["psnr"]],
                marker="*",
                s=60,
                color="#555555",
                zorder=3,
                label=f"{name} (published)",
            )


def add_curves(ax: Axes, curves: Sequence[dict], *, metric: str = "psnr-rgb") -> None:
    """Draw our result objects (CompressAI layout) as solid lines with markers."""
    for c in curves:
        r = c["results"]
        if metric not in r:
            continue
        pts = sorted((b, m) for b, m in zip(r["bpp"], r[metric], strict=True) if m is not None)
        if pts:
            ax.plot(
                *zip(*pts, strict=True),
                linestyle="-",
                linewidth=2.0,
                marker="o",
                markersize=4,
                label=c["name"],
                zorder=4,
            )


def add_points(ax: Axes, points: Sequence[dict], *, metric: str = "psnr") -> None:
    """Scatter single results: each ``{"name", "bpp", metric}``; one marker/label per name."""
    by_name: dict[str, list[tuple[float, float]]] = {}
    for p in points:
        if p.get("bpp") is not None and p.get(metric) is not None:
            by_name.setdefault(p["name"], []).append((p["bpp"], p[metric]))
    for name, xy in by_name.items():
        ax.scatter(
            *zip(*xy, strict=True), s=30, zorder=5, label=name, edgecolors="black", linewidths=0.5
        )


def _finish(ax: Axes, title: str, metric: str, out_png: str | Path, logx: bool) -> Path:
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel("bits per pixel (real file bytes)")
    ax.set_ylabel(_YLABEL.get(metric, metric))
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    ax.figure.savefig(out, dpi=130, bbox_inches="tight")
    return out


def _axes() -> Axes:
    fig = Figure(figsize=(7.5, 5.0))
    FigureCanvasAgg(fig)
    return fig.add_subplot()


def plot_rd(
    curves: Sequence[dict],
    anchors_path: str | Path | None,
    out_png: str | Path,
    title: str,
    *,
    metric: str = "psnr-rgb",
    points: Sequence[dict] = (),
    anchor_names: Sequence[str] | None = None,
    logx: bool = True,
) -> Path:
    """Our ``curves`` (solid) + the anchors (dashed, PSNR only) + optional single ``points``.

    points: ``{"name", "bpp", "psnr"}`` dicts (drawn for the PSNR metric). Returns the PNG path.
    """
    ax = _axes()
    if anchors_path is not None and metric == "psnr-rgb":
        add_anchors(ax, load_anchors(anchors_path), names=anchor_names)
    add_curves(ax, curves, metric=metric)
    if points and metric == "psnr-rgb":
        add_points(ax, points)
    return _finish(ax, title, metric, out_png, logx)


def plot_points(
    points: Sequence[dict],
    out_png: str | Path,
    title: str,
    *,
    anchors_path: str | Path | None = None,
    curves: Sequence[dict] = (),
    metric: str = "psnr",
    logx: bool = True,
) -> Path:
    """PSNR-vs-bpp scatter of single results (e.g. one LPNet fit per image or per setting).

    points: ``{"name", "bpp", metric}`` dicts; same name = same series. Anchors and our curves
    are drawn behind them when given. Returns the PNG path.
    """
    ax = _axes()
    if anchors_path is not None:
        add_anchors(ax, load_anchors(anchors_path))
    add_curves(ax, curves)
    add_points(ax, points, metric=metric)
    return _finish(ax, title, "psnr-rgb" if metric == "psnr" else metric, out_png, logx)
