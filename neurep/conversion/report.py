"""What a conversion did (:class:`ConvertReport`) and the lines that say so."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ConvertReport"]

#: Outputs named in the "made with other settings" message.
_EXAMPLES = 3


@dataclass
class ConvertReport:
    """The outcome of :func:`neurep.convert`.

    total: items in the source. converted: fitted in this run. reused: files already in
    place with this source and these settings but not yet in the index (a run killed
    between the two), now indexed. skipped: already in the index as done. failed: items
    recorded as errors. differing: outputs made with other settings, left alone (refit
    them with ``force=True``); ``changes`` says which settings differ for the first one.
    errors: the index rows of the failed items (``error`` holds the message).
    fitted_bytes, psnr_sum, psnr_count: totals over the items fitted in this run.
    seconds: the run's wall time.
    """

    out_dir: Path
    index: Path
    total: int
    runner: str = "this process"
    converted: int = 0
    reused: int = 0
    skipped: int = 0
    failed: int = 0
    differing: list[str] = field(default_factory=list)
    changes: str = ""
    errors: list[dict[str, Any]] = field(default_factory=list)
    fitted_bytes: int = 0
    psnr_sum: float = 0.0
    psnr_count: int = 0
    seconds: float = 0.0
    bad_index_lines: int = 0

    @property
    def ok(self) -> bool:
        """Every item is converted with these settings."""
        return self.failed == 0 and not self.differing

    @property
    def done(self) -> int:
        """Items converted, in this run or before."""
        return self.converted + self.reused + self.skipped

    @property
    def items_per_second(self) -> float:
        return self.converted / self.seconds if self.seconds > 0 else 0.0

    @property
    def mean_psnr(self) -> float | None:
        """Mean PSNR (dB) of the items fitted in this run (lossless ones left out)."""
        return self.psnr_sum / self.psnr_count if self.psnr_count else None

    def add(self, row: dict[str, Any], *, reused: bool = False) -> None:
        """Count a row this run appended to the index."""
        if row.get("status") != "ok":
            self.failed += 1
            self.errors.append(row)
        elif reused:
            self.reused += 1
        else:
            self.converted += 1
            self.fitted_bytes += int(row.get("bytes") or 0)
            psnr = (row.get("quality") or {}).get("psnr")
            if isinstance(psnr, int | float) and math.isfinite(psnr):
                self.psnr_sum += psnr
                self.psnr_count += 1

    def summary(self) -> str:
        """The closing line: counts, throughput, mean quality and bytes."""
        parts = [f"{self.converted + self.reused:,} converted"]
        if self.skipped:
            parts.append(f"{self.skipped:,} already done")
        parts.append(f"{self.failed:,} failed")
        if self.differing:
            parts.append(f"{len(self.differing):,} made with other settings")
        text = ", ".join(parts) + f" in {self.seconds:.1f} s"
        if self.converted:
            text += f" ({self.items_per_second:.2f} items/s on {self.runner})"
            psnr = self.mean_psnr
            if psnr is not None and math.isfinite(psnr):
                text += f"; mean PSNR {psnr:.2f} dB"
            total = self.fitted_bytes
            text += f", mean {total / self.converted:,.0f} bytes ({total:,} in all)"
        return text + f"; index: {self.index}"

    def failure_line(self) -> str | None:
        """The one line saying why the run is not a success, or None when it is."""
        if self.ok:
            return None
        lines = []
        if self.failed:
            lines.append(f"{self.done:,} converted, {self.failed:,} failed: see {self.index}")
        if self.differing:
            shown = ", ".join(self.differing[:_EXAMPLES])
            more = ", ..." if len(self.differing) > _EXAMPLES else ""
            changes = f" ({self.changes})" if self.changes else ""
            lines.append(
                f"{len(self.differing):,} items were converted with other settings{changes}"
                f" and were left alone: {shown}{more}; rerun with --force (force=True) "
                "to refit them"
            )
        return "; ".join(lines)
