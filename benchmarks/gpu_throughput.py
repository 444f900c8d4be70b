"""GPU throughput of the model-backed stages, with random weights (no download needed).

Builds the full-size BLIP-2 OPT-2.7B architecture (ViT-g vision encoder, 32-query Q-Former,
OPT-2.7B) from a config written here, directly on the GPU in half precision, plus YOLO11n and
CLIP's base text encoder, and measures:

- VQA crops/s of BLIP-2 `generate` at several batch sizes (one question per crop, so also
  questions/s), in bf16 and fp16, with a fixed answer length (random weights would otherwise stop
  at arbitrary lengths), and peak GPU memory;
- YOLO11n frames/s, CLIP text embeddings/s, and training windows/s of the S3M, GRU and
  Transformer predictors;
- end-to-end frames/s and questions/s on a synthetic 640x360 clip: blob tracking + BLIP-2
  answering the paper's three questions about every object step + CLIP embedding of the answers,
  through the real `vlavad` pieces, next to bare `generate` at the same batch size and dtype. The
  describer encodes each crop once for all its questions, so it can beat bare `generate` per
  question. (A random YOLO finds no objects, so tracks come from the blob detector.)

It prints one markdown table and writes JSON to `--out`. It needs a CUDA GPU and finishes in a
few minutes on one H100/H200; `--dry-run` builds tiny models on the CPU instead, to check the
script itself on any machine.

    python benchmarks/gpu_throughput.py --out runs/gpu_throughput.json
    python benchmarks/gpu_throughput.py --dry-run --out /tmp/dry.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded; never wait for the hub
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-config-"))

IMAGE_TOKEN_ID = 3  # the <image> token of the locally built tokenizer (see `local_tokenizer`)
PROMPT_TOKENS = 20  # about the length of "Question: What is the pose of the person in the picture? Answer:"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--dry-run", action="store_true", help="tiny models on the CPU: checks the script, measures nothing useful")
    parser.add_argument("--batch-sizes", default="1,4,16,32,64", help="VQA batch sizes (comma-separated)")
    parser.add_argument("--dtypes", default="bfloat16,float16", help="VQA dtypes (comma-separated)")
    parser.add_argument("--max-new-tokens", type=int, default=8, help="answer length (also the minimum)")
    parser.add_argument("--seconds", type=float, default=2.0, help="time spent per VQA measurement")
    parser.add_argument("--objects", type=int, default=8, help="walkers on screen in the end-to-end clip")
    parser.add_argument("--frames", type=int, default=100, help="frames of the end-to-end clip (10 fps)")
    parser.add_argument("--e2e-batch", type=int, default=32, help="VLM batch size of the end-to-end run")
    parser.add_argument("--profile", action="store_true", help="print where the end-to-end run spends its time (cProfile)")
    parser.add_argument("--tracks", type=int, default=400, help="random 40-step tracks for the predictor training measurement")
    parser.add_argument("--windows", type=int, default=8192, help="training windows per epoch (the presets' max_windows)")
    parser.add_argument("--epochs", type=int, default=3, help="timed predictor training epochs")
    args = parser.parse_args(argv)
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    args.dtypes = args.dtypes.split(",")
    if args.dry_run:  # small enough for a CPU in seconds
        args.batch_sizes, args.dtypes, args.seconds = [b for b in args.batch_sizes if b <= 4] or [1], ["float32"], 0.2
        args.objects, args.frames = 2, 20
        args.tracks, args.windows, args.epochs = 20, 256, 1
    return args


# --- models from configs ------------------------------------------------------------------------


def blip2_config(full: bool):
    """BLIP-2 OPT-2.7B (`full`) or a tiny model with the same structure."""
    from transformers import Blip2Config

    if full:
        vision = dict(hidden_size=1408, num_hidden_layers=39, num_attention_heads=16, intermediate_size=6144, patch_size=14, image_size=224)
        qformer = dict(
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            cross_attention_frequency=2,
            encoder_hidden_size=1408,
        )
        text = dict(
            hidden_size=2560,
            num_hidden_layers=32,
            num_attention_heads=32,
            ffn_dim=10240,
            vocab_size=50272,
            word_embed_proj_dim=2560,
            max_position_embeddings=2048,
        )
        queries = 32
    else:
        vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=14, image_size=56)
        qformer = dict(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, cross_attention_frequency=2, encoder_hidden_size=32
        )
        text = dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            ffn_dim=64,
            vocab_size=512,
            word_embed_proj_dim=32,
            max_position_embeddings=256,
        )
        queries = 8
    text.update(model_type="opt", pad_token_id=0, bos_token_id=1, eos_token_id=1)
    return Blip2Config(vision_config=vision, qformer_config=qformer, text_config=text, num_query_tokens=queries, image_token_index=IMAGE_TOKEN_ID)


def clip_text_config(full: bool):
    from transformers import CLIPTextConfig

    if full:
        return CLIPTextConfig(projection_dim=512)  # the defaults are ViT-B/32's text tower
    return CLIPTextConfig(
        vocab_size=600,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        projection_dim=16,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )


def local_tokenizer():
    """A small byte-level BPE with OPT's special tokens and <image> (id 3): stands in for the real
    tokenizer, which cannot be downloaded. Its vocabulary is smaller than the model's, so
    random generated ids outside it decode to nothing, which is fine for timing."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "</s>", "<unk>", "<image>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(["Question: What is the pose of the person in the picture? Answer: walking riding standing"], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", bos_token="</s>", unk_token="<unk>")


def clip_tokenizer():
    """CLIP's BPE format over the byte alphabet alone (no merges): a stand-in for timing."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=[])


def build_on(device: str, dtype, config, model_class):
    """A randomly initialised model created directly on `device` in `dtype`: the 3.8B BLIP-2
    parameters are never materialised in fp32 on the CPU."""
    import torch

    with torch.device(device):
        return model_class._from_config(config, dtype=dtype).eval()


# --- measurements -------------------------------------------------------------------------------


def _sync(device: str):
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str, seconds: float) -> tuple[float, int]:
    """(mean seconds per call, calls) after one warm-up call, running for about `seconds`."""
    fn()
    _sync(device)
    calls, started = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        _sync(device)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds or calls >= 50:
            return elapsed / calls, calls


def measure_vqa(model, device: str, dtype_name: str, batch: int, args) -> dict:
    import torch

    config = model.config
    size = config.vision_config.image_size
    pixels = torch.randn(batch, 3, size, size, device=device, dtype=model.dtype)
    text = torch.randint(4, 400, (batch, PROMPT_TOKENS), device=device)
    ids = torch.cat([torch.full((batch, config.num_query_tokens), IMAGE_TOKEN_ID, device=device), text], dim=1)
    mask = torch.ones_like(ids)
    n = args.max_new_tokens

    def generate():
        with torch.inference_mode():
            model.generate(pixel_values=pixels, input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False)

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        seconds, calls = timed(generate, device, args.seconds)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {"stage": "BLIP-2 VQA", "dtype": dtype_name, "batch": batch, "error": "out of memory"}
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    return {
        "stage": "BLIP-2 VQA",
        "dtype": dtype_name,
        "batch": batch,
        "value": batch / seconds,
        "unit": "crops/s",
        "latency_s": seconds,
        "calls": calls,
        "peak_gib": peak,
    }


def measure_yolo(device: str, args) -> dict:
    import numpy as np
    from ultralytics import YOLO

    model = YOLO("yolo11n.yaml")
    frame = np.random.default_rng(0).integers(0, 255, (240, 427, 3), dtype=np.uint8)  # 640x360 at working height
    seconds, _ = timed(lambda: model.predict(frame, conf=0.5, iou=0.3, imgsz=640, device=device, verbose=False), device, args.seconds)
    return {"stage": "YOLO11n detect", "dtype": "float32", "batch": 1, "value": 1 / seconds, "unit": "frames/s"}


def measure_clip_text(model, device: str, args) -> dict:
    import torch

    batch = 256
    ids = torch.randint(2, model.config.vocab_size, (batch, 12), device=device)

    def encode():
        with torch.inference_mode():
            model(input_ids=ids)

    seconds, _ = timed(encode, device, args.seconds)
    return {"stage": "CLIP text embed", "dtype": "float32", "batch": batch, "value": batch / seconds, "unit": "texts/s"}


def measure_predictor_training(device: str, args) -> list[dict]:
    """Training windows/s of the three temporal predictors at the Ped2 preset's sizes
    (512-d answers, 10 -> 2 steps, 3 layers, batch 256): the CPU fit spends most of its time here."""
    import numpy as np

    from vlavad.scorers.temporal.kinds import PREDICTORS
    from vlavad.scorers.temporal.predictors import build_predictor
    from vlavad.scorers.temporal.training import train_predictor

    rng = np.random.default_rng(0)
    sequences = [rng.standard_normal((40, 512)).astype(np.float32) for _ in range(args.tracks)]
    rows = []
    for kind in PREDICTORS.names():
        model = build_predictor(kind, dim=512, past=10, future=2).to(device)
        train_predictor(model, sequences, past=10, future=2, epochs=1, max_windows=args.windows)  # warm-up
        _sync(device)
        started = time.perf_counter()
        train_predictor(model, sequences, past=10, future=2, epochs=args.epochs, max_windows=args.windows)
        _sync(device)
        windows = min(args.windows, args.tracks * (40 - 12 + 1)) * args.epochs
        fused = kind == "s3m" and device == "cuda" and _fused_scan_available()
        rows.append(
            {
                "stage": f"{kind} training" + (" (mamba-ssm kernel)" if fused else ""),
                "dtype": "float32",
                "batch": 256,
                "value": windows / (time.perf_counter() - started),
                "unit": "windows/s",
            }
        )
    return rows


def _fused_scan_available() -> bool:
    from vlavad.scorers.temporal.scan import _fused_scan

    return _fused_scan() is not None


def _time_calls(obj, name: str, device: str) -> list:
    """Wraps obj.name so that [total seconds, calls] accumulates in the returned list."""
    spent = [0.0, 0]
    real = getattr(obj, name)

    def timed(*args, **kwargs):
        _sync(device)
        started = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            _sync(device)
            spent[0] += time.perf_counter() - started
            spent[1] += 1

    setattr(obj, name, timed)
    return spent


def measure_end_to_end(blip2, processor, clip, clip_tok, device: str, args) -> dict:
    """Tracking, describing and embedding a synthetic 640x360 clip with the real vlavad stages."""
    from vlavad.describe import track_steps
    from vlavad.describe.prompts import bundled_pool
    from vlavad.describe.vlm import Blip2Describer, VLMSettings
    from vlavad.detect.blobs import MotionBlobDetector
    from vlavad.embed.clip import ClipSettings, ClipTextEncoder
    from vlavad.io.probe import probe
    from vlavad.testing.synthetic import render_scene
    from vlavad.track.tracking import track_video

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.mp4"
        render_scene(path, frames=args.frames, width=640, height=360, fps=10.0, walkers=args.objects, seed=0)
        info = probe(path)
        vlm = VLMSettings(model="random-blip2-opt-2.7b", batch_size=args.e2e_batch, max_new_tokens=args.max_new_tokens)
        describer = Blip2Describer(vlm, device=device)
        encoder = ClipTextEncoder(ClipSettings(model="random-clip-text"), device=device)
        # The models were built here, not loaded: hand them to the stages directly.
        describer._model = lambda: (blip2, processor)
        generate_s = _time_calls(describer, "_answer_crops", device)
        encoder._model = lambda: (clip, clip_tok)

        started = time.perf_counter()
        tracks = track_video(info, MotionBlobDetector())
        tracked = time.perf_counter()
        steps = track_steps(tracks, info.fps, step_hz=10.0)
        answers = describer.answer(info, tracks, steps, bundled_pool("vlm"))
        _sync(device)
        described = time.perf_counter()
        encoder.encode(answers["answer"].tolist())
        _sync(device)
        done = time.perf_counter()
    return {
        "frames": info.frame_count,
        "size": [info.width, info.height],
        "tracks": int(tracks["track_id"].nunique()),
        "steps": len(steps),
        "questions": len(answers),
        "vlm_batch": args.e2e_batch,
        "track_s": tracked - started,
        "describe_s": described - tracked,
        "embed_s": done - described,
        "describe_in_generate_s": generate_s[0],
        "generate_calls": generate_s[1],
        "frames_per_s": info.frame_count / (done - started),
        "questions_per_s": len(answers) / (described - tracked),
    }


# --- report ---------------------------------------------------------------------------------------


def markdown_table(rows: list[dict], e2e: dict) -> str:
    bare = e2e["bare_generate_questions_per_s"]
    bare = "not measured at this batch" if bare is None else f"{bare:.1f} questions/s"
    lines = ["| stage | dtype | batch | throughput | peak GPU memory |", "|---|---|---:|---:|---:|"]
    for r in rows:
        value = r.get("error") or f"{r['value']:.1f} {r['unit']}"
        peak = f"{r['peak_gib']:.1f} GiB" if r.get("peak_gib") is not None else "–"
        lines.append(f"| {r['stage']} | {r['dtype']} | {r['batch']} | {value} | {peak} |")
    lines.append(
        f"| end to end ({e2e['size'][0]}x{e2e['size'][1]}, {e2e['tracks']} tracks, {e2e['questions']} questions) "
        f"| {e2e['dtype']} | {e2e['vlm_batch']} | {e2e['frames_per_s']:.1f} frames/s, {e2e['questions_per_s']:.1f} questions/s "
        f"(bare `generate`: {bare}) | – |"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("error: this benchmark needs a CUDA GPU and torch sees none (use --dry-run to check the script on a CPU)", file=sys.stderr)
        return 2
    import transformers
    from transformers import Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor, CLIPTextModelWithProjection

    device = "cpu" if args.dry_run else "cuda"
    full = not args.dry_run
    started = time.perf_counter()
    torch.manual_seed(0)

    blip2 = build_on(device, getattr(torch, args.dtypes[0]), blip2_config(full), Blip2ForConditionalGeneration)
    built_s = time.perf_counter() - started
    rows = []
    for dtype_name in args.dtypes:
        blip2 = blip2.to(getattr(torch, dtype_name))
        for batch in args.batch_sizes:
            rows.append(measure_vqa(blip2, device, dtype_name, batch, args))
            print(f"  {rows[-1]}", file=sys.stderr)

    clip = build_on(device, torch.float32, clip_text_config(full), CLIPTextModelWithProjection)
    rows.append(measure_yolo(device, args))
    rows.append(measure_clip_text(clip, device, args))
    rows.extend(measure_predictor_training(device, args))

    size = blip2.config.vision_config.image_size
    processor = Blip2Processor(
        BlipImageProcessor(size={"height": size, "width": size}), local_tokenizer(), num_query_tokens=blip2.config.num_query_tokens
    )
    processor.tokenizer.padding_side = "left"
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        e2e = profiler.runcall(measure_end_to_end, blip2, processor, clip, clip_tokenizer(), device, args)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
    else:
        e2e = measure_end_to_end(blip2, processor, clip, clip_tokenizer(), device, args)
    e2e["dtype"] = args.dtypes[-1]
    e2e["bare_generate_questions_per_s"] = next(
        (r["value"] for r in rows if r["stage"] == "BLIP-2 VQA" and r["dtype"] == e2e["dtype"] and r["batch"] == args.e2e_batch and "value" in r),
        None,
    )

    report = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "dry_run": args.dry_run,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "blip2_parameters": sum(p.numel() for p in blip2.parameters()),
        "build_s": built_s,
        "max_new_tokens": args.max_new_tokens,
        "vqa": [r for r in rows if r["stage"] == "BLIP-2 VQA"],
        "other_stages": [r for r in rows if r["stage"] != "BLIP-2 VQA"],
        "end_to_end": e2e,
        "total_s": time.perf_counter() - started,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(
        f"{report['device']}, BLIP-2 {report['blip2_parameters'] / 1e9:.2f}B parameters, random weights, "
        f"{args.max_new_tokens} new tokens per answer, {report['total_s']:.0f} s in all; JSON in {out}\n"
    )
    print(markdown_table(rows, e2e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
