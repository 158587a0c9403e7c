"""What the audit knows that the agents do not say about themselves (`api.audit` in the YAML): the tool
catalogue per tenant, tuning and overrides of the built-in rules, users' own rules, baselines and budgets.

Read once at start-up; the tool catalogue of a tenant may be replaced at run time through the admin API
(stored in ClickHouse, migration 0009), which then wins over the file's.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping, Sequence
from typing import Final, Literal

from pydantic import Field, field_validator, model_validator

from agentledger.collector.config import FrozenModel

Access = Literal["read", "write", "destructive"]
Severity = Literal["info", "low", "medium", "high", "critical"]
Risk = Literal["low", "medium", "high"]

SEVERITY_ORDER: Final[Mapping[str, int]] = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}

# Key of `tool_catalogue` (and of `budgets`) that applies to every tenant (agent) without its own entry.
ANY: Final = "*"

_JSONPATH_STEP: Final = re.compile(r"\.([A-Za-z_][A-Za-z0-9_\-]*)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


class JsonPathError(ValueError):
    """A path outside the subset the catalogue understands: `$`, `.key`, `['key']`, `[index]`."""


def parse_json_path(path: str) -> tuple[str | int, ...]:
    """The steps of a path in the subset `$.customer.id`, `$['x-y'][0]`; raises JsonPathError."""
    if not path.startswith("$"):
        raise JsonPathError(f"{path!r} does not start with $")
    steps: list[str | int] = []
    position = 1
    while position < len(path):
        match = _JSONPATH_STEP.match(path, position)
        if match is None:
            raise JsonPathError(f"{path!r}: cannot read a step at character {position} (use .key, ['key'] or [index])")
        name, index, quoted, double_quoted = match.groups()
        steps.append(int(index) if index is not None else (name or quoted or double_quoted or ""))
        position = match.end()
    return tuple(steps)


def extract(arguments: JsonValue, steps: Sequence[str | int]) -> JsonValue:
    """The value at the path's steps, or None where the arguments do not have it."""
    value = arguments
    for step in steps:
        if isinstance(value, list) and isinstance(step, int):
            value = value[step] if 0 <= step < len(value) else None
        elif isinstance(value, dict) and isinstance(step, str):
            value = value.get(step)
        else:
            return None
    return value


def scalar_text(value: JsonValue) -> str:
    """A scalar as text the way it is compared with targets and other text; '' for none or containers."""
    if value is None or isinstance(value, (list, dict)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class ToolEntry(FrozenModel):
    """What the organisation knows about a tool whatever the agent declares."""

    # Glob over gen_ai.tool.name (fnmatch: `*`, `?`, `[abc]`); the first matching entry wins.
    tool: str = Field(min_length=1, max_length=256)
    access: Access
    # JSONPath (subset) of the target's id in the call's arguments, and the prefix making it a target
    # reference like the agents' `agentledger.tool.target` (e.g. `crm:customer/`).
    target: str | None = None
    target_prefix: str = ""
    # JSONPath of the money the call moves.
    amount: str | None = None
    requires_human_approval: bool = False
    risk: Risk = "medium"

    @field_validator("target", "amount")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_json_path(value)
            except JsonPathError as problem:
                raise ValueError(str(problem)) from None
        return value

    def matches(self, tool_name: str) -> bool:
        return fnmatch.fnmatchcase(tool_name, self.tool)

    def target_of(self, arguments: JsonValue) -> str:
        if self.target is None:
            return ""
        text = scalar_text(extract(arguments, parse_json_path(self.target)))
        return self.target_prefix + text if text else ""

    def amount_of(self, arguments: JsonValue) -> float | None:
        if self.amount is None:
            return None
        value = extract(arguments, parse_json_path(self.amount))
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return float(str(value)) if value is not None else None
        except ValueError:
            return None


class ToolCatalogue(FrozenModel):
    """One tenant's catalogue: entries in order, the first whose pattern matches a tool name applies."""

    tools: list[ToolEntry] = Field(default_factory=list, max_length=10_000)

    def entry_for(self, tool_name: str) -> ToolEntry | None:
        return next((entry for entry in self.tools if entry.matches(tool_name)), None)


class RuleSetting(FrozenModel):
    """Tuning of a built-in rule."""

    enabled: bool = True
    severity: Severity | None = None


class UserRuleCondition(FrozenModel):
    """Which spans a user rule flags; every condition given must hold."""

    entry_type: str | None = None
    tool: str | None = Field(None, description="Glob over the tool name.")
    # The access after the catalogue is applied (what the audit believes), not only what the agent said.
    access: Access | None = None
    # Span attributes that must have exactly these values.
    attributes: dict[str, str] = Field(default_factory=dict)


class UserRule(FrozenModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.\-]{0,63}$")
    severity: Severity = "medium"
    description: str = Field(min_length=1, max_length=2000)
    version: int = Field(1, ge=1)
    when: UserRuleCondition
    # The finding's sentence; `{tool_name}`, `{name}` and `{target}` are filled from the span.
    message: str = Field(min_length=1, max_length=2000)


class Budget(FrozenModel):
    """The most one run of an agent may use; a limit left out is not checked."""

    max_tokens: int | None = Field(None, ge=0)
    max_tool_calls: int | None = Field(None, ge=0)


class CostRuleConfig(FrozenModel):
    # The agent's baseline: its last this-many runs that started before the run audited.
    baseline_runs: int = Field(20, ge=1, le=1000)
    # Fewer earlier runs than this: no baseline judgement (budgets still apply).
    min_baseline_runs: int = Field(1, ge=1)
    # A run is anomalous above median + mad_factor x 1.4826 x MAD of the baseline's total tokens, and
    # at least min_ratio x the median (a baseline of identical runs has MAD 0).
    mad_factor: float = Field(5.0, gt=0)
    min_ratio: float = Field(3.0, ge=1)
    # Agent id (or "*") -> budget per run.
    budgets: dict[str, Budget] = Field(default_factory=dict)

    def budget_for(self, agent_id: str) -> Budget | None:
        return self.budgets.get(agent_id) or self.budgets.get(ANY)


class AuditConfig(FrozenModel):
    # Tenant (or "*") -> catalogue.
    tool_catalogue: dict[str, ToolCatalogue] = Field(default_factory=dict)
    rules: dict[str, RuleSetting] = Field(default_factory=dict)
    user_rules: list[UserRule] = Field(default_factory=list)
    # The same tool with the same arguments this many times in one run is a loop.
    loop_threshold: int = Field(5, ge=2)
    cost: CostRuleConfig = Field(default_factory=CostRuleConfig)
    # GET /v1/metrics audits at most this many of the period's newest runs (each batch of 500 is a few reads
    # and the rules in Python); the answer says how many it audited.
    metrics_max_runs: int = Field(2000, ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _known_rules(self) -> AuditConfig:
        from agentledger.query_api.rules import BUILTIN_RULE_IDS  # the rule table imports this module

        unknown = sorted(set(self.rules) - set(BUILTIN_RULE_IDS))
        if unknown:
            raise ValueError(f"rules: unknown rule id(s) {', '.join(unknown)}; built-in: {', '.join(BUILTIN_RULE_IDS)}")
        clashes = sorted({rule.id for rule in self.user_rules} & set(BUILTIN_RULE_IDS))
        if clashes:
            raise ValueError(f"user_rules: id(s) {', '.join(clashes)} are built-in rule ids")
        return self

    def catalogue_for(self, tenant: str) -> ToolCatalogue:
        return self.tool_catalogue.get(tenant) or self.tool_catalogue.get(ANY) or ToolCatalogue()


def catalogue_json(catalogue: ToolCatalogue) -> str:
    return json.dumps(catalogue.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
