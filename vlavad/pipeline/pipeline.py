"""The VLAVAD pipeline: fit on normal videos, score a video. This module only orchestrates.

    video ─► tracks ─► answers (describer) ─► SPA static score ─┐
                          └─► embeddings ─► S3M temporal score ─┴► per-frame max ─► fuse ─► curve

Tracks and answers are cached per video (`vlavad.io.cache`); embeddings, SPA and S3M scoring are
cheap and recomputed. Progress is reported with tqdm, which the web app mirrors with
`gr.Progress(track_tqdm=True)`.
"""

from __future__ import annotations

import importlib
import itertools
import os
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from vlavad.core.errors import ModelError
from vlavad.core.limits import LIBRARY_LIMITS, VideoLimits
from vlavad.core.records import ANSWER_TABLE, TRACK_TABLE, StepTable, VideoInfo, VideoResult
from vlavad.core.timing import StageTimes
from vlavad.describe import Describer, empty_answers, track_steps
from vlavad.describe.prompts import Prompt, default_pool
from vlavad.embed import embedding_sequences, step_captions
from vlavad.io.cache import StageCache, stable_key
from vlavad.io.video import content_key, probe
from vlavad.pipeline import backends
from vlavad.pipeline.model import FittedModel
from vlavad.pipeline.settings import Settings
from vlavad.scorers.explain import causes
from vlavad.scorers.fusion import Normaliser, find_events, frame_maxima, fuse, object_scores, spread_to_frames
from vlavad.scorers.spa import object_static_scores, select_prompts
from vlavad.track.tracking import track_video


def default_cache_dir() -> Path:
    return Path(os.environ.get("VLAVAD_CACHE", Path.home() / ".cache" / "vlavad"))


def _import_in_background(module: str) -> None:
    """Starts importing `module` in a thread of its own, so that a later import of it in this
    thread waits for that one (Python's import lock) instead of starting from scratch. An error
    is left to that later import to raise, where it is needed. Not a daemon thread, unlike
    `_in_background`'s: an extension module's import cut short at exit can crash the process."""

    def run() -> None:
        try:
            importlib.import_module(module)
        except Exception:
            pass

    threading.Thread(target=run, name=f"import {module}").start()


def _in_background(function, *args, **kwargs) -> Future:
    """`function(*args, **kwargs)` in a daemon thread: unlike a thread pool's workers, which
    Python waits for at exit, it cannot hold up Ctrl-C by decoding a long video to its end."""
    future = Future()

    def run() -> None:
        try:
            future.set_result(function(*args, **kwargs))
        except BaseException as e:
            future.set_exception(e)

    threading.Thread(target=run, name=f"vlavad {function.__name__}", daemon=True).start()
    return future


@dataclass
class _VideoStages:
    info: VideoInfo
    tracks: pd.DataFrame
    answers: pd.DataFrame  # ANSWER_COLUMNS, at the track steps


class Pipeline:
    """Runs the stages with one set of backends and a shared cache. `limits` bound every video
    it reads (the library's generous ones unless given; the web app passes its own)."""

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
        self.times = StageTimes()  # seconds per stage, summed over everything this pipeline runs

    @property
    def backends(self) -> dict:
        return backends.backends_record(self.detector, self.describer, self.encoder)

    def default_pool(self) -> list[Prompt]:
        return default_pool(self.describer.name)

    def progress_bar(self, iterable=None, **kwargs):
        return tqdm(iterable, disable=not self.show_progress, dynamic_ncols=True, **kwargs)

    # --- cached per-video stages ---------------------------------------------------------------

    def probe(self, video: str | Path) -> VideoInfo:
        # Probing decodes the whole video once (exact frame count, timestamps, background frames);
        # it is remembered per file, so only the first probe of a video costs decoding time.
        with self.times("decode"):
            return probe(video, fps_hint=self.settings.default_fps, limits=self.limits)

    def probed(self, videos: Iterable[str | Path], ahead: int = 1) -> Iterator[VideoInfo]:
        """Each video's `probe`, in order, while the next `ahead` videos are probed meanwhile.

        Probing is decoding, which PyAV does without holding Python's lock: while the caller
        tracks one video, the next one decodes on the other core, and `ahead=2` decodes two
        videos at once (see the README's speed section). Only the wait for a probe counts as
        "decode" time. A video that cannot be read raises in its turn, as `probe` would.
        """
        videos, fps_hint = iter(videos), self.settings.default_fps
        pending = deque(_in_background(probe, video, fps_hint=fps_hint, limits=self.limits) for video in itertools.islice(videos, ahead))
        while pending:
            with self.times("decode"):
                info = pending.popleft().result()
            pending.extend(_in_background(probe, video, fps_hint=fps_hint, limits=self.limits) for video in itertools.islice(videos, 1))
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

    def _stages(self, video: str | Path, prompts: list[Prompt], stride: int = 1) -> _VideoStages:
        info = self.probe(video)
        tracks, key = self.tracks(info, stride)
        return _VideoStages(info, tracks, self.answers(info, tracks, key, prompts))

    # --- fit -----------------------------------------------------------------------------------

    def fit(self, videos: Iterable[str | Path], prompts: list[Prompt] | None = None) -> FittedModel:
        """Learns normality from normal videos: describer references, SPA, S3M, normalisation.
        `prompts` is the pool SPA selects from (default: the bundled pool for the describer)."""
        s = self.settings
        prompts = prompts or self.default_pool()
        videos = list(videos)
        if not videos:
            raise ModelError("No normal videos to fit on.")
        if "torch" not in sys.modules:
            # Training needs PyTorch, whose import is 2 s of one core: it runs beside the
            # tracking that comes first (Ped2's fit, 2 cores: about 1 s sooner).
            _import_in_background("vlavad.scorers.temporal.s3m")
        infos, track_tables = [], []
        for info in self.progress_bar(self.probed(videos), total=len(videos), desc="fit: tracking normal videos", unit="video"):
            infos.append(info)
            track_tables.append(self.tracks(info))
        self.describer.fit([(info, t) for info, (t, _) in zip(infos, track_tables)])

        normal = [
            _VideoStages(info, t, self.answers(info, t, key, prompts))
            for info, (t, key) in self.progress_bar(list(zip(infos, track_tables)), desc="fit: describing normal objects", unit="video")
        ]
        normal_answers = pd.concat([v.answers.assign(video=i) for i, v in enumerate(normal)], ignore_index=True)
        frequencies, selected, stats = select_prompts(
            prompts, normal_answers, self._pseudo_answers(infos, prompts), top_k=s.spa.top_k, n_select=s.spa.select
        )
        model = FittedModel(s, prompts, selected, frequencies, stats, Normaliser(0.0, 1.0, 0.0, 0.0, 1.0, 0.0), self.describer.state(), self.backends)
        with self.times("embed"):
            sequences = StepTable.concat([embedding_sequences(self.encoder, step_captions(v.answers, selected))[1] for v in normal])
        with self.times("s3m"):
            losses = self._train_temporal(model, sequences)

        per_video = [self._frame_maxima(v, model) for v in normal]
        model.normaliser = Normaliser.fit(per_video)
        fused = np.concatenate([self._curve(model, static, temporal, v.info)["fused"].to_numpy() for v, (static, temporal) in zip(normal, per_video)])
        model.threshold = float(np.quantile(fused, s.fusion.threshold_quantile)) if len(fused) else 0.0
        model.training = {
            "videos": [Path(i.path).name for i in infos],
            "frames": int(sum(i.frame_count for i in infos)),
            "tracks": int(sum(t["track_id"].nunique() for t, _ in track_tables)),
            "s3m_windows_sequences": len(sequences.lengths),
            "s3m_losses": [round(x, 6) for x in losses],
        }
        return model

    def _pseudo_answers(self, infos: list[VideoInfo], prompts: list[Prompt]) -> pd.DataFrame | None:
        """Answers on the pseudo-anomalies SPA selects with: the normal videos played faster."""
        stride = self.settings.spa.pseudo_stride
        if stride <= 1:
            return None
        pseudo = []
        for i, info in enumerate(self.progress_bar(infos, desc="fit: pseudo-anomalies (normal videos played faster)", unit="video")):
            tracks, key = self.tracks(info, stride=stride)
            pseudo.append(self.answers(info, tracks, key, prompts).assign(video=i))
        return pd.concat(pseudo, ignore_index=True)

    def _train_temporal(self, model: FittedModel, sequences: StepTable) -> list[float]:
        from vlavad.scorers.temporal.s3m import TemporalModel

        t = self.settings.temporal
        temporal = TemporalModel.create(t.predictor, self.encoder.dim, t.past, t.future, t.layers, t.d_model, seed=t.seed)
        with self.progress_bar(total=t.epochs, desc=f"fit: training the {t.predictor.upper()}", unit="epoch", leave=False) as bar:
            losses = temporal.fit(
                sequences,
                epochs=t.epochs,
                lr=t.lr,
                seed=t.seed,
                max_windows=t.max_windows,
                progress=lambda epoch, total, loss: (bar.update(1), bar.set_postfix(mse=f"{loss:.4f}")),
            )
        model.temporal = temporal.for_scoring() if losses else None
        return losses

    def prompt_statistics(self, model: FittedModel, normal_videos: Iterable[str | Path], prompts: list[Prompt]) -> list:
        """SPA's statistics and selection for `prompts` on the normal videos `model` was fitted
        on, with its describer references. Only questions not asked before are answered;
        everything else comes from the stage cache."""
        self.describer.load_state(model.describer_state)
        infos, normal = [], []
        for video in self.progress_bar(list(normal_videos), desc="asking the new questions", unit="video"):
            info = self.probe(video)
            tracks, key = self.tracks(info)
            infos.append(info)
            normal.append(self.answers(info, tracks, key, prompts).assign(video=len(normal)))
        if not normal:
            raise ModelError("No normal videos to ask the questions about.")
        spa = model.settings.spa
        _, _, stats = select_prompts(
            prompts, pd.concat(normal, ignore_index=True), self._pseudo_answers(infos, prompts), top_k=spa.top_k, n_select=spa.select
        )
        return stats

    def normal_answers(self, model: FittedModel, video: str | Path, frames: Iterable[int]) -> pd.DataFrame:
        """The answers to `model`'s selected questions about every object in `frames` of `video`
        (cached by its scoring), e.g. to add to the model as normal (`FittedModel.add_normal_answers`)."""
        self.describer.load_state(model.describer_state)
        stages = self._stages(video, model.selected_prompts)
        return stages.answers[stages.answers["frame"].isin(list(frames))]

    # --- scoring -------------------------------------------------------------------------------

    def _object_scores(self, stages: _VideoStages, model: FittedModel) -> pd.DataFrame:
        """Static and temporal score per (frame, track) over every frame of every track."""
        static = object_static_scores(model.frequencies, model.selected, stages.answers)
        captions = step_captions(stages.answers, model.selected)
        steps = captions.merge(static, on=["frame", "track_id"], how="left")
        steps["temporal_score"] = np.nan
        with self.times("embed"):
            track_ids, sequences = embedding_sequences(self.encoder, captions) if model.temporal else ([], None)
        if track_ids:
            with self.times("s3m"):
                errors = model.temporal.errors(sequences)
            lengths = sequences.lengths
            error_table = pd.DataFrame(
                {
                    "track_id": np.repeat(np.asarray(track_ids, dtype=np.int64), lengths),
                    "order": np.arange(lengths.sum()) - np.repeat(sequences.starts, lengths),  # step within its track
                    "temporal_score": np.concatenate(errors),
                }
            )
            steps = steps.sort_values(["track_id", "frame"])
            steps["order"] = steps.groupby("track_id").cumcount()
            steps = steps.drop(columns="temporal_score").merge(error_table, on=["track_id", "order"], how="left")
        # An object the describer abstained on (no static score) is not scored at all.
        steps.loc[steps["static_score"].isna(), "temporal_score"] = np.nan
        # From here on the caption is what people read: the answers with their details.
        steps = steps.drop(columns="caption").rename(columns={"shown": "caption"})
        return spread_to_frames(stages.tracks, steps, ["caption", "static_score", "temporal_score"])

    def _frame_maxima(self, stages: _VideoStages, model: FittedModel) -> tuple[np.ndarray, np.ndarray]:
        return frame_maxima(self._object_scores(stages, model), stages.info.frame_count)

    def _curve(self, model: FittedModel, static: np.ndarray, temporal: np.ndarray, info: VideoInfo) -> pd.DataFrame:
        fusion = model.settings.fusion
        with self.times("fuse"):
            return fuse(static, temporal, model.normaliser, lam=fusion.lam, sigma_frames=fusion.sigma_s * info.fps)

    def score(self, model: FittedModel, video: str | Path, name: str | None = None) -> VideoResult:
        """Scores one video with a fitted model."""
        model.check_backends(self.backends)
        self.describer.load_state(model.describer_state)
        stages = self._stages(video, model.selected_prompts)
        objects = self._object_scores(stages, model)
        frames = self._curve(model, *frame_maxima(objects, stages.info.frame_count), stages.info)
        times = stages.info.times()
        frames.insert(1, "time_s", times)

        objects = objects.merge(stages.tracks[["frame", "track_id", "x1", "y1", "x2", "y2"]], on=["frame", "track_id"])
        objects["object_score"] = object_scores(objects, model.normaliser, model.settings.fusion.lam)
        objects = objects.sort_values(["frame", "track_id"]).reset_index(drop=True)
        scored = objects.dropna(subset=["object_score"])
        top = scored.loc[scored.groupby("frame")["object_score"].idxmax()] if len(scored) else scored
        top = top[["frame", "track_id", "caption"]].rename(columns={"track_id": "top_track", "caption": "top_caption"})
        frames = frames.merge(top, on="frame", how="left")
        events = find_events(frames, model.threshold, times)
        _, temporal_z = model.normaliser.standardise(
            np.log(objects["static_score"].astype(float)), objects["temporal_score"].astype(float).to_numpy()
        )
        temporal_z = pd.Series(temporal_z, index=objects.index)
        for event in events:
            found = causes(
                objects,
                stages.answers,
                event.start_frame,
                event.end_frame,
                model.threshold,
                times,
                model.selected_prompts,
                model.frequencies,
                temporal_z,
                model.settings.fusion.lam,
            )
            event.causes = [c.to_dict() for c in found]
            event.reasons = [f"track {c.track_id}: {c.caption}" + (" (under the threshold on its own)" if c.below_threshold else "") for c in found]
        return VideoResult(
            name=name or Path(video).stem,
            info=stages.info,
            frames=frames,
            objects=objects,
            events=events,
            threshold=model.threshold,
            backends=model.backends,
            selected_questions=[p.label for p in model.selected_prompts],
        )
