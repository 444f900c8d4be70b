"""Sharded extraction: the per-video stages (tracks, then answers) of a whole dataset, spread
over Ray workers, stored in the content-keyed stage cache that `fit`, `score` and `bench` read.

    vlavad extract ROOT --preset ped2 --ray            # a local Ray instance, one worker per core
    vlavad bench ROOT --preset ped2 --ray ADDRESS      # a running cluster: `ray start --head` …

Three phases, each over every video that is not cached yet:

1. tracks of every training and test video (and of the training videos played faster, the
   pseudo-anomalies SPA selects with);
2. the describer's normal references, fitted here from the training tracks exactly as `fit`
   does (it takes a second);
3. every question's answers about every tracked object, against those references.

Workers hand their tables back and this process stores them, so workers need no shared disk,
a video is stored as soon as its worker finishes (an interrupted run keeps what was finished and
a rerun skips it), and a worker that dies has its video redone by Ray. Fit and score then run
from the cache and give exactly the results of a single process.

Ray is an optional extra (`pip install 'vlavad[ray]'`). Tables travel between the workers and
this process with Ray's own serialisation: run it on machines you trust, as Ray itself requires.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from vlavad.core.errors import ConfigError
from vlavad.core.records import TRACK_TABLE, VideoInfo
from vlavad.describe.prompts import Prompt
from vlavad.io.cache import StageCache
from vlavad.io.datasets import Dataset
from vlavad.pipeline.pipeline import Pipeline

Report = Callable[[str], None]


@dataclass
class ExtractSummary:
    workers: int
    computed: dict[str, int] = field(default_factory=dict)  # stage -> videos computed
    cached: dict[str, int] = field(default_factory=dict)  # stage -> videos already cached
    seconds: float = 0.0

    def line(self) -> str:
        stages = sorted(set(self.computed) | set(self.cached))
        done = ", ".join(f"{s}: {self.cached.get(s, 0)} cached / {self.computed.get(s, 0)} computed" for s in stages)
        return f"extracted on {self.workers} Ray worker(s) in {self.seconds:.1f} s ({done})"


class _Worker:
    """One Ray actor: a pipeline whose models load once and serve many videos."""

    def __init__(self, settings):
        self.pipeline = Pipeline(settings, cache_dir=None, show_progress=False)

    def tracks(self, path: str, stride: int) -> list:
        self.pipeline.cache.written = []
        self.pipeline.tracks(self.pipeline.probe(path), stride)
        return self.pipeline.cache.written

    def answers(self, info: VideoInfo, tracks: pd.DataFrame, tracks_key: str, prompts: list[Prompt], describer_state: dict) -> list:
        self.pipeline.cache.written = []
        self.pipeline.describer.load_state(describer_state)
        self.pipeline.answers(info, tracks, tracks_key, prompts)
        return self.pipeline.cache.written


def extract(
    dataset: Dataset,
    pipeline: Pipeline,
    prompts: list[Prompt] | None = None,
    *,
    address: str | None = None,
    workers: int | None = None,
    report: Report = print,
) -> ExtractSummary:
    """Fills `pipeline`'s cache with every per-video stage of `dataset` on Ray workers.

    `address`: a running Ray cluster ("auto", "ray://head:10001"); None starts a local instance
    with `workers` CPU slots (default: every core). One worker per GPU when the cluster has GPUs,
    else one per CPU slot, unless `workers` says otherwise.
    """
    ray = _import_ray()
    if pipeline.cache.root is None:
        raise ConfigError("Sharded extraction stores its work in the stage cache: drop --no-cache (use --cache DIR for a fresh one).")
    prompts = prompts or pipeline.default_pool()
    started = time.perf_counter()
    if not ray.is_initialized():
        local = address is None
        ray.init(
            address=address,
            num_cpus=(workers or os.cpu_count()) if local else None,
            include_dashboard=False,
            logging_level="ERROR",
            log_to_driver=False,
            object_store_memory=256 * 2**20 if local else None,
        )
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    count = workers or gpus or max(1, int(resources.get("CPU", 1)))
    actor = ray.remote(num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1, max_restarts=2, max_task_retries=2)(_Worker)
    pool = ray.util.ActorPool([actor.remote(pipeline.settings) for _ in range(count)])
    summary = ExtractSummary(workers=count)

    cache = StageCache(pipeline.cache.root)  # its own counts: the run that follows reports only its reads
    infos = {ref.path: pipeline.probe(ref.path) for ref in [*dataset.train, *dataset.test]}
    stride = pipeline.settings.spa.pseudo_stride
    jobs = [(ref.path, 1) for ref in [*dataset.train, *dataset.test]]
    jobs += [(ref.path, stride) for ref in dataset.train] if stride > 1 else []

    track_keys = {job: pipeline.tracks_key(infos[job[0]], job[1]) for job in jobs}
    todo = [job for job in jobs if not cache.contains("tracks", track_keys[job])]
    summary.cached["tracks"] = len(jobs) - len(todo)
    report(f"phase 1 of 3: tracking objects in {len(todo)} video(s) on {count} worker(s) ({summary.cached['tracks']} already cached)")
    _run(pool, lambda w, job: w.tracks.remote(str(job[0]), job[1]), todo, cache, "tracks", summary, report)

    tracks = {job: cache.load("tracks", key, TRACK_TABLE) for job, key in track_keys.items()}
    report("phase 2 of 3: fitting the describer's normal references on the training tracks")
    pipeline.describer.fit([(infos[ref.path], tracks[(ref.path, 1)]) for ref in dataset.train])
    state = pipeline.describer.state()

    todo = [job for job in jobs if any(not cache.contains("answers", pipeline.answers_key(track_keys[job], p)) for p in prompts)]
    summary.cached["answers"] = len(jobs) - len(todo)
    report(
        f"phase 3 of 3: answering {len(prompts)} question(s) about the objects of {len(todo)} video(s) ({summary.cached['answers']} already cached)"
    )
    _run(pool, lambda w, job: w.answers.remote(infos[job[0]], tracks[job], track_keys[job], prompts, state), todo, cache, "answers", summary, report)
    summary.seconds = time.perf_counter() - started
    return summary


def _run(pool, submit, jobs: list, cache: StageCache, stage: str, summary: ExtractSummary, report: Report) -> None:
    """Runs `jobs` on the actor pool, storing each video's tables as soon as it arrives."""
    for done, written in enumerate(pool.map_unordered(submit, jobs), 1):
        for kind, key, table in written:
            cache.save(kind, key, table)
        if done % max(1, len(jobs) // 10) == 0 or done == len(jobs):
            report(f"  {stage}: {done}/{len(jobs)} video(s) done")
    summary.computed[stage] = len(jobs)


def _import_ray():
    try:
        import ray
        import ray.util
    except ImportError:
        raise ConfigError("Ray is not installed: pip install 'vlavad[ray]' (or pip install ray), then retry.") from None
    return ray


def shutdown() -> None:
    """Stops the local Ray instance this process started (a cluster keeps running)."""
    import sys

    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        sys.modules["ray"].shutdown()
