"""How fast can this machine decode a dataset's test videos at all? The ceiling for scoring.

Times, over the same videos in one process, best of `--repeat` passes each:
- bare decoding with FFmpeg's threads (PyAV, no pixel conversion): nothing that reads the video
  can be faster;
- vlavad's working frames as scoring reads them, from a cold start: the probe's decoding pass
  (which keeps the grey working frames of a short clip), then the frames themselves (what the
  weight-free tier reads);
- the same with the colour frame too (what a recogniser that looks at crops reads: the probe
  keeps no colour, so colour frames cost a second decoding pass).

    python benchmarks/decode_ceiling.py ../shared/data/ped2

Compare with the "score" frames/s of `vlavad bench`: scoring cannot beat the first row.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import av

from vlavad.io import kept_frames
from vlavad.io import probe as probing
from vlavad.io.datasets import load_dataset
from vlavad.io.probe import probe
from vlavad.io.working_frames import iter_working_frames
from vlavad.track.tracking import TrackSettings

WORKING_HEIGHT = TrackSettings().working_height  # the height every frame is read at


def bare_decode(path: str) -> int:
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def working_frames(path: str, colour: bool) -> int:
    # Forget earlier probes and the frames they kept: otherwise every pass after the first
    # would time reading from memory.
    probing._probe_cached.cache_clear()
    kept_frames._KEPT.clear()
    info = probe(path)
    size = (round(info.width * WORKING_HEIGHT / info.height), WORKING_HEIGHT)
    return sum(1 for _ in iter_working_frames(info, size, colour=colour))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    videos = [str(v.path) for v in load_dataset(args.dataset).test]
    ways = {
        "bare decoding (FFmpeg threads, no conversion)": bare_decode,
        "working grey frames (weight-free tier)": lambda v: working_frames(v, colour=False),
        "working grey + colour frames (packaged tier)": lambda v: working_frames(v, colour=True),
    }
    best = {name: float("inf") for name in ways}
    frames = 0
    for _ in range(args.repeat):
        for name, read in ways.items():  # interleaved, so drift on a shared machine hits all alike
            started = time.perf_counter()
            frames = sum(read(v) for v in videos)
            best[name] = min(best[name], time.perf_counter() - started)
    print(f"{len(videos)} test videos, {frames} frames, best of {args.repeat}\n")
    print("| reading | seconds | frames/s |\n| --- | --- | --- |")
    for name, seconds in best.items():
        print(f"| {name} | {seconds:.2f} | {frames / seconds:.0f} |")


if __name__ == "__main__":
    main()
