"""Energy and emissions of a run, measured with codecarbon's offline tracker.

codecarbon needs no network in offline mode: the grid's carbon intensity comes
from its bundled per-country data (the country is the policy pack's
``carbon.country_iso_code``). What it measures depends on the machine:

* CPU: RAPL energy counters where the kernel exposes them (Intel, recent AMD);
  otherwise an estimate from the CPU model's TDP in codecarbon's table, scaled by
  the measured CPU load (or a generic constant when the model is unknown).
* RAM: an estimate from the installed memory size, not a measurement.
* GPU: NVML when an NVIDIA GPU is present.

The ``method`` stored with each run says whether the figure is ``measured`` (the
CPU's RAPL counters were read) or ``estimated``, the grid whose carbon intensity
was applied (``grid DEU``), and which of these applied (``cpu rapl``,
``cpu tdp-x-load (TDP 8 W)``: TDP scaled by load, where 8 W on a CPU model
codecarbon does not know is its default of 4 W per thread, ``cpu constant``), so
a reader knows how much to trust the figure. On a virtual machine without power sensors
(the common CI case) the figures are estimates, good for comparing runs on the
same machine and for budgets with a margin, not for exact accounting.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from importlib.util import find_spec
from pathlib import Path

from governance.facts import CarbonFacts
from recommender.errors import ConfigError

__all__ = ["CarbonMeter", "check_country", "grid_countries", "measure", "prepare", "unknown_grid"]

logger = logging.getLogger(__name__)

UNKNOWN_GRID = (
    "{code!r} is not a country codecarbon has grid data for: its emissions would be the world average, labelled as "
    "{code}'s; give the grid's ISO 3166-1 alpha-3 code{hint}"
)


@cache
def grid_countries() -> frozenset[str] | None:
    """The ISO 3166-1 alpha-3 codes of codecarbon's offline energy-mix table (read without importing codecarbon,
    whose import is slow); None when codecarbon is not installed or its table cannot be read."""
    spec = find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        try:
            table = json.loads((Path(folder) / "data" / "private_infra" / "global_energy_mix.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return frozenset(str(code) for code in table)
    return None


_NEAR = {"GER": "DEU", "ENG": "GBR", "SUI": "CHE", "NED": "NLD", "POR": "PRT", "DEN": "DNK", "CRO": "HRV"}
"""Sports and vehicle codes people write for a country, and its ISO code."""


def unknown_grid(code: str) -> str | None:
    """Why ``code`` names no grid codecarbon knows (codecarbon would silently use the world average), or None."""
    known = grid_countries()
    if known is None or code in known:
        return None
    hint = f" (did you mean {_NEAR[code]}?)" if code in _NEAR else ", such as USA, DEU or FRA"
    return UNKNOWN_GRID.format(code=code, hint=hint)


def check_country(code: str, option: str = "--country") -> str:
    """``code`` when it is an ISO 3166-1 alpha-3 code of a grid codecarbon knows; else a :class:`ConfigError`."""
    if len(code) != 3 or not code.isalpha() or not code.isupper():
        raise ConfigError(f"{option} must be an ISO 3166-1 alpha-3 code such as USA or DEU. Got {code!r} instead.")
    problem = unknown_grid(code)
    if problem is not None:
        raise ConfigError(f"{option}: {problem}")
    return code


@dataclass
class CarbonMeter:
    """Filled when the measured block ends."""

    country_iso_code: str
    facts: CarbonFacts | None = None
    failure: str | None = None
    """Why nothing was measured although measuring was on (``facts`` stays None)."""


_PREPARING: threading.Thread | None = None
_PREPARING_LOCK = threading.Lock()


def _detect_cpu_model() -> None:
    """codecarbon's own CPU-model detection, whose answer it keeps for the process (``lru_cache``)."""
    try:
        from codecarbon.core.util import detect_cpu_model

        detect_cpu_model()
    except Exception as exc:  # noqa: BLE001 - the tracker detects again and reports for itself
        logger.debug("carbon: the CPU model was not detected ahead of the measurement: %s", exc)


def prepare(*, enabled: bool = True) -> None:
    """Start, in the background, the slowest part of a tracker's start: codecarbon's CPU-model detection.

    py-cpuinfo detects the model in a child Python process (a second or more on a busy machine) while the
    caller waits. A caller that will :func:`measure` later calls this first, so that the child runs alongside
    the caller's own work (a gate's consent filter and validation); :func:`measure` waits for it before its
    tracker starts, and the tracker finds codecarbon's answer kept. Nothing measured changes: the same
    function gives the same answer, once. Does nothing with ``enabled=False``, without codecarbon, or when
    already started in this process.
    """
    global _PREPARING
    if not enabled or find_spec("codecarbon") is None:
        return
    with _PREPARING_LOCK:
        if _PREPARING is None:
            _PREPARING = threading.Thread(target=_detect_cpu_model, name="carbon-prepare", daemon=True)
            _PREPARING.start()


def _prepared() -> None:
    """Wait for :func:`prepare`'s detection, if one was started (two detections at once would both run)."""
    with _PREPARING_LOCK:
        preparing = _PREPARING
    if preparing is not None:
        preparing.join()


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
    check_country(country_iso_code, "country_iso_code")  # before the block runs: an unknown grid measures nothing
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
    _prepared()
    started = time.perf_counter()
    tracker.start()
    try:
        yield meter
    finally:
        # codecarbon swallows its own failures (start and stop are wrapped in a suppress): a tracker that did not
        # start, or stopped half way, returns None and may leave no data. That is no measurement, never 0 kWh.
        emissions = tracker.stop()
        data = getattr(tracker, "final_emissions_data", None)
        energy = getattr(data, "energy_consumed", None)
        if emissions is None or energy is None:
            meter.failure = "codecarbon measured nothing (its tracker failed to start or to stop)"
            logger.warning("carbon: %s; the run is recorded without energy and emissions", meter.failure)
        else:  # (no return in this finally: it would swallow the block's own exception)
            meter.facts = CarbonFacts(
                energy_kwh=float(energy),
                emissions_kg=float(emissions),
                duration_s=float(getattr(data, "duration", time.perf_counter() - started) or 0.0),
                country_iso_code=country_iso_code,
                method=_method(getattr(data, "codecarbon_version", "?"), country_iso_code, _cpu_method(tracker), bool(getattr(data, "gpu_count", 0))),
            )


def _method(version: str, country: str, cpu: str, gpu: bool) -> str:
    """How a run was measured, in at most 100 characters: ``measured`` only when the CPU's energy counters were read
    (RAM is always an estimate from its size), ``estimated`` otherwise; the grid whose carbon intensity was applied."""
    basis = "measured" if cpu == "rapl" else "estimated"
    return f"codecarbon {version} offline, {basis}; grid {country}; cpu {cpu}; ram size-estimate; gpu {'nvml' if gpu else 'none'}"[:100]


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
