"""Vision-language describers: the paper's BLIP-2, or any image-text-to-text model.

Every question of the prompt pool is asked about a crop of each object at each track step:

1. One streaming pass over the video cuts the object crops (the padded box, from the original
   frame) at the frames that have steps; no frame is kept, only the crops of the current batch.
2. Crops are answered in batches, each crop with every question: one processor call and one
   greedy `generate` per batch. BLIP-2 encodes each crop once (vision tower, Q-Former,
   projection) and answers all its questions from those embeddings; the generic describer asks
   `generate` about each (crop, question) pair.
3. Answers are normalised (lowercase, no punctuation or leading article) because SPA counts
   them: "A man." and "man" are the same answer.

With `stride` n only every n-th step of a track is asked and the skipped steps repeat the last
answer, so the cost grows with the number of tracks, not with the frame rate.

Models are loaded on first use, once per process (`vlavad.weights.hub.load_once`), so the web app does
not reload BLIP-2 per request. The describer's identity (model id, revision, dtype, prompt template,
max_new_tokens, crop and stride settings) enters cache keys; batch size and device do not,
because they do not change the answers.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from vlavad.core.errors import ConfigError
from vlavad.core.records import ANSWER_COLUMNS, VideoInfo
from vlavad.core.registry import Missing
from vlavad.core.schema import Schema
from vlavad.describe.base import DESCRIBERS, Describer, ProgressFn
from vlavad.describe.crops import iter_crops
from vlavad.describe.prompts import Prompt
from vlavad.weights.hub import (
    NO_REMOTE_CODE,
    SAFE_LOADING,
    check_model_source,
    hf_local_snapshot,
    hf_missing,
    hub_offline,
    load_error,
    load_once,
    resolve_device,
    resolved_revision,
)

DEFAULT_BLIP2 = "Salesforce/blip2-opt-2.7b"

_PUNCTUATION = re.compile(r"[^\w\s']|_|(?<!\w)'|'(?!\w)")  # apostrophes survive only inside words
_ARTICLES = re.compile(r"^(?:(?:a|an|the) )+")
NO_ANSWER = "no answer"


def normalise_answer(text: str) -> str:
    """Lowercase, punctuation removed (not the apostrophe of "man's"), leading articles
    dropped, spaces collapsed. An empty result becomes "no answer" so captions stay readable."""
    text = " ".join(_PUNCTUATION.sub(" ", text.lower()).split())
    return _ARTICLES.sub("", text + " ").strip() or NO_ANSWER


class VLMSettings(Schema):
    model: str = ""  # model id or local folder; "" = the describer's default (BLIP-2 OPT-2.7B for blip2)
    revision: str = ""  # hub revision (branch, tag or commit); "" = main
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"  # auto: bf16/fp16 on CUDA, fp32 on CPU
    batch_size: int = Field(16, ge=1, le=4096)  # (crop, question) pairs per generate call, whole crops (speed only)
    max_new_tokens: int = Field(10, ge=1, le=256)  # answers are short phrases
    stride: int = Field(1, ge=1, le=1000)  # ask every n-th step of a track; skipped steps keep the last answer
    crop_margin: float = Field(0.15, ge=0, le=2)  # crops are padded by this fraction of the box size per side
    crop_min_side: int = Field(32, ge=1, le=4096)  # smaller crops are enlarged around their centre, source pixels

    _model_source = field_validator("model")(check_model_source)


class VLMDescriber(Describer):
    """Shared machinery of the model-backed describers; subclasses load a model and phrase a question."""

    is_vlm = True
    reads_motion = False  # it answers each step's crop: a faster clip looks the same
    tier = "hub"
    prompt_pool = "vlm"
    Settings = VLMSettings
    settings_group = "vlm"  # blip2 and hf share one group: the VLM is a setting of either
    default_model = ""

    def __init__(self, settings: VLMSettings = VLMSettings(), device: str = "auto"):
        self.model_id, self.revision = self.model_for(settings), settings.revision
        self.requested_dtype, self.requested_device = settings.dtype, device
        self.batch_size, self.max_new_tokens, self.stride = settings.batch_size, settings.max_new_tokens, settings.stride
        self.crop_margin, self.crop_min_side = settings.crop_margin, settings.crop_min_side

    @classmethod
    def create(cls, settings: VLMSettings, device: str) -> VLMDescriber:
        return cls(settings, device)

    @classmethod
    def model_for(cls, settings: VLMSettings) -> str:
        """The model to load: `settings.model`, else this describer's default."""
        if settings.model or cls.default_model:
            return settings.model or cls.default_model
        raise ConfigError(f"The {cls.name!r} describer needs a model: pass --set describe.vlm.model=ID (any image-text-to-text model).")

    @classmethod
    def missing(cls, settings: VLMSettings) -> Missing | None:
        if not (settings.model or cls.default_model):
            return Missing(f"the {cls.name!r} describer was given no model", "Pass --set describe.vlm.model=ID (any image-text-to-text model)")
        return hf_missing(cls.model_for(settings), settings.revision)

    def can_answer(self, prompt: Prompt) -> str | None:
        return None if prompt.measures is None else f"its questions are free text, not a measurement ({prompt.measures})"

    # --- identity -----------------------------------------------------------------------------

    @property
    def device(self) -> str:
        return resolve_device(self.requested_device)

    @property
    def dtype(self) -> str:
        """The torch dtype name the model runs in: half precision on CUDA, fp32 on CPU."""
        if self.requested_dtype != "auto":
            return self.requested_dtype
        if self.device == "cpu":
            return "float32"
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"

    def identity(self) -> dict:
        return {
            "describer": self.name,
            "is_vlm": True,
            "model": self.model_id,
            "revision": resolved_revision(self.model_id, self.revision),
            "dtype": self.dtype,
            "prompt_template": self.prompt_template,
            "max_new_tokens": self.max_new_tokens,
            "stride": self.stride,
            "crop_margin": self.crop_margin,
            "crop_min_side": self.crop_min_side,
        }

    # --- answering ----------------------------------------------------------------------------

    prompt_template: str = "{q}"

    @abstractmethod
    def prompt_text(self, question: str, processor) -> str:
        """The text given to the model for one question."""

    @abstractmethod
    def _load_model(self, source: str, local_only: bool, torch_dtype):
        """(model, processor) from a folder or hub id."""

    def answer(
        self,
        info: VideoInfo,
        tracks: pd.DataFrame,
        steps: pd.DataFrame,
        prompts: list[Prompt],
        progress: ProgressFn | None = None,
    ) -> pd.DataFrame:
        steps = steps.sort_values(["track_id", "frame"], kind="stable")
        asked_mask = (steps.groupby("track_id").cumcount() % self.stride == 0).to_numpy()
        asked = steps[asked_mask]
        answers = np.empty((len(asked), len(prompts)), dtype=object)
        if len(asked) and prompts:
            model, processor = self._model()
            texts = [self.prompt_text(p.question, processor) for p in prompts]
            done, total = 0, len(asked) * len(prompts)
            for positions, crops in self._batches(info, asked, len(prompts)):
                decoded = self._answer_crops(model, processor, crops, texts)
                answers[positions] = np.array([normalise_answer(t) for t in decoded], dtype=object).reshape(len(crops), len(texts))
                done += len(crops) * len(texts)
                if progress:
                    progress(round(done / total * len(steps)), len(steps))

        # Skipped steps repeat their track's last asked answer: `asked_mask` marks every track's
        # first step, so a forward fill within the (sorted) track never crosses tracks.
        frames = []
        for j, prompt in enumerate(prompts):
            column = pd.Series(pd.NA, index=steps.index, dtype=object)
            column[asked_mask] = answers[:, j]
            frames.append(
                pd.DataFrame(
                    {
                        "frame": steps["frame"].to_numpy(),
                        "track_id": steps["track_id"].to_numpy(),
                        "prompt_id": prompt.id,
                        "answer": column.ffill().to_numpy(),
                        "detail": "",
                    }
                )
            )
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ANSWER_COLUMNS)

    def _batches(self, info: VideoInfo, asked: pd.DataFrame, n_prompts: int):
        """(positions, crops) batches of whole crops, each to be asked every question."""
        # `batch_size` counts (crop, question) pairs, not crops: the language model's generate over
        # the pairs dominates memory and time, so the setting keeps bounding them, means the same
        # for every describer and stays comparable with a bare `generate` of that batch size.
        # A batch holds whole crops (at least one), so BLIP-2 encodes each crop only once.
        crops_per_batch = max(1, self.batch_size // n_prompts)
        positions, crops = [], []
        for position, crop in iter_crops(info, asked, self.crop_margin, self.crop_min_side):
            positions.append(position)
            crops.append(crop)
            if len(crops) == crops_per_batch:
                yield np.array(positions), crops
                positions, crops = [], []
        if crops:
            yield np.array(positions), crops

    def _answer_crops(self, model, processor, crops: list[np.ndarray], texts: list[str]) -> list[str]:
        """Greedy answers to every text about every crop, crop by crop: `generate` on each pair."""
        import torch

        images = [image for image in _pil(crops) for _ in texts]
        inputs = processor(images=images, text=texts * len(crops), return_tensors="pt", padding=True)
        inputs = {k: v.to(model.device) for k, v in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1)
        return _decode(processor, output, inputs["input_ids"])

    def _model(self):
        """The loaded (model, processor), shared by every describer of the process."""
        import torch

        device, dtype = self.device, self.dtype

        def load():
            snapshot = hf_local_snapshot(self.model_id, self.revision)
            source = str(snapshot[0]) if snapshot else self.model_id
            try:
                model, processor = self._load_model(source, snapshot is not None or hub_offline(), getattr(torch, dtype))
            except (OSError, ValueError) as exc:  # not found, cannot connect, no safetensors, needs its own code: the user's to fix
                raise load_error(self.model_id, exc) from None
            # Batched generation with a decoder-only model needs the padding on the left.
            processor.tokenizer.padding_side = "left"
            if processor.tokenizer.pad_token is None:
                processor.tokenizer.pad_token = processor.tokenizer.eos_token
            return model.to(device).eval(), processor

        return load_once((type(self).__name__, self.model_id, resolved_revision(self.model_id, self.revision), dtype, device), load)


def _pil(crops: list[np.ndarray]) -> list:
    """PIL images: numpy crops a few pixels wide could be mistaken for channels-first."""
    from PIL import Image

    return [Image.fromarray(crop) for crop in crops]


def _decode(processor, output, prompt_ids) -> list[str]:
    """The answers' text; decoder-only models return the prompt followed by the answer."""
    import torch

    if output.shape[1] >= prompt_ids.shape[1] and torch.equal(output[:, : prompt_ids.shape[1]], prompt_ids):
        output = output[:, prompt_ids.shape[1] :]
    return processor.batch_decode(output, skip_special_tokens=True)


@DESCRIBERS.register
class Blip2Describer(VLMDescriber):
    """BLIP-2 (the paper's VLM) with its VQA prompt `Question: {q} Answer:`."""

    name = "blip2"
    default_model = DEFAULT_BLIP2
    prompt_template = "Question: {q} Answer:"

    def prompt_text(self, question: str, processor) -> str:
        return self.prompt_template.format(q=question)

    def _load_model(self, source: str, local_only: bool, torch_dtype):
        from transformers import Blip2ForConditionalGeneration, Blip2Processor

        revision = {} if local_only or not self.revision else {"revision": self.revision}
        processor = Blip2Processor.from_pretrained(source, local_files_only=local_only, **NO_REMOTE_CODE, **revision)
        model = Blip2ForConditionalGeneration.from_pretrained(source, local_files_only=local_only, dtype=torch_dtype, **SAFE_LOADING, **revision)
        return model, processor

    def _answer_crops(self, model, processor, crops: list[np.ndarray], texts: list[str]) -> list[str]:
        """Greedy answers to every text about every crop, crop by crop, as `model.generate` gives
        them, but each crop goes through the vision tower and Q-Former once, not once per question."""
        import torch

        # One row per text, each starting with the image tokens; pixel values are one per crop.
        inputs = processor(images=_pil(crops), text=texts, return_tensors="pt", padding=True)
        pixel_values = inputs["pixel_values"].to(model.device, model.dtype)
        # Crop-major pairs: crop 0 with every text, then crop 1 with every text, ...
        input_ids = inputs["input_ids"].to(model.device).repeat(len(crops), 1)
        attention_mask = inputs["attention_mask"].to(model.device).repeat(len(crops), 1)
        with torch.inference_mode():
            # The crop's language-model inputs, computed as `model.generate` computes them.
            image_embeds = model.vision_model(pixel_values=pixel_values).last_hidden_state
            every_patch = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
            queries = model.query_tokens.expand(len(crops), -1, -1)
            query_output = model.qformer(query_embeds=queries, encoder_hidden_states=image_embeds, encoder_attention_mask=every_patch)
            # The Q-Former is kept in fp32: back to the vision tower's dtype before the projection.
            crop_embeds = model.language_projection(query_output.last_hidden_state.to(image_embeds.dtype))

            # Each pair's crop embeddings replace the image tokens the processor put in its row;
            # padding (on the left, after the image tokens) stays masked by `attention_mask`.
            inputs_embeds = model.get_input_embeddings()(input_ids)
            image_slots = (input_ids == model.config.image_token_id).unsqueeze(-1)
            crop_per_pair = crop_embeds.repeat_interleave(len(texts), dim=0).to(inputs_embeds.dtype)
            inputs_embeds = inputs_embeds.masked_scatter(image_slots, crop_per_pair)
            language_inputs = {"inputs_embeds": inputs_embeds, "attention_mask": attention_mask}
            if not model.language_model.config.is_encoder_decoder:
                # As `model.generate` does: the prompt ids let generation rules that look at the
                # sequence so far (lengths, repetition) see the same sequence.
                language_inputs["input_ids"] = input_ids
            output = model.language_model.generate(**language_inputs, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1)
        return _decode(processor, output, input_ids)


@DESCRIBERS.register
class HFVLMDescriber(VLMDescriber):
    """Any transformers image-text-to-text model, prompted through its chat template."""

    name = "hf"
    prompt_template = "chat template: [image] {q}"

    def prompt_text(self, question: str, processor) -> str:
        # Some folders carry the template in the tokenizer rather than the processor.
        template = getattr(processor, "chat_template", None) or getattr(processor.tokenizer, "chat_template", None)
        if not template:
            raise ConfigError(f"{self.model_id} has no chat template; use describer=blip2 for BLIP-2 models.")
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, chat_template=template)

    def _load_model(self, source: str, local_only: bool, torch_dtype):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        revision = {} if local_only or not self.revision else {"revision": self.revision}
        processor = AutoProcessor.from_pretrained(source, local_files_only=local_only, **NO_REMOTE_CODE, **revision)
        model = AutoModelForImageTextToText.from_pretrained(source, local_files_only=local_only, dtype=torch_dtype, **SAFE_LOADING, **revision)
        return model, processor
