"""Energy and emissions of a run, measured with codecarbon's offline tracker.

codecarbon needs no network in offline mode: the grid's carbon intensity comes
from its bundled per-country data (the country is the policy pack's
``carbon.country_iso_code``). What it measures depends on the machine:

* CPU: RAPL energy counters where the kernel exposes them (Intel, recent AMD);
  otherwise an estimate from the CPU model's TDP in codecarbon's table, scaled by
  the measured CPU load (or a generic constant when the model is unknown).
* RAM: an estimate from the installed memory size, not a measurement.
* GPU: NVML when an NVIDIA GPU is present.

The ``method`` stored with each run says which of these applied (``cpu rapl``,
``cpu tdp-x-load (TDP 8 W)``: TDP scaled by load, ``cpu constant``), so a reader
knows how much to trust the figure. On a virtual machine without power sensors
(the common CI case) the figures are estimates, good for comparing runs on the
same machine and for budgets with a margin, not for exact accounting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from governance.facts import CarbonFacts

__all__ = ["CarbonMeter", "measure"]


@dataclass
class CarbonMeter:
    """Filled when the measured block ends."""

    country_iso_code: str
    facts: CarbonFacts | None = None


@contextmanager
def measure(country_iso_code: str, *, enabled: bool = True) -> Iterator[CarbonMeter]:
    """Measure the block with codecarbon; ``meter.facts`` is set when it ends.

    With ``enabled=False`` nothing is measured and ``facts`` stays None (the
    carbon checks then report ``skipped``).
    """
    meter = CarbonMeter(country_iso_code)
    if not enabled:
        yield meter
        return
    from codecarbon import OfflineEmissionsTracker

    # codecarbon sets its logger to INFO on import; its start-up chatter is not ours to print.
    logging.getLogger("codecarbon").setLevel(logging.ERROR)

    tracker = OfflineEmissionsTracker(
        country_iso_code=country_iso_code,
        output_methods=[],
        log_level="error",
        # A sample every 5 s rather than every second: each costs the sampler thread some milliseconds of CPU,
        # a few percent of a long gate on a busy machine; codecarbon measures once more when the block ends,
        # so a run shorter than that is still measured.
        measure_power_secs=5,
        tracking_mode="process",
        allow_multiple_runs=True,
    )
    started = time.perf_counter()
    tracker.start()
    try:
        yield meter
    finally:
        emissions = tracker.stop() or 0.0
        data = tracker.final_emissions_data
        cpu_source = _cpu_method(tracker)
        meter.facts = CarbonFacts(
            energy_kwh=float(getattr(data, "energy_consumed", 0.0) or 0.0),
            emissions_kg=float(emissions),
            duration_s=float(getattr(data, "duration", time.perf_counter() - started) or 0.0),
            country_iso_code=country_iso_code,
            method=(
                f"codecarbon {getattr(data, 'codecarbon_version', '?')} offline; cpu {cpu_source}; "
                f"ram size-estimate; gpu {'nvml' if getattr(data, 'gpu_count', 0) else 'none'}"
            )[:100],
        )


def _cpu_method(tracker: object) -> str:
    """How codecarbon measured the CPU (short; the module docstring explains each)."""
    for hardware in getattr(tracker, "_hardware", []) or []:
        if type(hardware).__name__ != "CPU":
            continue
        mode = str(getattr(hardware, "_mode", ""))
        tdp = getattr(hardware, "_tdp", None)
        if "rapl" in mode.lower():
            return "rapl"
        if mode == "cpu_load":
            return f"tdp-x-load (TDP {tdp} W)"
        if mode == "constant":
            return f"constant {tdp} W"
        return mode or "unknown"
    return "none"
