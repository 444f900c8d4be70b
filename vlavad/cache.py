"""Per-video stage cache: tables on disk, keyed by input content and settings.

A stage's key hashes the content key of its input video, the identity of its backend and the
settings of this stage and every stage before it, so changing a later stage (the prompt pool,
λ, σ) never recomputes an earlier one. Tables are stored as `.npz` of plain arrays (read back
with `allow_pickle=False`: a cache file can never execute code), written atomically: a killed
run leaves either the old file or the new one, never half of one. A file that cannot be read,
or whose columns are not the ones the stage writes, counts as a miss and is recomputed.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from .fileio import atomic_write_bytes


def stable_key(*parts) -> str:
    """A short hex digest of JSON-able parts (dict key order does not matter)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class StageCache:
    """Tables per (stage, key) under one folder, with hit/miss counts for the run summary."""

    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root else None
        self.hits: dict[str, int] = {}
        self.misses: dict[str, int] = {}
        # When a list, every table saved is also appended to it as (stage, key, table): a sharded
        # extraction's worker hands what it computed to the driver, which stores it.
        self.written: list[tuple[str, str, pd.DataFrame]] | None = None

    def contains(self, stage: str, key: str) -> bool:
        return self.root is not None and self._path(stage, key).is_file()

    def _path(self, stage: str, key: str) -> Path:
        return self.root / stage / f"{key}.npz"

    def load(self, stage: str, key: str, columns: list[str]) -> pd.DataFrame | None:
        """The stored table, or None (a miss) when there is none, it cannot be read, or its
        columns are not `columns` (a file from another version, or damaged)."""
        table = self._read(self._path(stage, key)) if self.root is not None else None
        if table is None or list(table.columns) != list(columns):
            self.misses[stage] = self.misses.get(stage, 0) + 1
            return None
        self.hits[stage] = self.hits.get(stage, 0) + 1
        return table

    @staticmethod
    def _read(path: Path) -> pd.DataFrame | None:
        try:
            with np.load(path, allow_pickle=False) as data:
                columns = json.loads(str(data["__columns__"]))
                return pd.DataFrame({c: data[f"c{i}"] for i, c in enumerate(columns)})
        except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile, TypeError):
            return None

    def save(self, stage: str, key: str, table: pd.DataFrame) -> None:
        if self.written is not None:
            self.written.append((stage, key, table))
        if self.root is None:
            return
        arrays = {"__columns__": np.array(json.dumps([str(c) for c in table.columns]))}
        for i, column in enumerate(table.columns):
            values = table[column].to_numpy()
            arrays[f"c{i}"] = values.astype(str) if values.dtype == object else values
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(self._path(stage, key), buffer.getvalue())

    def summary(self) -> str:
        stages = sorted(set(self.hits) | set(self.misses))
        return ", ".join(f"{s}: {self.hits.get(s, 0)} cached / {self.misses.get(s, 0)} computed" for s in stages)
