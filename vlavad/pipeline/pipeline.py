"""The VLAVAD pipeline: fit on normal videos, score a video. This module only orchestrates.

    video ─► tracks ─► answers (describer) ─► SPA static score ─┐
                          └─► embeddings ─► S3M temporal score ─┴► per-frame max ─► fuse ─► curve

Tracks and answers come from the cached stages (`vlavad.pipeline.stages`); embeddings, SPA and
S3M scoring are cheap and recomputed (`vlavad.scorers`). Progress is reported with tqdm, which the
web app mirrors with `gr.Progress(track_tqdm=True)`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from vlavad.core.errors import ModelError
from vlavad.core.records import StepTable, VideoResult
from vlavad.core.threads import import_in_background
from vlavad.describe.prompts import Prompt
from vlavad.embed import embedding_sequences, step_captions
from vlavad.pipeline.model import FittedModel
from vlavad.pipeline.stages import Stages, VideoStages
from vlavad.scorers.fusion import Normaliser, explained_events, frame_maxima, fuse, object_table, scored_tables
from vlavad.scorers.spa import select_prompts


class Pipeline(VideoStages):
    """Fits a model of normality and scores videos with it, over the cached stages."""

    def fit(self, videos: Iterable[str | Path], prompts: list[Prompt] | None = None) -> FittedModel:
        """Learns normality from normal videos: describer references, SPA, S3M, normalisation.
        `prompts` is the pool SPA selects from (default: the bundled pool for the describer)."""
        s = self.settings
        prompts = prompts or self.default_pool()
        videos = list(videos)
        if not videos:
            raise ModelError("No normal videos to fit on.")
        if "torch" not in sys.modules:
            # Training needs PyTorch, whose import takes a core for seconds: it runs beside the
            # tracking that comes first.
            import_in_background("vlavad.scorers.temporal.model")
        infos, track_tables = [], []
        for info in self.progress_bar(self.probed(videos), total=len(videos), desc="fit: tracking normal videos", unit="video"):
            infos.append(info)
            track_tables.append(self.tracks(info))
        self.describer.fit([(info, t) for info, (t, _) in zip(infos, track_tables)])

        normal = [
            Stages(info, t, self.answers(info, t, key, prompts))
            for info, (t, key) in self.progress_bar(list(zip(infos, track_tables)), desc="fit: describing normal objects", unit="video")
        ]
        normal_answers = pd.concat([v.answers.assign(video=i) for i, v in enumerate(normal)], ignore_index=True)
        frequencies, selected, stats = select_prompts(
            prompts,
            normal_answers,
            self.pseudo_answers(infos, prompts),
            top_k=s.spa.top_k,
            n_select=s.spa.select,
            blind_to_speed=self.blind_to_speed(prompts),
        )
        background = self.empty_scene(infos)
        self.done_reading(infos)  # the last read of their frames: the training can have that memory
        with self.times("embed"):
            sequences = StepTable.concat([embedding_sequences(self.encoder, step_captions(v.answers, selected))[1] for v in normal])
        with self.times("s3m"):
            temporal, losses = self._train_temporal(sequences)

        per_video = [
            frame_maxima(object_table(v.tracks, v.answers, selected, frequencies, self.encoder, temporal, self.times), v.info.frame_count)
            for v in normal
        ]
        normaliser = Normaliser.fit(per_video)
        with self.times("fuse"):
            fused = [fuse(*maxima, normaliser, lam=s.fusion.lam, sigma_frames=s.fusion.sigma_s * v.info.fps) for v, maxima in zip(normal, per_video)]
        fused = np.concatenate([curve["fused"].to_numpy() for curve in fused])
        return FittedModel(
            settings=s,
            prompts=prompts,
            selected=selected,
            frequencies=frequencies,
            prompt_stats=stats,
            normaliser=normaliser,
            describer_state=self.describer.state(),
            backends=self.backends,
            temporal=temporal,
            threshold=float(np.quantile(fused, s.fusion.threshold_quantile)) if len(fused) else 0.0,
            background=background,
            training={
                "videos": [Path(i.path).name for i in infos],
                "frames": int(sum(i.frame_count for i in infos)),
                "tracks": int(sum(t["track_id"].nunique() for t, _ in track_tables)),
                "s3m_windows_sequences": len(sequences.lengths),
                "s3m_losses": [round(x, 6) for x in losses],
            },
        )

    def _train_temporal(self, sequences: StepTable):
        """The trained temporal predictor in its scoring form (None when no track was long enough
        to train on), and its training losses."""
        from vlavad.scorers.temporal.model import TemporalModel

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
        return (temporal.for_scoring() if losses else None), losses

    def score(self, model: FittedModel, video: str | Path, name: str | None = None) -> VideoResult:
        """Scores one video with a fitted model."""
        model.check_backends(self.backends)
        self.describer.load_state(model.describer_state)
        stages = self.of(video, model.selected_prompts)
        fusion = model.settings.fusion
        objects = object_table(stages.tracks, stages.answers, model.selected, model.frequencies, self.encoder, model.temporal, self.times)
        frames, objects = scored_tables(objects, stages.tracks, stages.info, model.normaliser, fusion.lam, fusion.sigma_s, self.times)
        events = explained_events(
            frames, objects, stages.answers, model.threshold, model.selected_prompts, model.frequencies, model.normaliser, fusion.lam
        )
        return VideoResult(
            name=name or Path(video).stem,
            info=stages.info,
            frames=frames,
            objects=objects,
            events=events,
            threshold=model.threshold,
            backends={**model.backends, "runtimes": self.backends["runtimes"]},  # what scored this video
            selected_questions=[p.label for p in model.selected_prompts],
            threshold_quantile=fusion.threshold_quantile,
        )
