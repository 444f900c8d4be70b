"""Does a result survive the changes a real deployment makes to video? One table per tier.

Makes transformed copies of an mp4 + test_labels.json dataset, one change at a time and all
together (`transform_dataset.py`), benchmarks each with `vlavad bench` (a fresh process per run),
and prints micro / macro AUC with the change against the original:

    python benchmarks/robustness.py ../shared/data/ped2 --work /tmp/robustness --backend weight-free packaged

Settings are the preset's (chosen without test labels); nothing here chooses anything.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from transform_dataset import transform_dataset  # noqa: E402

VARIANTS = {
    "original": None,
    "mirrored": dict(mirror=True),
    "0.75× size": dict(scale=0.75),
    "1.5× size": dict(scale=1.5),
    "re-encoded (CRF 32)": dict(crf=32),
    "7.5 fps": dict(fps=7.5),
    "15 fps": dict(fps=15.0),
    "all at once (mirrored, 1.5×, CRF 28, 15 fps)": dict(mirror=True, scale=1.5, crf=28, fps=15.0),
    "cheap camera, milder (0.75× size, half as dim, flat and noisy, CRF 32)": dict(scale=0.75, crf=32, cheap=0.5),
    "cheap camera (0.75× size, dim, low contrast, noise, CRF 32)": dict(scale=0.75, crf=32, cheap=1.0),
    "cheap camera (0.5× size, dim, low contrast, noise, CRF 32)": dict(scale=0.5, crf=32, cheap=1.0),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--work", type=Path, required=True, help="where the copies, caches and runs go")
    parser.add_argument("--backend", nargs="+", default=["weight-free", "packaged"])
    parser.add_argument("--preset", default="ped2")
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    args = parser.parse_args(argv)
    results = {}
    for name, change in VARIANTS.items():
        if args.only and name not in args.only and name != "original":
            continue
        slug = "".join(c if c.isalnum() else "-" for c in name).strip("-")
        data = args.dataset if change is None else args.work / "data" / slug
        if change is not None and not (data / "test_labels.json").exists():
            transform_dataset(args.dataset, data, **change)
        for backend in args.backend:
            out = args.work / "runs" / f"{slug}-{backend}"
            if not (out / "results.json").exists():
                command = [
                    sys.executable,
                    "-m",
                    "vlavad",
                    "bench",
                    str(data),
                    "--preset",
                    args.preset,
                    "--backend",
                    backend,
                    "--out",
                    str(out),
                    "--cache",
                    str(args.work / "cache" / backend),
                    "-q",
                ]
                subprocess.run(command, check=True, capture_output=True)
            metrics = json.loads((out / "results.json").read_text())["metrics"]
            results[(name, backend)] = (metrics["micro_auc"], metrics["macro_auc"])
            print(f"{name} / {backend}: {metrics['micro_auc']:.3f} / {metrics['macro_auc']:.3f}", file=sys.stderr, flush=True)
    for backend in args.backend:
        base = results[("original", backend)]
        print(f"\n{backend} tier\n\n| copy | micro AUC | macro AUC | change in micro |\n| --- | --- | --- | --- |")
        for name in VARIANTS:
            if (name, backend) in results:
                micro, macro = results[(name, backend)]
                print(f"| {name} | {micro:.3f} | {macro:.3f} | {micro - base[0]:+.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
