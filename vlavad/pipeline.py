"""The VLAVAD pipeline: fit on normal videos, score a video, benchmark a dataset.

    video ─► tracks ─► answers (describer) ─► SPA static score ─┐
                          └─► embeddings ─► S3M temporal score ─┴► per-frame max ─► fuse ─► curve

Tracks and answers are cached per video (`vlavad.cache`); embeddings, SPA and S3M scoring are
cheap and recomputed. Progress is reported with tqdm, which the web app mirrors with
`gr.Progress(track_tqdm=True)`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .backends import describe_backends, make_describer, make_detector, make_encoder
from .cache import StageCache, stable_key
from .config import Settings
from .describe import ANSWER_COLUMNS, Describer, track_steps
from .errors import ModelError
from .model import FittedModel
from .prompts import Prompt, default_pool
from .scoring import Normaliser, frame_maxima, fuse, spread_to_frames
from .spa import PromptStats, object_static_scores, select_prompts
from .track import track_video
from .video import VideoInfo, content_key, probe


def default_cache_dir() -> Path:
    return Path(os.environ.get("VLAVAD_CACHE", Path.home() / ".cache" / "vlavad"))


@dataclass
class Event:
    """An interval whose fused score stays above the model's threshold, with its reasons."""

    start_frame: int
    end_frame: int  # inclusive
    start_s: float
    end_s: float
    peak_frame: int
    peak_score: float
    reasons: list[str]  # "track 7: moving fast (2.0× the usual speed here)"

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass
class VideoResult:
    """Everything `score` knows about one video."""

    name: str
    info: VideoInfo
    frames: pd.DataFrame  # frame, time_s, static, temporal, fused, top_track, top_caption
    objects: pd.DataFrame  # frame, track_id, box, caption, static_score, temporal_score, object_score
    events: list[Event]
    threshold: float
    backends: dict
    selected_questions: list[str]

    def summary(self) -> dict:
        return {
            "video": self.name,
            "frames": self.info.frame_count,
            "fps": self.info.fps,
            "size": [self.info.width, self.info.height],
            "objects": int(self.objects["track_id"].nunique()) if len(self.objects) else 0,
            "threshold": round(self.threshold, 4),
            "selected_questions": self.selected_questions,
            "backends": self.backends,
            "events": [e.to_dict() for e in self.events],
        }


@dataclass
class _VideoStages:
    info: VideoInfo
    tracks: pd.DataFrame
    answers: pd.DataFrame  # ANSWER_COLUMNS, at the track steps


class Pipeline:
    """Runs the stages with one set of backends and a shared cache."""

    def __init__(
        self,
        settings: Settings,
        *,
        prompts: list[Prompt] | None = None,
        cache_dir: str | Path | None = "default",
        show_progress: bool = True,
    ):
        self.settings = settings
        self.detector = make_detector(settings)
        self.describer: Describer = make_describer(settings)
        self.encoder = make_encoder(settings)
        self.prompts = prompts or default_pool("vlm" if self.describer.is_vlm else "motion")
        self.cache = StageCache(default_cache_dir() if cache_dir == "default" else cache_dir)
        self.show_progress = show_progress

    @property
    def backends(self) -> dict:
        return describe_backends(self.detector, self.describer, self.encoder)

    # --- cached per-video stages ---------------------------------------------------------------

    def _bar(self, iterable=None, **kwargs):
        return tqdm(iterable, disable=not self.show_progress, dynamic_ncols=True, **kwargs)

    def probe(self, video: str | Path) -> VideoInfo:
        return probe(video, fps_hint=self.settings.default_fps)

    def tracks(self, info: VideoInfo, stride: int = 1) -> tuple[pd.DataFrame, str]:
        s = self.settings
        key = stable_key("tracks", content_key(info.path), info.fps, self.detector.identity(), s.track.__dict__, stride)
        table = self.cache.load("tracks", key)
        if table is None:
            with self._bar(total=(info.frame_count + stride - 1) // stride, desc=f"track {Path(info.path).name}", unit="fr", leave=False) as bar:
                table = track_video(info, self.detector, s.track, stride=stride, progress=lambda done, total: bar.update(done - bar.n))
            self.cache.save("tracks", key, table)
        return table, key

    def answers(self, info: VideoInfo, tracks: pd.DataFrame, tracks_key: str, prompts: list[Prompt]) -> pd.DataFrame:
        """Answers to `prompts` at every track step; each prompt's answers are cached on their
        own, so editing the pool only asks the new questions."""
        steps = track_steps(tracks, info.fps, self.settings.step_hz)
        base = stable_key("answers", tracks_key, self.describer.identity(), self.describer.state(), self.settings.step_hz)
        found, missing = [], []
        for prompt in prompts:
            table = self.cache.load("answers", stable_key(base, prompt.id))
            (found.append(table) if table is not None else missing.append(prompt))
        if missing and len(steps):
            with self._bar(total=len(steps), desc=f"describe {Path(info.path).name}", unit="step", leave=False) as bar:
                fresh = self.describer.answer(info, tracks, steps, missing, progress=lambda done, total: bar.update(done - bar.n))
            for prompt in missing:
                table = fresh[fresh["prompt_id"] == prompt.id].reset_index(drop=True)
                self.cache.save("answers", stable_key(base, prompt.id), table)
                found.append(table)
        if not found:
            return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("frame", "track_id") else object) for c in ANSWER_COLUMNS})
        table = pd.concat(found, ignore_index=True)
        return table.astype({"frame": "int64", "track_id": "int64", "prompt_id": str, "answer": str})

    def _stages(self, video: str | Path, prompts: list[Prompt], stride: int = 1) -> _VideoStages:
        info = self.probe(video)
        tracks, key = self.tracks(info, stride)
        return _VideoStages(info, tracks, self.answers(info, tracks, key, prompts))

    # --- fit -----------------------------------------------------------------------------------

    def fit(self, videos: Iterable[str | Path]) -> FittedModel:
        """Learns normality from normal videos: describer references, SPA, S3M, normalisation."""
        s = self.settings
        videos = list(videos)
        if not videos:
            raise ModelError("No normal videos to fit on.")
        infos, track_tables = [], []
        for video in self._bar(videos, desc="fit: track normal videos", unit="video"):
            info = self.probe(video)
            infos.append(info)
            track_tables.append(self.tracks(info))
        self.describer.fit([(info, t) for info, (t, _) in zip(infos, track_tables)])

        normal = [
            _VideoStages(info, t, self.answers(info, t, key, self.prompts))
            for info, (t, key) in self._bar(list(zip(infos, track_tables)), desc="fit: describe objects", unit="video")
        ]
        pseudo_answers = self._pseudo_answers(infos)
        normal_answers = pd.concat([v.answers for v in normal], ignore_index=True)
        frequencies, selected, stats = select_prompts(
            self.prompts, normal_answers, pseudo_answers, top_k=s.spa_top_k, n_select=s.spa_select
        )
        model = FittedModel(
            settings=s,
            prompts=self.prompts,
            selected=selected,
            frequencies=frequencies,
            prompt_stats=stats,
            normaliser=Normaliser(0.0, 1.0, 0.0, 0.0, 1.0, 0.0),
            describer_state=self.describer.state(),
            backends=self.backends,
            predictor_config=None,
        )

        sequences = [seq for v in normal for seq in self._embedding_sequences(_captions(v.answers, model)).values()]
        losses = self._train_predictor(model, sequences)

        per_video = [self._frame_maxima(v, model) for v in normal]
        model.normaliser = Normaliser.fit(per_video)
        fused = np.concatenate([self._curve(model, static, temporal, v.info)["fused"].to_numpy() for v, (static, temporal) in zip(normal, per_video)])
        model.threshold = float(np.quantile(fused, s.threshold_quantile)) if len(fused) else 0.0
        model.training = {
            "videos": [Path(i.path).name for i in infos],
            "frames": int(sum(i.frame_count for i in infos)),
            "tracks": int(sum(t["track_id"].nunique() for t, _ in track_tables)),
            "s3m_windows_sequences": len(sequences),
            "s3m_losses": [round(x, 6) for x in losses],
        }
        return model

    def _pseudo_answers(self, infos: list[VideoInfo]) -> pd.DataFrame | None:
        """Answers on the pseudo-anomalies SPA selects with: the normal videos played faster."""
        stride = self.settings.pseudo_stride
        if stride <= 1:
            return None
        pseudo = []
        for info in self._bar(infos, desc="fit: pseudo-anomalies", unit="video"):
            tracks, key = self.tracks(info, stride=stride)
            pseudo.append(self.answers(info, tracks, key, self.prompts))
        return pd.concat(pseudo, ignore_index=True)

    def prompt_statistics(self, model: FittedModel, normal_videos: Iterable[str | Path]) -> list[PromptStats]:
        """SPA's statistics and selection for this pipeline's prompt pool, on the normal videos
        `model` was fitted on and with its describer references. Only questions not asked
        before are answered; everything else comes from the stage cache."""
        self.describer.load_state(model.describer_state)
        s = model.settings
        infos, normal = [], []
        for video in self._bar(list(normal_videos), desc="answer new questions", unit="video"):
            info = self.probe(video)
            tracks, key = self.tracks(info)
            infos.append(info)
            normal.append(self.answers(info, tracks, key, self.prompts))
        if not normal:
            raise ModelError("No normal videos to ask the questions about.")
        _, _, stats = select_prompts(
            self.prompts, pd.concat(normal, ignore_index=True), self._pseudo_answers(infos), top_k=s.spa_top_k, n_select=s.spa_select
        )
        return stats

    def normal_answers(self, model: FittedModel, video: str | Path, frames: Iterable[int]) -> pd.DataFrame:
        """The answers to `model`'s selected questions about every object in `frames` of `video`
        (cached by its scoring), e.g. to add to the model as normal (`FittedModel.add_normal_answers`)."""
        self.describer.load_state(model.describer_state)
        info = self.probe(video)
        tracks, key = self.tracks(info)
        answers = self.answers(info, tracks, key, model.selected_prompts)
        return answers[answers["frame"].isin(list(frames))]

    def _train_predictor(self, model: FittedModel, sequences: list[np.ndarray]) -> list[float]:
        from .s3m import build_predictor, train_predictor

        s = self.settings
        predictor = build_predictor(s.predictor, self.encoder.dim, s.past, s.future, s.layers, s.d_model)
        with self._bar(total=s.epochs, desc=f"fit: train {s.predictor.upper()}", unit="epoch", leave=False) as bar:
            losses = train_predictor(
                predictor, sequences, past=s.past, future=s.future, epochs=s.epochs, lr=s.lr, seed=s.seed, max_windows=s.max_windows,
                progress=lambda epoch, total, loss: (bar.update(1), bar.set_postfix(mse=f"{loss:.4f}")),
            )
        if losses:
            model.predictor_config = predictor.config()
            model.predictor_state = {k: v.detach().cpu() for k, v in predictor.state_dict().items()}
        return losses

    # --- scoring -------------------------------------------------------------------------------

    def _check_compatible(self, model: FittedModel) -> None:
        """A model only makes sense with the backends it was fitted with."""
        for stage in ("detector", "describer", "encoder"):
            fitted, current = model.backends.get(stage, {}), self.backends[stage]
            if fitted != current:
                differences = ", ".join(
                    f"{key} {fitted.get(key)!r} → {current.get(key)!r}"
                    for key in sorted(set(fitted) | set(current))
                    if fitted.get(key) != current.get(key)
                )
                raise ModelError(
                    f"This model's {stage} differs from this run's ({differences}); "
                    "answers from different backends or versions cannot be compared: fit a new model."
                )

    def _embedding_sequences(self, captions: pd.DataFrame) -> dict[int, np.ndarray]:
        """Per track, the embeddings of its step captions (see `_captions`), one row per step."""
        if captions.empty:
            return {}
        vectors = self.encoder.encode(captions["caption"].tolist())
        order = captions.sort_values(["track_id", "frame"]).index
        out = {}
        for track_id, rows in captions.loc[order].groupby("track_id", sort=False).groups.items():
            out[int(track_id)] = vectors[captions.index.get_indexer(rows)]
        return out

    def _object_scores(self, stages: _VideoStages, model: FittedModel) -> pd.DataFrame:
        """Static and temporal score per (frame, track) over every frame of every track."""
        static = object_static_scores(model.frequencies, model.selected, stages.answers)
        captions = _captions(stages.answers, model)
        steps = captions.merge(static, on=["frame", "track_id"], how="left")
        steps["temporal_score"] = np.nan
        predictor = self._load_predictor(model)
        if predictor is not None:
            sequences = self._embedding_sequences(captions)
            if sequences:
                from .s3m import temporal_errors_batch

                errors = temporal_errors_batch(predictor, list(sequences.values()), model.settings.past, model.settings.future)
                error_table = pd.concat(
                    [
                        pd.DataFrame({"track_id": track_id, "order": np.arange(len(err)), "temporal_score": err})
                        for track_id, err in zip(sequences, errors)
                    ]
                )
                steps = steps.sort_values(["track_id", "frame"])
                steps["order"] = steps.groupby("track_id").cumcount()
                steps = steps.drop(columns="temporal_score").merge(error_table, on=["track_id", "order"], how="left")
        # An object the describer abstained on (no static score) is not scored at all.
        steps.loc[steps["static_score"].isna(), "temporal_score"] = np.nan
        return spread_to_frames(stages.tracks, steps, ["caption", "static_score", "temporal_score"])

    def _load_predictor(self, model: FittedModel):
        if not model.predictor_config:
            return None
        cached = getattr(model, "_predictor", None)
        if cached is None:
            from .s3m import build_predictor

            cached = build_predictor(**model.predictor_config)
            cached.load_state_dict(model.predictor_state)
            cached.eval()
            model._predictor = cached  # built once per loaded model, not once per video
        return cached

    def _frame_maxima(self, stages: _VideoStages, model: FittedModel) -> tuple[np.ndarray, np.ndarray]:
        return frame_maxima(self._object_scores(stages, model), stages.info.frame_count)

    def _curve(self, model: FittedModel, static: np.ndarray, temporal: np.ndarray, info: VideoInfo) -> pd.DataFrame:
        s = model.settings
        return fuse(static, temporal, model.normaliser, lam=s.lam, sigma_frames=s.sigma_s * info.fps)

    def score(self, model: FittedModel, video: str | Path, name: str | None = None) -> VideoResult:
        """Scores one video with a fitted model."""
        self._check_compatible(model)
        self.describer.load_state(model.describer_state)
        stages = self._stages(video, model.selected_prompts)
        objects = self._object_scores(stages, model)
        static, temporal = frame_maxima(objects, stages.info.frame_count)
        frames = self._curve(model, static, temporal, stages.info)
        frames.insert(1, "time_s", frames["frame"] / stages.info.fps)

        n, s = model.normaliser, model.settings
        objects = objects.merge(stages.tracks[["frame", "track_id", "x1", "y1", "x2", "y2"]], on=["frame", "track_id"])
        objects["object_score"] = (np.log(objects["static_score"].astype(float)) - n.static_mean) / n.static_std + s.lam * (
            objects["temporal_score"].fillna(n.temporal_fill) - n.temporal_mean
        ) / n.temporal_std
        objects = objects.sort_values(["frame", "track_id"]).reset_index(drop=True)
        scored = objects.dropna(subset=["object_score"])
        top = scored.loc[scored.groupby("frame")["object_score"].idxmax()] if len(scored) else scored
        frames = frames.merge(
            top[["frame", "track_id", "caption"]].rename(columns={"track_id": "top_track", "caption": "top_caption"}), on="frame", how="left"
        )
        return VideoResult(
            name=name or Path(video).stem,
            info=stages.info,
            frames=frames,
            objects=objects,
            events=find_events(frames, objects, model.threshold, stages.info.fps),
            threshold=model.threshold,
            backends=model.backends,
            selected_questions=[p.question for p in model.selected_prompts],
        )


def _captions(answers: pd.DataFrame, model: FittedModel) -> pd.DataFrame:
    """One caption per (frame, track) step: the selected prompts' answers joined in order."""
    chosen = answers[answers["prompt_id"].isin(model.selected)]
    if chosen.empty:
        return pd.DataFrame(columns=["frame", "track_id", "caption"])
    order = {pid: i for i, pid in enumerate(model.selected)}
    chosen = chosen.assign(order=chosen["prompt_id"].map(order)).sort_values(["track_id", "frame", "order"])
    return chosen.groupby(["frame", "track_id"], as_index=False, sort=False)["answer"].agg("; ".join).rename(columns={"answer": "caption"})


def find_events(frames: pd.DataFrame, objects: pd.DataFrame, threshold: float, fps: float) -> list[Event]:
    """Runs of frames above threshold, each with the captions of the objects that drove it."""
    above = frames["fused"].to_numpy() > threshold
    events = []
    edges = np.flatnonzero(np.diff(np.r_[0, above.astype(int), 0]))
    for start, stop in zip(edges[::2], edges[1::2]):
        span = frames.iloc[start:stop]
        peak = int(span["fused"].idxmax())
        inside = objects[(objects["frame"] >= start) & (objects["frame"] < stop)]
        reasons = []
        if len(inside):
            best = inside.sort_values("object_score", ascending=False).drop_duplicates("track_id").head(3)
            reasons = [f"track {int(r.track_id)}: {r.caption}" for r in best.itertuples()]
        events.append(
            Event(
                start_frame=int(start),
                end_frame=int(stop - 1),
                start_s=start / fps,
                end_s=(stop - 1) / fps,
                peak_frame=peak,
                peak_score=float(frames["fused"].iloc[peak]),
                reasons=reasons,
            )
        )
    return events
