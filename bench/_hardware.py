"""What every benchmark reports about the machine it ran on."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["cpu_model", "hardware"]


def cpu_model() -> str:
    """The processor's model name from /proc/cpuinfo (Linux), else platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def hardware() -> dict[str, Any]:
    """CPU model, cores, 1-minute load average and Python version."""
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average_1m": load, "python": platform.python_version()}
