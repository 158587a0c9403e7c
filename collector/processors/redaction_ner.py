"""Optional named-entity detection (person names, street addresses) for the redaction processor, via Presidio.

Installed with the `[ner]` extra; Presidio also needs a spaCy model, which no official PyPI package ships.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import pyarrow as pa

# Our entity name -> Presidio's.
PRESIDIO_ENTITIES: Final = {"person": "PERSON", "address": "LOCATION"}


class NerUnavailable(ValueError):
    """NER was asked for but Presidio or its spaCy model is not installed; the message says how to fix it."""


class NerRedactor:
    """Masks what Presidio's analyzer finds; slow (a spaCy pass per value), so it only runs when configured."""

    def __init__(self, analyzer: Any, entities: Sequence[str]) -> None:
        self._analyzer = analyzer
        self._entities = tuple(entities)
        self._by_presidio = {PRESIDIO_ENTITIES[entity]: entity for entity in self._entities}

    def run(self, values: pa.Array, found: dict[str, list[int]]) -> pa.Array:
        texts = values.to_pylist()
        changed = False
        for position, text in enumerate(texts):
            if not text or not any(char.isupper() for char in text):
                continue  # names and addresses are capitalised; skipping the rest saves most of the cost
            results = self._analyzer.analyze(text=text, entities=list(self._by_presidio), language="en")
            for result in sorted(results, key=lambda r: r.start, reverse=True):
                entity = self._by_presidio[result.entity_type]
                text = text[: result.start] + f"[{entity.upper()}]" + text[result.end :]
                found.setdefault(entity, []).append(position)
                changed = True
            texts[position] = text
        return pa.array(texts, pa.string()) if changed else values


def ner_problem(entities: Sequence[str], model: str, key: str) -> str | None:
    """Why NER cannot run here, as a sentence naming the key, or None when it can."""
    if importlib.util.find_spec("presidio_analyzer") is None or importlib.util.find_spec("spacy") is None:
        return (
            f"{key} asks for {', '.join(entities)}, which needs the optional NER extra: install"
            " `agentledger[ner]` (Presidio) and a spaCy model, or remove these entities."
        )
    import spacy.util

    if not (spacy.util.is_package(model) or Path(model).is_dir()):
        return (
            f"{key} asks for {', '.join(entities)}, but the spaCy model {model!r} (processors.redaction.ner_model)"
            " is not installed; install it or point ner_model at a model folder."
        )
    return None


def load_ner(entities: Sequence[str], model: str, key: str) -> NerRedactor:
    """Builds the analyzer now, so a broken model fails at startup, not on the first span."""
    problem = ner_problem(entities, model, key)
    if problem is not None:
        raise NerUnavailable(problem)
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    provider = NlpEngineProvider(
        nlp_configuration={"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model}]}
    )
    return NerRedactor(AnalyzerEngine(nlp_engine=provider.create_engine()), entities)
