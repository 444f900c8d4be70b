"""The tiers side by side on one dataset: accuracy, speed and memory, from an empty stage cache.

Each configuration is one `vlavad bench` in a fresh process (`--no-cache`, so every stage is
computed, and the peak memory is that run's own), run one after the other on the same machine, so
that the ratio of each one's scoring time to the weight-free tier's holds even where absolute times
drift. Every row names its backends and the run-time that executed the networks.

    python benchmarks/tiers.py ../shared/data/ped2 --preset ped2
    python benchmarks/tiers.py ../shared/data/ped2 --only weight-free packaged --repeat 3

The table is what README.md and docs/performance.md show.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# name: (arguments of `vlavad bench`, environment)
CONFIGS: dict[str, tuple[list[str], dict[str, str]]] = {
    "weight-free": (["--backend", "weight-free"], {}),
    "packaged": (["--backend", "packaged"], {}),
    # The packaged tier as it shipped before it was the default: every network in PyTorch, NanoDet
    # on every frame of a 10-fps video.
    "packaged, before (PyTorch, NanoDet 10 Hz)": (["--backend", "packaged", "--set", "detect.nanodet.rate_hz=10"], {"VLAVAD_RUNTIME": "torch"}),
}


def run(dataset: Path, preset: str, args: list[str], env: dict[str, str], work: Path) -> dict:
    out = Path(tempfile.mkdtemp(dir=work))
    environ = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), **env}
    command = [sys.executable, "-m", "vlavad", "bench", str(dataset), "--preset", preset, "--no-cache", "-q", "--out", str(out / "run"), *args]
    done = subprocess.run(command, env=environ, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.strip()[-1500:]}")
    return json.loads((out / "run" / "results.json").read_text())


def runtime_of(backends: dict) -> str:
    """What ran each stage's networks, from a result's backends record (stages without one: -)."""
    runtimes = backends.get("runtimes") or {}
    return ", ".join(f"{stage}: {runtime}" for stage, runtime in runtimes.items() if runtime) or "-"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--preset", default="ped2")
    parser.add_argument("--only", nargs="+", choices=list(CONFIGS), metavar="NAME", help=f"of: {'; '.join(CONFIGS)}")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each, interleaved; the table gives medians")
    parser.add_argument("--out", type=Path, help="write every run's numbers as JSON here")
    args = parser.parse_args(argv)
    names = args.only or list(CONFIGS)
    if "weight-free" not in names:
        names.insert(0, "weight-free")  # every ratio is against it, measured in the same run
    runs: dict[str, list[dict]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="vlavad-tiers-") as work:
        for attempt in range(args.repeat):
            for name in names:
                print(f"[{attempt + 1}/{args.repeat}] {name} …", file=sys.stderr, flush=True)
                runs[name].append(run(args.dataset, args.preset, *CONFIGS[name], Path(work)))

    def median(name: str, key: str) -> float:
        return statistics.median(r["timings"][key] for r in runs[name])

    base_score = median("weight-free", "score_s")
    print(f"{args.dataset.name}, preset {args.preset}, {os.cpu_count()} CPUs ({platform.machine()}), empty stage cache, median of {args.repeat}")
    print()
    print("| configuration | micro AUC | macro AUC | score frames/s | score time ÷ weight-free | fit (s) | peak RSS (MB) | backends | run-time |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for name in names:
        last = runs[name][-1]
        b = last["backends"]
        backends = f"{b['detector'].get('detector')} · {b['describer'].get('describer')} · {b['encoder'].get('encoder')}"
        print(
            f"| {name} | {last['metrics']['micro_auc']:.4f} | {last['metrics']['macro_auc']:.4f} | {median(name, 'score_fps'):.0f} "
            f"| {median(name, 'score_s') / base_score:.1f}× | {median(name, 'fit_s'):.0f} | {median(name, 'peak_rss_mb'):.0f} | {backends} | {runtime_of(b)} |"
        )
    if args.out:
        args.out.write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
