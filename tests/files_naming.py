"""Which files under a folder still name a subject: the scan behind the erasure tests.

A grep of every file's bytes (the id as UTF-8 and as UTF-32, the way numpy stores strings), then, for a model
file (``.npz``), the user ids of its training rows read as the model reads them.
"""

from __future__ import annotations

import io
from pathlib import Path

from recommender.family import model_user_ids


def files_naming(folder: Path, subject: str) -> list[Path]:
    """Every file under ``folder`` whose bytes or training rows name ``subject``."""
    out = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        ids = model_user_ids(io.BytesIO(data)) if path.suffix == ".npz" else None
        if subject.encode() in data or subject.encode("utf-32-le") in data or (ids is not None and (ids.astype(str) == subject).any()):
            out.append(path)
    return out
