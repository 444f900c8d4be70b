"""Tiny Hugging Face and ultralytics models built from configs in code, for the hub-tier tests
(a pytest plugin: `conftest.py` loads it; a test module opts in to `offline_env`).

Everything runs offline on CPU with randomly initialised models saved to temporary folders, so
the real loading path (`from_pretrained` of a folder) is exercised without a download.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from vlavad.io.probe import probe
from vlavad.pipeline.settings import Settings
from vlavad.testing.synthetic import render_scene

QUERY_TOKENS = 4
IMAGE_TOKEN_ID = 3


@pytest.fixture(scope="module")
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


def settings(**changes) -> Settings:
    """Settings on the CPU with `changes` given by dotted name ("describe.vlm.model")."""
    return Settings(device="cpu").updated(**changes)


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


def tiny_blip2(language_model: str = "opt"):
    """A ~30k-parameter BLIP-2 (ViT + Q-Former + OPT or T5) with random weights, and its processor."""
    import torch
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor

    tokenizer = _tiny_bpe_tokenizer()
    small = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    text = dict(vocab_size=len(tokenizer), pad_token_id=0, eos_token_id=1)
    if language_model == "opt":
        text.update(
            model_type="opt",
            hidden_size=16,
            ffn_dim=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            word_embed_proj_dim=16,
            max_position_embeddings=128,
            bos_token_id=1,
        )
    else:
        text.update(model_type="t5", d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, decoder_start_token_id=0)
    config = Blip2Config(
        vision_config=dict(small, image_size=32, patch_size=16),
        qformer_config=dict(small, encoder_hidden_size=16, vocab_size=len(tokenizer)),
        text_config=text,
        num_query_tokens=QUERY_TOKENS,
        image_token_index=IMAGE_TOKEN_ID,
    )
    torch.manual_seed(0)
    model = Blip2ForConditionalGeneration(config).eval()
    processor = Blip2Processor(BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer, num_query_tokens=QUERY_TOKENS)
    return model, processor


@pytest.fixture(scope="module")
def blip2_dir(tmp_path_factory) -> str:
    """The tiny BLIP-2 (OPT) and its processor, saved to a folder."""
    model, processor = tiny_blip2()
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
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=8,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-clip")
    CLIPTextModelWithProjection(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def yolo_checkpoint(tmp_path_factory) -> Path:
    """yolo11n's architecture with random weights, saved by ultralytics as a .pt checkpoint."""
    from ultralytics import YOLO

    path = tmp_path_factory.mktemp("yolo") / "random-yolo11n.pt"
    YOLO("yolo11n.yaml").save(path)
    return path


@pytest.fixture(scope="module")
def weights_cache(tmp_path_factory):
    """A weights cache of the module's own ($VLAVAD_WEIGHTS) that still holds the packaged weights
    of the real one (linked, never written), so that YOLO weights can be imported into it."""
    from vlavad.weights.packaged import weights_dir

    real, cache = weights_dir(), tmp_path_factory.mktemp("weights")
    for entry in real.iterdir() if real.is_dir() else []:
        if entry.name != "yolo":
            (cache / entry.name).symlink_to(entry)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLAVAD_WEIGHTS", str(cache))
        yield cache


@pytest.fixture(scope="module")
def yolo_weights(yolo_checkpoint, weights_cache) -> str:
    """The random yolo11n imported into the module's weights cache (`vlavad weights import-yolo`):
    the name that `detect.yolo.weights` takes."""
    from vlavad.weights.yolo import import_weights

    return import_weights(yolo_checkpoint).stem


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
