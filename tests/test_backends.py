"""Model-backed backends (BLIP-2 / HF VLM describers, CLIP text, YOLO) and the backend resolver.

Everything runs offline on CPU with tiny randomly initialised models built from configs in code
and saved to temporary folders, so the real loading path (`from_pretrained` of a folder) is
exercised without a download.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import supervision as sv

from vlavad.backends import make_describer, make_detector, make_encoder, resolve_backend
from vlavad.config import Settings
from vlavad.errors import ConfigError, ModelError
from vlavad.prompts import Prompt, default_pool
from vlavad.synthetic import render_scene
from vlavad.video import probe

REPO = Path(__file__).resolve().parent.parent
QUERY_TOKENS = 4
IMAGE_TOKEN_ID = 3


@pytest.fixture(scope="module", autouse=True)
def offline_env(tmp_path_factory):
    """No hub, no ultralytics downloads, ultralytics settings in a temp folder; one torch thread,
    because the tiny models' ops are so small that thread hand-offs dominate (10x slower on a
    busy 2-core machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("YOLO_OFFLINE", "1")
        mp.setenv("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("yolo-config")))
        yield
    torch.set_num_threads(threads)


# --- tiny models --------------------------------------------------------------------------------


def _tiny_bpe_tokenizer():
    """A byte-level BPE trained on a few sentences, with OPT's special tokens and BLIP-2's <image>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "</s>", "<unk>", "<image>"],  # ids 0..3: IMAGE_TOKEN_ID is 3
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(
        ["Question: what is the pose of the person in the picture? Answer: walking", "a man riding a bike, the woman is standing"],
        trainer,
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", bos_token="</s>", unk_token="<unk>")


@pytest.fixture(scope="module")
def blip2_dir(tmp_path_factory) -> str:
    """A ~30k-parameter BLIP-2 (ViT + Q-Former + OPT) and its processor, saved to a folder."""
    import torch
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor

    tokenizer = _tiny_bpe_tokenizer()
    small = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    config = Blip2Config(
        vision_config=dict(small, image_size=32, patch_size=16),
        qformer_config=dict(small, encoder_hidden_size=16, vocab_size=len(tokenizer)),
        text_config=dict(
            model_type="opt", hidden_size=16, ffn_dim=32, num_hidden_layers=1, num_attention_heads=2,
            word_embed_proj_dim=16, vocab_size=len(tokenizer), max_position_embeddings=128,
            pad_token_id=0, bos_token_id=1, eos_token_id=1,
        ),
        num_query_tokens=QUERY_TOKENS,
        image_token_index=IMAGE_TOKEN_ID,
    )
    torch.manual_seed(0)
    model = Blip2ForConditionalGeneration(config)
    processor = Blip2Processor(BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer, num_query_tokens=QUERY_TOKENS)
    # A minimal chat template, so the same folder also serves the generic "hf" describer.
    processor.chat_template = (
        "{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'text' %}User: {{ c['text'] }}"
        "{% endif %}{% endfor %}{% endfor %}{% if add_generation_prompt %} Assistant:{% endif %}"
    )
    folder = tmp_path_factory.mktemp("tiny-blip2")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> str:
    """A tiny CLIP text model (8-d projection) with a CLIP BPE tokenizer over a handful of merges."""
    import torch
    from tokenizers import pre_tokenizers
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    merges = [("w", "a"), ("wa", "l"), ("k", "i"), ("n", "g</w>"), ("wal", "k"), ("ki", "ng</w>")]
    vocab = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars] + [a + b for a, b in merges]
    tokenizer = CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=merges)
    config = CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=77, projection_dim=8, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-clip")
    CLIPTextModelWithProjection(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def yolo_weights(tmp_path_factory) -> str:
    """yolo11n's architecture with random weights, saved as a .pt file."""
    from ultralytics import YOLO

    path = tmp_path_factory.mktemp("yolo") / "random-yolo11n.pt"
    YOLO("yolo11n.yaml").save(path)
    return str(path)


@pytest.fixture(scope="module")
def clip_video(tmp_path_factory):
    """A 30-frame 160x120 synthetic scene and some hand-made track steps on it."""
    path = tmp_path_factory.mktemp("video") / "scene.mp4"
    render_scene(path, frames=30, width=160, height=120, walkers=2, seed=3)
    info = probe(path)
    rows = []
    for track_id, (x, y) in enumerate([(10, 40), (100, 60), (150, 110)], start=1):  # the last one is at the edge
        for frame in range(0, 30, 3):
            rows.append({"frame": frame, "track_id": track_id, "x1": x, "y1": y, "x2": x + 8, "y2": y + 9})
    steps = pd.DataFrame(rows)
    return info, steps


def _settings(**changes) -> Settings:
    return Settings(device="cpu").updated(**changes)


# --- answers and crops --------------------------------------------------------------------------


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
    from vlavad.vlm import normalise_answer

    assert normalise_answer(raw) == expected


def test_crop_windows_are_padded_enlarged_and_inside_the_frame():
    from vlavad.vlm import crop_box

    boxes = np.array([[100, 100, 140, 180], [0, 0, 4, 4], [315, 235, 320, 240]], dtype=float)
    windows = crop_box(boxes, 320, 240, margin=0.15, min_side=32)
    # 40x80 box: 6 / 12 px of margin on every side
    assert windows[0].tolist() == [94, 88, 146, 192]
    # tiny boxes grow to 32 px around their centre, shifted inside the frame at the corners
    assert windows[1].tolist() == [0, 0, 32, 32]
    assert windows[2].tolist() == [288, 208, 320, 240]
    # a min side larger than the frame is clipped to the frame
    assert crop_box(np.array([[10, 10, 20, 20]]), 50, 40, 0.0, 64)[0].tolist() == [0, 0, 50, 40]


def test_crops_come_from_one_streaming_pass_in_rgb(clip_video, monkeypatch):
    from vlavad import vlm
    from vlavad.video import iter_frames

    info, steps = clip_video
    passes = []

    def counting_iter_frames(*args, **kwargs):
        passes.append(1)
        return iter_frames(*args, **kwargs)

    monkeypatch.setattr(vlm, "iter_frames", counting_iter_frames)
    crops = dict(vlm.iter_crops(info, steps, margin=0.15, min_side=32))
    assert len(passes) == 1 and sorted(crops) == list(range(len(steps)))
    frames = dict(iter_frames(info.path))
    windows = vlm.crop_box(steps[["x1", "y1", "x2", "y2"]].to_numpy(), info.width, info.height, 0.15, 32)
    for position in (0, len(steps) - 1):
        x1, y1, x2, y2 = windows[position]
        expected = frames[steps["frame"].iloc[position]][y1:y2, x1:x2, ::-1]
        assert crops[position].shape == (32, 32, 3)
        np.testing.assert_array_equal(crops[position], expected)


# --- BLIP-2 and HF describers -------------------------------------------------------------------


def _spy_generate(monkeypatch, describer):
    """Records the texts of every batch handed to the model."""
    calls = []
    real = describer._generate

    def spy(model, processor, crops, texts):
        calls.append(list(texts))
        return real(model, processor, crops, texts)

    monkeypatch.setattr(describer, "_generate", spy)
    return calls


def test_blip2_answers_every_step_and_question_in_batches(blip2_dir, clip_video, monkeypatch):
    info, steps = clip_video
    prompts = default_pool("vlm")
    describer = make_describer(_settings(describer="blip2", vlm_model=blip2_dir, vlm_batch_size=7))
    assert describer.is_vlm
    calls = _spy_generate(monkeypatch, describer)
    answers = describer.answer(info, steps, steps, prompts)

    assert list(answers.columns) == ["frame", "track_id", "prompt_id", "answer"]
    assert len(answers) == len(steps) * len(prompts)
    assert set(answers["prompt_id"]) == {p.id for p in prompts}
    assert answers["answer"].map(lambda a: isinstance(a, str) and a == a.lower() and a.strip() == a and a != "").all()
    pairs = len(steps) * len(prompts)
    assert [len(c) for c in calls] == [7] * (pairs // 7) + ([pairs % 7] if pairs % 7 else [])
    assert {t for c in calls for t in c} == {f"Question: {p.question} Answer:" for p in prompts}

    single = make_describer(_settings(describer="blip2", vlm_model=blip2_dir, vlm_batch_size=1))
    pd.testing.assert_frame_equal(single.answer(info, steps, steps, prompts), answers)


def test_blip2_prompt_identity_and_lazy_shared_loading(blip2_dir):
    from vlavad import vlm

    assert vlm.Blip2Describer("x").prompt_text("What is it?", None) == "Question: What is it? Answer:"
    vlm.Blip2Describer("/no/such/model")  # construction loads nothing, so it cannot fail

    first = make_describer(_settings(describer="blip2", vlm_model=blip2_dir, vlm_batch_size=1))
    second = make_describer(_settings(describer="blip2", vlm_model=blip2_dir, vlm_batch_size=64, device="auto"))
    identity = first.identity()
    assert identity == second.identity()  # batch size and device do not change the answers
    assert identity["model"] == blip2_dir and identity["revision"] == "local" and identity["dtype"] == "float32"
    assert identity["prompt_template"] == "Question: {q} Answer:" and identity["max_new_tokens"] == 10
    assert "batch_size" not in json.dumps(identity) and "device" not in identity
    assert first._model()[0] is second._model()[0]  # loaded once per process


def test_vlm_stride_asks_every_nth_step_and_carries_answers(blip2_dir, clip_video, monkeypatch):
    info, steps = clip_video
    prompts = [Prompt("What is the person doing?")]
    describer = make_describer(_settings(describer="blip2", vlm_model=blip2_dir, vlm_stride=3, vlm_batch_size=64))
    calls = _spy_generate(monkeypatch, describer)
    answers = describer.answer(info, steps, steps, prompts)

    per_track = steps.groupby("track_id").size()
    assert sum(len(c) for c in calls) == sum((n + 2) // 3 for n in per_track)
    assert len(answers) == len(steps)
    every = make_describer(_settings(describer="blip2", vlm_model=blip2_dir)).answer(info, steps, steps, prompts)
    for _, track in answers.groupby("track_id"):
        track = track.sort_values("frame")
        expected = every.set_index(["frame", "track_id"]).loc[list(zip(track["frame"], track["track_id"])), "answer"].to_numpy()
        # asked steps agree with a stride-1 run; skipped steps repeat the last asked answer
        np.testing.assert_array_equal(track["answer"].to_numpy(), np.repeat(expected[::3], 3)[: len(track)])


def test_hf_describer_uses_the_chat_template(blip2_dir, clip_video, monkeypatch):
    info, steps = clip_video
    prompts = [Prompt("Is it a bike?")]
    describer = make_describer(_settings(describer="hf", vlm_model=blip2_dir, vlm_batch_size=8))
    calls = _spy_generate(monkeypatch, describer)
    answers = describer.answer(info, steps, steps.iloc[:5], prompts)
    assert len(answers) == 5 and calls[0][0] == "User: Is it a bike? Assistant:"
    assert describer.identity()["describer"] == "hf"
    with pytest.raises(ConfigError, match="vlm_model"):
        make_describer(_settings(describer="hf"))


# --- CLIP text ----------------------------------------------------------------------------------


def test_clip_embeddings_are_normalised_batched_and_unique(clip_dir, monkeypatch):
    encoder = make_encoder(_settings(encoder="clip", clip_model=clip_dir))
    assert encoder.dim == 8 and encoder.identity()["model"] == clip_dir
    model = encoder._model()[0]
    embedded_rows = []
    real_forward = model.forward

    def counting_forward(input_ids=None, **kwargs):
        embedded_rows.append(len(input_ids))
        return real_forward(input_ids=input_ids, **kwargs)

    monkeypatch.setattr(model, "forward", counting_forward)
    texts = ["walking", "standing still", "walking", "a bike " * 100, "standing still", "walking"]
    vectors = encoder.encode(texts)
    assert vectors.shape == (6, 8) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert sum(embedded_rows) == 3  # three distinct texts, the 100-word one truncated at 77 tokens
    np.testing.assert_array_equal(vectors[0], vectors[2])

    encoder.batch_size = 1
    one_by_one = encoder.encode(texts)
    np.testing.assert_allclose(one_by_one, vectors, atol=1e-5)


# --- YOLO ---------------------------------------------------------------------------------------


def test_yolo_detects_on_working_frames(yolo_weights):
    import torch

    detector = make_detector(_settings(detector="yolo", yolo_weights=yolo_weights, yolo_classes="0,2"))
    frame = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count())  # ultralytics would set cores - 1 on the CPU
    try:
        detections = detector.detect(frame, frame[..., 0])
        assert torch.get_num_threads() == os.cpu_count()  # its setting does not leak out
    finally:
        torch.set_num_threads(threads)
    assert isinstance(detections, sv.Detections)  # random weights may well find nothing
    assert np.isin(detections.class_id, [0, 2]).all()
    identity = detector.identity()
    assert identity["weights"] == "random-yolo11n.pt" and len(identity["weights_sha256"]) == 16


def test_yolo_keeps_configured_classes_and_large_enough_boxes(yolo_weights, monkeypatch):
    import torch
    from ultralytics.engine.results import Results

    detector = make_detector(_settings(detector="yolo", yolo_weights=yolo_weights, yolo_classes="person,car"))
    names = {0: "person", 1: "bicycle", 2: "car"}
    frame = np.zeros((240, 320, 3), np.uint8)
    boxes = torch.tensor(
        [
            [10, 10, 40, 80, 0.9, 0],  # person, 2100 px²: kept
            [50, 50, 90, 90, 0.9, 1],  # bicycle: not a configured class
            [100, 100, 105, 105, 0.9, 2],  # car, 25 px² < 0.0012 * 320 * 240 = 92 px²
            [150, 100, 200, 140, 0.8, 2],  # car: kept
        ],
        dtype=torch.float32,
    )
    model, _ = detector._model()
    calls = []

    def fake_predict(source, **kwargs):
        calls.append(kwargs)
        return [Results(source, path="frame", names=names, boxes=boxes)]

    monkeypatch.setattr(model, "predict", fake_predict)
    monkeypatch.setattr(model.model, "names", names)
    detections = detector.detect(frame, frame[..., 0])
    assert calls[0]["classes"] == [0, 2] and calls[0]["conf"] == 0.5 and calls[0]["iou"] == 0.3
    assert detections.class_id.tolist() == [0, 2]
    np.testing.assert_allclose(detections.xyxy, [[10, 10, 40, 80], [150, 100, 200, 140]])
    with pytest.raises(ConfigError, match="truck"):
        make_detector(_settings(detector="yolo", yolo_weights=yolo_weights, yolo_classes="truck")).class_ids(names)


# --- the pipeline with model-backed stages ------------------------------------------------------


def test_fit_and_score_with_blip2_and_clip(blip2_dir, clip_dir, tmp_path):
    from vlavad.model import FittedModel
    from vlavad.pipeline import Pipeline

    train, test = tmp_path / "train.mp4", tmp_path / "test.mp4"
    render_scene(train, frames=40, width=160, height=120, walkers=2, seed=1)
    render_scene(test, frames=40, width=160, height=120, walkers=2, anomaly="fast", anomaly_start=10, seed=2)
    settings = _settings(
        describer="blip2", vlm_model=blip2_dir, encoder="clip", clip_model=clip_dir,
        vlm_batch_size=32, pseudo_stride=0, epochs=1, past=4, future=1,
    )
    pipeline = Pipeline(settings, cache_dir=tmp_path / "cache", show_progress=False)
    assert pipeline.prompts == default_pool("vlm")
    model = pipeline.fit([train])
    model = FittedModel.load(model.save(tmp_path / "model"))
    assert model.backends["describer"]["model"] == blip2_dir and model.backends["describer_is_vlm"]
    assert model.backends["encoder"]["model"] == clip_dir

    result = pipeline.score(model, test)
    assert len(result.frames) == 40 and result.backends["describer"]["describer"] == "blip2"

    offline = Pipeline(settings.updated(describer="motion", encoder="hashing"), cache_dir=None, show_progress=False)
    with pytest.raises(ModelError, match="describer"):
        offline.score(model, test)


# --- choosing backends --------------------------------------------------------------------------


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def test_offline_mode_and_explicit_overrides(blip2_dir):
    settings, warnings = resolve_backend("offline", _settings(detector="yolo", encoder="clip"))
    assert (settings.detector, settings.describer, settings.encoder) == ("blobs", "motion", "hashing") and not warnings
    settings, _ = resolve_backend("offline", _settings(describer="blip2", vlm_model=blip2_dir), explicit=["describer"])
    assert (settings.detector, settings.describer) == ("blobs", "blip2")
    with pytest.raises(ConfigError, match="Unknown backend mode"):
        resolve_backend("fast", Settings())


def test_models_mode_fails_fast_naming_the_missing_model(empty_hf_cache, yolo_weights, tmp_path):
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"Salesforce/blip2-opt-2\.7b.*hf download Salesforce/blip2-opt-2\.7b"):
        resolve_backend("models", _settings(yolo_weights=yolo_weights))
    with pytest.raises(ConfigError, match=r"yolo11n\.pt.*--set yolo_weights=PATH"):
        resolve_backend("models", _settings(yolo_weights=str(tmp_path / "yolo11n.pt")))
    assert time.perf_counter() - started < 5


def test_models_mode_with_local_models(blip2_dir, clip_dir, yolo_weights):
    settings, warnings = resolve_backend(
        "models", _settings(vlm_model=blip2_dir, clip_model=clip_dir, yolo_weights=yolo_weights, detector="blobs"), explicit=["detector"]
    )
    assert (settings.detector, settings.describer, settings.encoder) == ("blobs", "blip2", "clip") and not warnings
    settings, warnings = resolve_backend("auto", _settings(vlm_model=blip2_dir, clip_model=clip_dir, yolo_weights=yolo_weights))
    assert (settings.detector, settings.describer, settings.encoder) == ("yolo", "blip2", "clip") and not warnings


def test_auto_falls_back_to_offline_without_waiting(empty_hf_cache, tmp_path):
    started = time.perf_counter()
    settings, warnings = resolve_backend("auto", _settings(yolo_weights=str(tmp_path / "missing.pt")))
    assert time.perf_counter() - started < 2
    assert (settings.detector, settings.describer, settings.encoder) == ("blobs", "motion", "hashing")
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "Salesforce/blip2-opt-2.7b" in warnings[0] and "HF_HUB_OFFLINE" in warnings[0] and "missing.pt" in warnings[0]


def test_incomplete_sharded_download_is_not_available(blip2_dir, tmp_path):
    import shutil

    from vlavad.backends import hf_local_snapshot

    folder = tmp_path / "partial"
    shutil.copytree(blip2_dir, folder)
    (folder / "model.safetensors").unlink()
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"")
    assert hf_local_snapshot(str(folder)) is None
    with pytest.raises(ConfigError, match="partial"):
        resolve_backend("models", _settings(vlm_model=str(folder), detector="blobs", encoder="hashing"), explicit=["detector", "encoder"])


def test_importing_vlavad_loads_no_model_library():
    code = (
        "import sys, vlavad, vlavad.backends, vlavad.pipeline, vlavad.vlm, vlavad.clip_text, vlavad.yolo\n"
        "print([m for m in ('torch', 'transformers', 'ultralytics') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


# --- the GPU benchmark's CPU side ---------------------------------------------------------------


def test_gpu_benchmark_dry_run_and_no_cuda_message(tmp_path):
    script = REPO / "benchmarks" / "gpu_throughput.py"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "bench.json"
    dry = subprocess.run([sys.executable, str(script), "--dry-run", "--out", str(out)], capture_output=True, text=True, env=env, cwd=REPO)
    assert dry.returncode == 0, dry.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] and report["vqa"] and report["end_to_end"]["frames_per_s"] > 0
    assert "| " in dry.stdout
    import torch

    if not torch.cuda.is_available():
        real = subprocess.run([sys.executable, str(script), "--out", str(out)], capture_output=True, text=True, env=env, cwd=REPO)
        assert real.returncode == 2 and len(real.stderr.strip().splitlines()) == 1 and "CUDA" in real.stderr
