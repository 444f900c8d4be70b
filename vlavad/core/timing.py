"""Where the time goes: wall seconds per stage, for the per-stage tables of `vlavad bench` and
`benchmarks/speed.py`.

A stage is timed where it runs (`with times("track"): ...`). Decoding and detection run ahead in
a thread of their own, so what is counted under "decode" and "detect" is the time the pipeline
*waited* for a detected frame, shared between the two in proportion to their own seconds: with
that thread fully overlapped both tend to zero, and the table still adds up to the wall time.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

STAGES = ("decode", "detect", "track", "flow", "describe", "embed", "s3m", "fuse", "io")
# Printed under the tables, so that nobody reads a small "detect" as a free detector.
TABLE_NOTE = "decode and detect run ahead in a thread of their own: their rows are the time the rest waited for them."


class StageTimes:
    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, stage: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - started

    def add_waited(self, seconds: float, spent: dict[str, float]) -> None:
        """Counts `seconds` that the pipeline waited for a thread working ahead of it, shared
        between that thread's stages in proportion to the seconds it `spent` in each."""
        total = sum(spent.values())
        for stage, own in spent.items():
            self.seconds[stage] += seconds * own / total if total > 0 else 0.0

    def snapshot(self) -> dict[str, float]:
        return dict(self.seconds)

    def since(self, snapshot: dict[str, float]) -> dict[str, float]:
        """Seconds per stage spent after `snapshot`."""
        return {stage: self.seconds.get(stage, 0.0) - snapshot.get(stage, 0.0) for stage in STAGES}


def stage_table(seconds: dict[str, float], frames: int, wall: float) -> list[dict]:
    """Rows (stage, seconds, share of the wall time, frames/s the stage alone would allow)."""
    rows = []
    for stage in STAGES:
        spent = seconds.get(stage, 0.0)
        rows.append(
            {
                "stage": stage,
                "seconds": round(spent, 2),
                "share": round(spent / wall, 3) if wall else 0.0,
                "frames_per_s": round(frames / spent, 1) if spent > 1e-9 else None,
            }
        )
    other = wall - sum(seconds.get(s, 0.0) for s in STAGES)
    rows.append({"stage": "other", "seconds": round(other, 2), "share": round(other / wall, 3) if wall else 0.0, "frames_per_s": None})
    return rows


def format_table(title: str, rows: list[dict]) -> str:
    lines = [f"| {title} | seconds | share | frames/s |", "| --- | --- | --- | --- |"]
    for row in rows:
        fps = "–" if row["frames_per_s"] is None else f"{row['frames_per_s']:,.0f}"
        lines.append(f"| {row['stage']} | {row['seconds']:.2f} | {row['share']:.0%} | {fps} |")
    return "\n".join(lines)
