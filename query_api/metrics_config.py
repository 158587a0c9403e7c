"""Configuration the metrics API prices runs and judges blast radius with (`api.metrics` in the YAML).

Read once at start-up with the rest of the API settings; the API passes it to ClickHouse as query
parameters, so prices and ceilings never become SQL text.
"""

from __future__ import annotations

from pydantic import Field

from agentledger.collector.config import FrozenModel
from agentledger.schema.conventions import AGENTLEDGER_TOOL_AMOUNT

# Key of `ceilings` that applies to agents without an entry of their own.
DEFAULT_CEILING_KEY = "*"


class ModelPrice(FrozenModel):
    # US dollars per million tokens, as providers publish them.
    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)


class BlastRadiusCeiling(FrozenModel):
    """The most one agent may do in one window; a limit left out is not checked."""

    write_tool_calls: int | None = Field(None, ge=0)
    distinct_targets: int | None = Field(None, ge=0)
    money_moved: float | None = Field(None, ge=0)


class BlastRadiusConfig(FrozenModel):
    # Span attribute holding the money a write tool call moved (a number).
    amount_attribute: str = Field(AGENTLEDGER_TOOL_AMOUNT, min_length=1)
    # Agent id -> ceiling; "*" is the ceiling of every other agent.
    ceilings: dict[str, BlastRadiusCeiling] = Field(default_factory=dict)

    def ceiling_for(self, agent_id: str) -> BlastRadiusCeiling | None:
        return self.ceilings.get(agent_id) or self.ceilings.get(DEFAULT_CEILING_KEY)


class MetricsConfig(FrozenModel):
    # Model name (the spans' `model` column) -> price; a model missing here costs 0 and is listed as
    # unpriced in the answer, so a gap in the table is visible rather than a silent under-count.
    pricing: dict[str, ModelPrice] = Field(default_factory=dict)
    # What an hour of a human reviewer's time costs (US dollars); approvals decided by a person add
    # their waiting time at this rate to the cost of a run.
    review_cost_per_hour: float = Field(0.0, ge=0)
    blast_radius: BlastRadiusConfig = Field(default_factory=BlastRadiusConfig)

    def price_arrays(self) -> tuple[list[str], list[float], list[float]]:
        """The price table as three parallel arrays, the shape ClickHouse's transform() takes."""
        models = sorted(self.pricing)
        return (
            models,
            [self.pricing[model].input_per_million for model in models],
            [self.pricing[model].output_per_million for model in models],
        )
