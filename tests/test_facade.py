"""The Python API's examples run: every public function of ``recgov`` has one, and it holds."""

from __future__ import annotations

import doctest
import inspect

import recgov


def test_every_public_function_has_an_example():
    functions = [name for name in recgov.__all__ if inspect.isfunction(getattr(recgov, name))]
    assert functions
    missing = [name for name in functions if ">>>" not in (getattr(recgov, name).__doc__ or "")]
    assert not missing, f"public functions of recgov without a runnable example: {missing}"


def test_the_examples_run():
    result = doctest.testmod(recgov, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 10
    assert result.failed == 0
