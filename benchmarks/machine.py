"""What every benchmark records about the machine it ran on, beside its own versions."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

import neurep


def machine_facts(**extra: Any) -> dict[str, Any]:
    """Platform, CPU count, Python, torch and its threads, neurep, the 1-minute load average
    at the time of the call (a busy machine skews timings), then ``extra``."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "neurep": neurep.__version__,
        **extra,
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
    }
