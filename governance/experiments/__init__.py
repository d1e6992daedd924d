"""Governed experiments: a plan frozen before exposure, deterministic consent-aware assignment,
every look at the data on the trail, and a gate that promotes only on a pre-registered win.

* :mod:`~governance.experiments.spec`: the experiment document (YAML) and its content hash;
* :mod:`~governance.experiments.assign`: which variant serves a subject (a keyed hash under the experiment's salt);
* :mod:`~governance.experiments.lifecycle`: plan, start, status, analyze, stop, and the gate's verdict.

The statistics (sample size, sequential boundaries, SRM, guardrails, corrections) are
:mod:`recommender.experiments`; nothing here computes a test.
"""

from governance.experiments.spec import ExperimentSpec, LoadedExperiment, load_experiment, parse_experiment

__all__ = ["ExperimentSpec", "LoadedExperiment", "load_experiment", "parse_experiment"]
