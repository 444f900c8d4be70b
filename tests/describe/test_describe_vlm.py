"""The hub-tier vision-language describers (BLIP-2, any HF image-text-to-text model) on tiny
random models: answers, batching, crops, stride, identity and shared loading."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hub_models import settings, tiny_blip2

from vlavad.core.errors import ConfigError
from vlavad.describe import crops, vlm
from vlavad.describe.prompts import Prompt, bundled_pool
from vlavad.io.decoder import iter_frames
from vlavad.pipeline.backends import make

pytestmark = pytest.mark.usefixtures("offline_env")


def describer(model_dir, **changes):
    return make(settings(**{"describe.backend": "blip2", "describe.vlm.model": model_dir, **changes}), "describe")


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("A man.", "man"),
        ("  The  Man's   BIKE!! ", "man's bike"),
        ("an apple, a pear", "apple a pear"),
        ("another man", "another man"),
        ("theatre", "theatre"),
        ("riding_a-bike", "riding a bike"),
        ("...", "no answer"),
        ("", "no answer"),
    ],
)
def test_answers_are_normalised(raw, expected):
    assert vlm.normalise_answer(raw) == expected


def test_crop_windows_are_padded_enlarged_and_inside_the_frame():
    boxes = np.array([[100, 100, 140, 180], [0, 0, 4, 4], [315, 235, 320, 240]], dtype=float)
    windows = crops.crop_box(boxes, 320, 240, margin=0.15, min_side=32)
    # 40x80 box: 6 / 12 px of margin on every side
    assert windows[0].tolist() == [94, 88, 146, 192]
    # tiny boxes grow to 32 px around their centre, shifted inside the frame at the corners
    assert windows[1].tolist() == [0, 0, 32, 32]
    assert windows[2].tolist() == [288, 208, 320, 240]
    # a min side larger than the frame is clipped to the frame
    assert crops.crop_box(np.array([[10, 10, 20, 20]]), 50, 40, 0.0, 64)[0].tolist() == [0, 0, 50, 40]


def test_crops_come_from_one_streaming_pass_in_rgb(clip_video, monkeypatch):
    info, steps = clip_video
    passes = []

    def counting_iter_frames(*args, **kwargs):
        passes.append(1)
        return iter_frames(*args, **kwargs)

    monkeypatch.setattr(crops, "iter_frames", counting_iter_frames)
    cut = dict(crops.iter_crops(info, steps, margin=0.15, min_side=32))
    assert len(passes) == 1 and sorted(cut) == list(range(len(steps)))
    frames = dict(iter_frames(info.path))
    windows = crops.crop_box(steps[["x1", "y1", "x2", "y2"]].to_numpy(), info.width, info.height, 0.15, 32)
    for position in (0, len(steps) - 1):
        x1, y1, x2, y2 = windows[position]
        expected = frames[steps["frame"].iloc[position]][y1:y2, x1:x2, ::-1]
        assert cut[position].shape == (32, 32, 3)
        np.testing.assert_array_equal(cut[position], expected)


def _spy_batches(monkeypatch, describer):
    """Records (number of crops, texts) of every batch handed to the model."""
    calls = []
    real = describer._answer_crops

    def spy(model, processor, crops, texts):
        calls.append((len(crops), list(texts)))
        return real(model, processor, crops, texts)

    monkeypatch.setattr(describer, "_answer_crops", spy)
    return calls


def test_blip2_answers_every_step_and_question_in_batches(blip2_dir, clip_video, monkeypatch):
    info, steps = clip_video
    prompts = bundled_pool("vlm")
    blip2 = describer(blip2_dir, **{"describe.vlm.batch_size": 7})
    assert blip2.is_vlm and blip2.tier == "hub"
    calls = _spy_batches(monkeypatch, blip2)
    answers = blip2.answer(info, steps, steps, prompts)

    assert list(answers.columns) == ["frame", "track_id", "prompt_id", "answer", "detail"]
    assert len(answers) == len(steps) * len(prompts)
    assert set(answers["prompt_id"]) == {p.id for p in prompts}
    assert answers["answer"].map(lambda a: isinstance(a, str) and a == a.lower() and a.strip() == a and a != "").all()
    # 7 pairs hold two whole crops of three questions each
    assert len(prompts) == 3 and [n for n, _ in calls] == [2] * (len(steps) // 2) + [1] * (len(steps) % 2)
    assert all(texts == [f"Question: {p.question} Answer:" for p in prompts] for _, texts in calls)

    single = describer(blip2_dir, **{"describe.vlm.batch_size": 1})
    pd.testing.assert_frame_equal(single.answer(info, steps, steps, prompts), answers)


def _varied_blip2(language_model: str):
    """The tiny BLIP-2 with larger random weight matrices: at the configs' initialisation (the
    vision tower's is 1e-10) every crop gets the same answer, and a mix-up of crops could not show."""
    import torch

    model, processor = tiny_blip2(language_model)
    torch.manual_seed(0)
    with torch.no_grad():
        for weights in model.parameters():
            if weights.dim() >= 2:  # layer norms and biases keep their initialisation
                weights.normal_(0, 0.5)
    processor.tokenizer.padding_side = "left"
    # Token ids, not text: many random ids decode to the same replacement character.
    processor.batch_decode = lambda ids, **kwargs: [" ".join(map(str, row.tolist())) for row in ids]
    return model, processor


@pytest.mark.parametrize("language_model", ["opt", "t5"])
def test_blip2_encodes_each_crop_once_and_answers_as_generate_does(language_model):
    model, processor = _varied_blip2(language_model)
    blip2 = vlm.Blip2Describer()
    questions = ["What is it?", "Is the man riding a bike or walking?", "What is the pose of the person in the picture?"]
    texts = [blip2.prompt_text(q, processor) for q in questions]
    assert len({len(processor.tokenizer(t)["input_ids"]) for t in texts}) == 3  # left padding differs per question
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (20 + 5 * i, 30, 3), dtype=np.uint8) for i in range(5)]

    images_encoded = []
    hook = model.vision_model.register_forward_hook(lambda module, args, output: images_encoded.append(len(output.last_hidden_state)))
    try:
        answers = blip2._answer_crops(model, processor, crops, texts)
        encoded_once = list(images_encoded)
        per_pair = vlm.VLMDescriber._answer_crops(blip2, model, processor, crops, texts)  # `model.generate` on each pair
    finally:
        hook.remove()

    assert answers == per_pair
    assert encoded_once == [len(crops)] and images_encoded[1:] == [len(crops) * len(texts)]
    # Answers are crop-major and depend on both the crop and the question, so a mix-up would show.
    grid = np.array(answers, dtype=object).reshape(len(crops), len(texts))
    assert all(len(set(column)) > 1 for column in grid.T)
    assert len({tuple(column) for column in grid.T}) == len(texts)


def test_blip2_prompt_identity_and_lazy_shared_loading(blip2_dir):
    assert vlm.Blip2Describer().prompt_text("What is it?", None) == "Question: What is it? Answer:"
    assert vlm.Blip2Describer().model_id == vlm.DEFAULT_BLIP2  # construction loads nothing, so it cannot fail

    first = describer(blip2_dir, **{"describe.vlm.batch_size": 1})
    second = make(
        settings(**{"describe.backend": "blip2", "describe.vlm.model": blip2_dir, "describe.vlm.batch_size": 64, "device": "auto"}), "describe"
    )
    identity = first.identity()
    assert identity == second.identity()  # batch size and device do not change the answers
    assert identity["model"] == blip2_dir and identity["revision"] == "local" and identity["dtype"] == "float32"
    assert identity["prompt_template"] == "Question: {q} Answer:" and identity["max_new_tokens"] == 10
    assert "batch_size" not in json.dumps(identity) and "device" not in identity
    assert first._model()[0] is second._model()[0]  # loaded once per process


def test_vlm_stride_asks_every_nth_step_and_carries_answers(blip2_dir, clip_video, monkeypatch):
    info, steps = clip_video
    prompts = [Prompt("What is the person doing?")]
    strided = describer(blip2_dir, **{"describe.vlm.stride": 3, "describe.vlm.batch_size": 64})
    calls = _spy_batches(monkeypatch, strided)
    answers = strided.answer(info, steps, steps, prompts)

    per_track = steps.groupby("track_id").size()
    assert sum(n for n, _ in calls) == sum((n + 2) // 3 for n in per_track)
    assert len(answers) == len(steps)
    every = describer(blip2_dir).answer(info, steps, steps, prompts)
    for _, track in answers.groupby("track_id"):
        track = track.sort_values("frame")
        expected = every.set_index(["frame", "track_id"]).loc[list(zip(track["frame"], track["track_id"])), "answer"].to_numpy()
        # asked steps agree with a stride-1 run; skipped steps repeat the last asked answer
        np.testing.assert_array_equal(track["answer"].to_numpy(), np.repeat(expected[::3], 3)[: len(track)])


def test_hf_describer_uses_the_chat_template(blip2_dir, clip_video, monkeypatch):
    info, steps = clip_video
    prompts = [Prompt("Is it a bike?")]
    hf = make(settings(**{"describe.backend": "hf", "describe.vlm.model": blip2_dir, "describe.vlm.batch_size": 8}), "describe")
    calls = _spy_batches(monkeypatch, hf)
    answers = hf.answer(info, steps, steps.iloc[:5], prompts)
    assert len(answers) == 5 and calls[0] == (5, ["User: Is it a bike? Assistant:"])
    assert hf.identity()["describer"] == "hf"
    with pytest.raises(ConfigError, match="describe.vlm.model"):
        make(settings(**{"describe.backend": "hf"}), "describe")


def test_model_setting_refuses_paths_that_are_not_models():
    with pytest.raises(ConfigError, match=r"describe\.vlm\.model: '\.\./\.\./etc' is neither"):
        settings(**{"describe.vlm.model": "../../etc"})
    assert settings(**{"describe.vlm.model": "Salesforce/blip2-opt-2.7b"}).describe.vlm.model == "Salesforce/blip2-opt-2.7b"


class _Payload:
    """Unpickled, it opens (so creates) `marker` for writing: code run from data."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_model_folder_holding_only_pickled_weights_is_refused_in_one_line(blip2_dir, clip_video, tmp_path):
    import pickle
    import shutil

    info, steps = clip_video
    marker = tmp_path / "payload-ran"
    folder = shutil.copytree(blip2_dir, tmp_path / "pickled")
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(
        ConfigError, match=r"describe\.vlm\.model: '.*pickled' holds only pickled weights \(pytorch_model\.bin\), which vlavad never loads"
    ):
        describer(str(folder))
    # A folder that was a safetensors model when the settings were read, and is one no longer.
    later = shutil.copytree(blip2_dir, tmp_path / "swapped")
    blip2 = describer(str(later), **{"describe.vlm.batch_size": 4})
    (later / "model.safetensors").rename(later / "kept.safetensors")
    (later / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ConfigError, match=r"Cannot load '.*swapped'") as error:
        blip2.answer(info, steps, steps.iloc[:2], [Prompt("What is it?")])
    assert "\n" not in str(error.value) and not marker.exists()


def test_a_model_folder_that_asks_to_run_its_own_code_is_refused_in_one_line(blip2_dir, clip_video, tmp_path):
    import shutil

    info, steps = clip_video
    marker = tmp_path / "code-ran"
    folder = shutil.copytree(blip2_dir, tmp_path / "remote-code")
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w')\n")
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "evil-vlm"  # no class of transformers' own: only the folder's code could load it
    config["auto_map"] = {"AutoConfig": "evil.Config", "AutoModelForImageTextToText": "evil.Model", "AutoProcessor": "evil.Processor"}
    (folder / "config.json").write_text(json.dumps(config))
    hf = make(settings(**{"describe.backend": "hf", "describe.vlm.model": str(folder)}), "describe")
    with pytest.raises(ConfigError, match=r"Cannot load '.*remote-code'") as error:
        hf.answer(info, steps, steps.iloc[:2], [Prompt("What is it?")])
    assert "\n" not in str(error.value) and not marker.exists()
