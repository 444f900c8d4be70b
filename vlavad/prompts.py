"""The prompt pool: the questions a describer answers about every object.

A pool is a JSON file (see `assets/prompts/`). Each prompt is a question; for the offline motion
describer, which cannot read, it also names the measurement it is answered from (`measures`).
A prompt's id is derived from its text, so answers cached for a question stay valid when other
questions are added, edited or removed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

ASSETS = Path(__file__).resolve().parent.parent / "assets"
MAX_QUESTION_CHARS = 200
MAX_PROMPTS = 50


@dataclass(frozen=True)
class Prompt:
    question: str
    measures: str | None = None  # only for the motion describer

    @property
    def id(self) -> str:
        text = f"{self.question}|{self.measures or ''}"
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        return {"question": self.question, **({"measures": self.measures} if self.measures else {})}


def validate_pool(prompts: list[Prompt]) -> list[Prompt]:
    """Checks a pool a user edited: non-empty questions, no duplicates, bounded size."""
    if not prompts:
        raise ConfigError("The prompt pool is empty: add at least one question.")
    if len(prompts) > MAX_PROMPTS:
        raise ConfigError(f"The prompt pool has {len(prompts)} questions; at most {MAX_PROMPTS} are allowed.")
    seen = set()
    cleaned = []
    for p in prompts:
        question = " ".join(p.question.split())
        if not question:
            raise ConfigError("A question in the prompt pool is empty.")
        if len(question) > MAX_QUESTION_CHARS:
            raise ConfigError(f"Question too long ({len(question)} characters, at most {MAX_QUESTION_CHARS}): {question[:40]}…")
        key = (question.lower(), p.measures)
        if key in seen:
            raise ConfigError(f"Duplicate question in the prompt pool: {question!r}")
        seen.add(key)
        cleaned.append(Prompt(question, p.measures or None))
    return cleaned


def load_pool(path: str | Path) -> list[Prompt]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        prompts = [Prompt(item["question"], item.get("measures")) for item in data["prompts"]]
    except FileNotFoundError:
        raise ConfigError(f"Prompt pool not found: {path}") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"Prompt pool {path} is not a valid pool file ({exc.__class__.__name__}: {exc}).") from None
    return validate_pool(prompts)


def default_pool(describer_kind: str) -> list[Prompt]:
    """The bundled pool for a describer kind: 'motion' or 'vlm'."""
    return load_pool(ASSETS / "prompts" / f"{'motion' if describer_kind == 'motion' else 'vlm'}.json")


def pool_to_json(prompts: list[Prompt], note: str = "") -> str:
    return json.dumps({"note": note, "prompts": [p.to_dict() for p in prompts]}, indent=2)
