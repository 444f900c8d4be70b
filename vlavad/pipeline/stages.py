"""The per-video stages of one set of backends, each cached: probe, tracks, answers.

A stage's cache key holds the content of the video, the backend's identity and the settings of
this stage and those before it (`vlavad.io.cache`), so changing a later stage (the prompt pool, λ,
σ) never recomputes an earlier one. `VideoStages` is what `Pipeline` fits and scores with, and
what sharded extraction (`vlavad.pipeline.extract`) runs on each worker.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from vlavad.core.limits import LIBRARY_LIMITS, VideoLimits
from vlavad.core.memory import return_freed_memory
from vlavad.core.records import ANSWER_TABLE, TRACK_TABLE, VideoInfo
from vlavad.core.threads import in_background
from vlavad.core.timing import StageTimes
from vlavad.describe import Describer, empty_answers, track_steps
from vlavad.describe.base import default_pool
from vlavad.describe.prompts import Prompt
from vlavad.io.cache import StageCache, stable_key
from vlavad.io.content_key import content_key
from vlavad.io.probe import probe
from vlavad.io.working_frames import WorkingFrames, forget_frames
from vlavad.pipeline import backends
from vlavad.pipeline.settings import Settings
from vlavad.track.tracking import track_video


def default_cache_dir() -> Path:
    return Path(os.environ.get("VLAVAD_CACHE", Path.home() / ".cache" / "vlavad"))


@dataclass
class Stages:
    """One video's stage outputs."""

    info: VideoInfo
    tracks: pd.DataFrame
    answers: pd.DataFrame  # ANSWER_COLUMNS, at the track steps


class VideoStages:
    """The cached per-video stages with one set of backends and a shared cache. `limits` bound
    every video it reads (the library's generous ones unless given; the web app passes its own)."""

    def __init__(
        self,
        settings: Settings,
        *,
        cache_dir: str | Path | None = "default",
        show_progress: bool = True,
        limits: VideoLimits = LIBRARY_LIMITS,
    ):
        self.settings = settings
        self.limits = limits
        self.detector = backends.make(settings, "detect")
        self.describer: Describer = backends.make(settings, "describe")
        self.encoder = backends.make(settings, "embed")
        self.cache = StageCache(default_cache_dir() if cache_dir == "default" else cache_dir)
        self.show_progress = show_progress
        self.times = StageTimes()  # seconds per stage, summed over everything this runs

    @property
    def backends(self) -> dict:
        return backends.backends_record(self.detector, self.describer, self.encoder)

    def default_pool(self) -> list[Prompt]:
        return default_pool(self.describer.name)

    def progress_bar(self, iterable=None, **kwargs):
        return tqdm(iterable, disable=not self.show_progress, dynamic_ncols=True, **kwargs)

    def probe(self, video: str | Path) -> VideoInfo:
        # Probing decodes the whole video once (exact frame count, timestamps, background frames);
        # it is remembered per file, so only the first probe of a video costs decoding time.
        with self.times("decode"):
            return probe(video, fps_hint=self.settings.default_fps, limits=self.limits)

    def probed(self, videos: Iterable[str | Path], ahead: int = 1) -> Iterator[VideoInfo]:
        """Each video's `probe`, in order, while the next `ahead` videos are probed meanwhile.

        Probing is decoding, which PyAV does without holding Python's lock: while the caller
        tracks one video, the next one decodes on the other core, and `ahead=2` decodes two
        videos at once (see docs/performance.md). Only the wait for a probe counts as
        "decode" time. A video that cannot be read raises in its turn, as `probe` would.
        """
        videos, fps_hint = iter(videos), self.settings.default_fps
        pending = deque(in_background(probe, video, fps_hint=fps_hint, limits=self.limits) for video in itertools.islice(videos, ahead))
        while pending:
            with self.times("decode"):
                info = pending.popleft().result()
            pending.extend(in_background(probe, video, fps_hint=fps_hint, limits=self.limits) for video in itertools.islice(videos, 1))
            yield info

    def tracks_key(self, info: VideoInfo, stride: int = 1) -> str:
        return stable_key("tracks", content_key(info.path), info.fps, self.detector.identity(), self.settings.track.model_dump(), stride)

    def answers_key(self, tracks_key: str, prompt: Prompt) -> str:
        """The cache key of one prompt's answers: the describer part that answers it, with its
        fitted state (answers phrased against other normal objects change with it)."""
        part = self.describer.part_for(prompt)
        return stable_key(stable_key("answers", tracks_key, part.identity(), part.state(), self.settings.describe.step_hz), prompt.id)

    def tracks(self, info: VideoInfo, stride: int = 1) -> tuple[pd.DataFrame, str]:
        key = self.tracks_key(info, stride)
        with self.times("io"):
            table = self.cache.load("tracks", key, TRACK_TABLE)
        if table is None:
            name = Path(info.path).name
            with self.progress_bar(
                total=(info.frame_count + stride - 1) // stride, desc=f"tracking objects in {name}", unit="frame", leave=False
            ) as bar:
                table = track_video(
                    info, self.detector, self.settings.track, stride=stride, progress=lambda done, total: bar.update(done - bar.n), times=self.times
                )
            with self.times("io"):
                self.cache.save("tracks", key, table)
        return table, key

    def answers(self, info: VideoInfo, tracks: pd.DataFrame, tracks_key: str, prompts: list[Prompt]) -> pd.DataFrame:
        """Answers to `prompts` at every track step; each prompt's answers are cached on their
        own, keyed by the describer that answers it, so editing the pool (or one describer of a
        composed pair) only asks the questions whose answers may change."""
        step_hz = self.settings.describe.step_hz
        steps = track_steps(tracks, info.fps, step_hz)
        found, missing = [], {}
        for prompt in prompts:
            part = self.describer.part_for(prompt)
            key = self.answers_key(tracks_key, prompt)
            with self.times("io"):
                table = self.cache.load("answers", key, ANSWER_TABLE)
            (found.append(table) if table is not None else missing.setdefault(id(part), (part, {}))[1].update({prompt.id: (prompt, key)}))
        for part, asked in missing.values():
            if not len(steps):
                break
            name = Path(info.path).name
            with (
                self.progress_bar(total=len(steps), desc=f"describing objects in {name} ({part.name})", unit="step", leave=False) as bar,
                self.times("describe"),
            ):
                fresh = part.answer(info, tracks, steps, [p for p, _ in asked.values()], progress=lambda done, total: bar.update(done - bar.n))
            for prompt, key in asked.values():
                table = fresh[fresh["prompt_id"] == prompt.id].reset_index(drop=True)
                with self.times("io"):
                    self.cache.save("answers", key, table)
                found.append(table)
        if not found:
            return empty_answers()
        table = pd.concat(found, ignore_index=True)
        return table.astype({"frame": "int64", "track_id": "int64", "prompt_id": str, "answer": str, "detail": str})

    def of(self, video: str | Path, prompts: list[Prompt], stride: int = 1) -> Stages:
        """Every stage of one video, from the cache where it can."""
        info = self.probe(video)
        tracks, key = self.tracks(info, stride)
        return Stages(info, tracks, self.answers(info, tracks, key, prompts))

    def empty_scene(self, infos: list[VideoInfo]) -> np.ndarray | None:
        """The normal videos' empty scene, grey at the working size: the median of the frames each
        one's background is modelled from, then of those medians. None unless the videos all have
        one size (then they may be one camera's view; a live stream checks that it is its own)."""
        if len({(info.width, info.height) for info in infos}) != 1:
            return None
        height = self.settings.track.working_height
        with self.times("decode"):
            medians = [np.median(np.stack(list(WorkingFrames.at_height(info, height, colour=False).background())), axis=0) for info in infos]
        return np.median(np.stack(medians), axis=0).round().astype(np.uint8)

    def done_reading(self, infos: list[VideoInfo]) -> None:
        """Lets go of the frames the probes of these videos kept: nothing will read them again."""
        for info in infos:
            forget_frames(info)
        return_freed_memory()

    def pseudo_answers(self, infos: list[VideoInfo], prompts: list[Prompt]) -> pd.DataFrame | None:
        """Answers on the pseudo-anomalies SPA selects with: the normal videos played faster. Only
        the questions a faster clip could change are asked (not those in `blind_to_speed`); None
        when there are no pseudo-anomalies or no such question."""
        stride = self.settings.spa.pseudo_stride
        blind = self.blind_to_speed(prompts)
        asked = [prompt for prompt in prompts if prompt.id not in blind]
        if stride <= 1 or not asked:
            return None
        pseudo = []
        for i, info in enumerate(self.progress_bar(infos, desc="fit: pseudo-anomalies (normal videos played faster)", unit="video")):
            tracks, key = self.tracks(info, stride=stride)
            pseudo.append(self.answers(info, tracks, key, asked).assign(video=i))
        return pd.concat(pseudo, ignore_index=True)

    def blind_to_speed(self, prompts: list[Prompt]) -> set[str]:
        """Ids of the prompts whose describer answers from each step's crop alone
        (`Describer.reads_motion`): a clip played faster gets the same answers by construction."""
        return {prompt.id for prompt in prompts if not self.describer.part_for(prompt).reads_motion}
