"""How long a visitor waits for the app's full answer, per tier, through its public API.

The clip is what a phone would upload: 30 s at 640x360 and 25 frames/s, H.264 at CRF 28, made from
real Ped2 footage (10 s of a normal training video, then a test video with its anomaly), or, where
Ped2 is absent, a synthetic scene with a fast object after 10 s. The app starts in a fresh folder
(`python app.py`), and one `gradio_client` call per tier asks for the whole analysis with the first
5 s as normal: fit, score, annotated video, timeline, events and report. The clock covers the
upload and everything the visitor waits for; the app's peak memory is sampled throughout.

    python benchmarks/app_latency.py                          # both tiers, Ped2 from ../shared/data/ped2
    python benchmarks/app_latency.py --tiers packaged --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from concurrent_users import PeakMemory, start_app  # noqa: E402

from vlavad.io.decoder import iter_frames  # noqa: E402
from vlavad.io.writer import BrowserVideoWriter  # noqa: E402
from vlavad.testing.synthetic import render_scene  # noqa: E402

SIZE, FPS, SECONDS, NORMAL_SECONDS = (640, 360), 25.0, 30.0, 5.0


def phone_clip(out: Path, ped2: Path) -> str:
    """Writes the clip; returns what it shows."""
    if not (ped2 / "train" / "Train001.mp4").is_file():
        render_scene(out, frames=int(SECONDS * FPS), width=SIZE[0], height=SIZE[1], fps=FPS, seed=7, anomaly="fast", anomaly_start=int(10 * FPS))
        return "synthetic scene, fast object from 10 s"
    sources = [ped2 / "train" / "Train001.mp4", ped2 / "test" / "Test004.mp4", ped2 / "test" / "Test001.mp4"]
    frames = [cv2.resize(frame, SIZE, interpolation=cv2.INTER_LINEAR) for source in sources for _, frame in iter_frames(source)]
    # Ped2 is 10 frames/s: output frame j shows the source frame of its own time, as a 25-fps camera would.
    with BrowserVideoWriter(out, FPS, *SIZE, crf=28) as writer:
        for j in range(int(SECONDS * FPS)):
            writer.write(frames[min(int(j * 10.0 / FPS), len(frames) - 1)])
    return "Ped2 Train001 (normal), then Test004 (a cart from 15 s) and Test001"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ped2", type=Path, default=REPO.parent / "shared" / "data" / "ped2")
    parser.add_argument("--tiers", nargs="+", default=["weight-free", "packaged"])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)

    from gradio_client import Client, handle_file

    with tempfile.TemporaryDirectory(prefix="vlavad-latency-") as tmp:
        tmp = Path(tmp)
        clip = tmp / "phone.mp4"
        shows = phone_clip(clip, args.ped2)
        proc, url = start_app(tmp / "app", tmp / "app.log")
        memory = PeakMemory(proc.pid)
        seconds: dict[str, list[float]] = {tier: [] for tier in args.tiers}
        summaries = {}
        try:
            client = Client(url, verbose=False)
            for _ in range(args.repeat):
                for tier in args.tiers:
                    started = time.perf_counter()
                    out = client.predict(
                        handle_file(str(clip)),
                        "First seconds of this video",
                        NORMAL_SECONDS,
                        None,
                        None,
                        "motion (bundled)",
                        4,
                        "",
                        tier,
                        api_name="/analyse",
                    )
                    seconds[tier].append(time.perf_counter() - started)
                    summaries[tier] = " ".join(str(out[5]).split())
        finally:
            peak = memory.stop()
            proc.terminate()
            proc.wait(20)

    print(f"{SECONDS:.0f}-s {SIZE[0]}x{SIZE[1]} {FPS:g}-fps clip ({shows}), first {NORMAL_SECONDS:g} s normal; median of {args.repeat}\n")
    print("| tier | full answer (s) | what the summary says |")
    print("| --- | ---: | --- |")
    for tier in args.tiers:
        print(f"| {tier} | {statistics.median(seconds[tier]):.1f} | {summaries[tier][:160]} |")
    print(f"\napp peak RSS {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
