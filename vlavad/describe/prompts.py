"""The prompt pool: the questions a describer answers about every object.

A pool is a JSON file (see `assets/prompts/`). Each prompt is a question; for the offline motion
describer, which cannot read, it also names the measurement it is answered from (`measures`).
A prompt's id is derived from its text, so answers cached for a question stay valid when other
questions are added, edited or removed.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

from pydantic import Field

from vlavad.core.errors import ConfigError
from vlavad.core.schema import Schema, read_json_file, validate

MAX_QUESTION_CHARS = 200
MAX_PROMPTS = 50


class Prompt(Schema):
    """One question of a pool, as people write it, as pools and model files hold it, and as
    answers are keyed (`id`). `Prompt("How fast?", "speed")` reads as it is written."""

    question: str = Field(max_length=MAX_QUESTION_CHARS)
    measures: str | None = Field(None, max_length=40)  # only for the motion describer

    def __init__(self, question: str | None = None, measures: str | None = None, /, **fields) -> None:
        if question is not None:  # positional, as people write it; validation passes fields by name
            fields = {"question": question, "measures": measures, **fields}
        super().__init__(**fields)

    @property
    def id(self) -> str:
        text = f"{self.question}|{self.measures or ''}"
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        """The question as people should read it: for a describer that cannot read, with what it
        actually measures, so that no question claims what it does not measure."""
        return f"{self.question} (measures: {self.measures})" if self.measures else self.question

    def to_dict(self) -> dict:
        return {"question": self.question, **({"measures": self.measures} if self.measures else {})}


class PoolFile(Schema):
    """A prompt pool file: `{"prompts": [{"question": ..., "measures": ...}, ...]}`."""

    prompts: list[Prompt] = Field(max_length=MAX_PROMPTS)
    note: str = ""
    describer: str = ""


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
    pool = validate(PoolFile, read_json_file(path, "Prompt pool", ConfigError), f"prompt pool {path.name}", ConfigError)
    return validate_pool(list(pool.prompts))


def bundled_pool(name: str) -> list[Prompt]:
    """A pool shipped with vlavad (`assets/prompts/<name>.json`): `motion`, `appearance`, `vlm`."""
    with resources.as_file(resources.files("vlavad").joinpath("assets", "prompts", f"{name}.json")) as path:
        if not path.is_file():
            raise ConfigError(f"No bundled prompt pool called {name!r}.")
        return load_pool(path)


def pool_to_json(prompts: list[Prompt], note: str = "") -> str:
    return json.dumps({"note": note, "prompts": [p.to_dict() for p in prompts]}, indent=2)
