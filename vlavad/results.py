"""Writing one video's result: per-frame scores, per-object answers and events."""

from __future__ import annotations

import json
from pathlib import Path

from .cache import atomic_write_text
from .pipeline import VideoResult


def save_result(result: VideoResult, folder: str | Path) -> Path:
    """Writes `frames.csv`, `objects.csv` and `result.json` (summary, events, backends)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "frames.csv", result.frames.to_csv(index=False, float_format="%.5f"))
    atomic_write_text(folder / "objects.csv", result.objects.to_csv(index=False, float_format="%.5f"))
    atomic_write_text(folder / "result.json", json.dumps(result.summary(), indent=1))
    return folder
