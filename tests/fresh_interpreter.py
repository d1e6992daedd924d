"""Run a snippet in a new interpreter and read the JSON it prints last.

For tests of what a process imports or detects once (a module cache, a library's per-process
state): the test's own interpreter has imported and detected everything already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def fresh(code: str) -> Any:
    """The JSON document ``code`` prints on its last line, run by a new interpreter from the checkout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])
