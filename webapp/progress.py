"""What the Analyse tab says while it works: the stage that runs, in plain words, and how far the
whole run has got.

The pipeline reports through progress bars (`VideoStages.progress_bar`, tqdm in the CLI). Here
they are read as stages: `StageProgress` is handed the bars' descriptions and counts and turns
them into one line ("Learning what is normal: finding and following the objects") and a share of
the whole run that only moves forward, for `gr.Progress`.
"""

from __future__ import annotations

from collections.abc import Callable

from vlavad.pipeline.pipeline import Pipeline

# The parts of a run, each a share of the whole: (name, start, end). Fitting is skipped with a
# saved model, and the shares then start with scoring.
FITTING = (("fit", 0.0, 0.5), ("score", 0.5, 0.9), ("outputs", 0.9, 1.0))
SCORING_ONLY = (("score", 0.0, 0.85), ("outputs", 0.85, 1.0))
PHASE_WORDS = {"fit": "Learning what is normal", "score": "Analysing the video", "outputs": "Writing the results"}
# Inside fitting, the library's steps in the order they run, each a share of fitting: (a word in
# the bar's description, what it does in plain words, start, end).
FIT_STEPS = (
    ("tracking normal", "finding and following the objects", 0.0, 0.35),
    ("describing normal", "describing each object", 0.35, 0.5),
    ("pseudo-anomalies", "replaying it faster, to learn what unusual motion looks like", 0.5, 0.75),
    ("training", "learning how objects usually move", 0.75, 1.0),
)
SCORE_STEPS = (("tracking objects", "finding and following the objects", 0.0, 0.8), ("describing objects", "describing each object", 0.8, 1.0))


class StageProgress:
    """Turns progress bars into (line, share of the whole run) for `report`."""

    def __init__(self, report: Callable[[str, float | None], None], fitting: bool = True):
        self.report = report
        self.phases = {name: (start, end) for name, start, end in (FITTING if fitting else SCORING_ONLY)}
        self.phase = next(iter(self.phases))
        self.step: tuple[str, float, float] | None = None  # the running fit step: words, start, end
        self.done = 0.0  # never moves back

    def enter(self, phase: str, words: str = "") -> None:
        """A new part of the run begins (`words`: what it does, when no bar will say)."""
        self.phase, self.step = phase, None
        self.say(words, 0.0)

    def bar(self, desc: str, fraction: float) -> None:
        """A progress bar called `desc` has reached `fraction` of its total."""
        if self.phase == "fit":
            for key, words, start, end in FIT_STEPS:
                if key in desc:  # an outer bar: the step it opens; its inner bars count within it
                    self.step = (words, start, end)
            if self.step is None:
                return
            words, start, end = self.step
            if any(key in desc for key, *_ in FIT_STEPS):
                fraction = 0.0  # an outer bar counts videos: its inner bar says how far it is
            self.say(words, start + (end - start) * fraction)
        elif self.phase == "score":
            for key, words, start, end in SCORE_STEPS:
                if key in desc:
                    self.say(words, start + (end - start) * fraction)

    def say(self, words: str, fraction: float) -> None:
        start, end = self.phases[self.phase]
        self.done = max(self.done, start + (end - start) * min(max(fraction, 0.0), 1.0))
        self.report(f"{PHASE_WORDS[self.phase]}: {words}" if words else PHASE_WORDS[self.phase], self.done)


class _Bar:
    """The part of a progress bar the pipeline uses, reporting to a `StageProgress`."""

    def __init__(self, progress: StageProgress, iterable=None, total=None, desc: str = "", **_):
        self.progress, self.iterable, self.desc = progress, iterable, desc
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.n = 0
        self._tell()

    def _tell(self) -> None:
        self.progress.bar(self.desc, self.n / self.total if self.total else 0.0)

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def update(self, n: int = 1) -> None:
        self.n += n
        self._tell()

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ReportingPipeline(Pipeline):
    """A `Pipeline` whose progress bars report to `progress` instead of the terminal."""

    def __init__(self, *args, progress: StageProgress, **kwargs):
        super().__init__(*args, show_progress=False, **kwargs)
        self.progress = progress

    def progress_bar(self, iterable=None, **kwargs):
        return _Bar(self.progress, iterable, **kwargs)
