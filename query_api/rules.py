"""The audit's built-in rules as data: id, severity, description and version of each.

The evaluation of each rule is a function in audit.py keyed by the rule's id; bumping a rule's logic
bumps its version here, so a finding stored or pushed elsewhere names the logic that made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    description: str
    version: int = 1
    # "builtin" or "user" (from `api.audit.user_rules`).
    origin: str = "builtin"


BUILTIN_RULES: Final = (
    Rule("unaccounted_write", "high",
         "A downstream write that no tool call of the run accounts for by call id or write reference; a link made"
         " only by target and time (to a call no other write names) is shown as inferred, never as proof.", 2),
    Rule("unconfirmed_write_call", "medium",
         "A write or destructive tool call that did not fail with no downstream write confirming it."),
    Rule("missing_approval", "high",
         "A write or destructive tool call without the human approval its autonomy level or the tool catalogue"
         " requires.", 2),
    Rule("untrusted_influence", "high",
         "A write or destructive call preceded by untrusted input (user-provided, retrieved, external tool output)"
         " whose target is neither the run's subject nor in trusted input, not cleared by a human approval (a"
         " policy allow is no clearance).", 2),
    Rule("content_flow", "high",
         "Argument values of a write (ids, amounts, e-mail addresses, URLs) that occur in untrusted text but not in"
         " the trusted task or trusted inputs, unless a human approved exactly those arguments."),
    Rule("target_mismatch", "high",
         "The entity a write touches differs from the run's subject (or requester) of the same kind."),
    Rule("policy_violated", "critical",
         "A policy decided block (or deny) and the same action happened anyway."),
    Rule("approval_mismatch", "high",
         "The executed arguments differ from the approved ones, the call ran after a rejection, or the approval"
         " was given after the call."),
    Rule("approval_rejected", "info",
         "A human rejected a tool call; recorded so the rejection is part of the story even when nothing ran."),
    Rule("access_mismatch", "medium",
         "The agent declared a tool's access (read, write, destructive) differently than the tool catalogue."),
    Rule("cost_anomaly", "medium",
         "A run's tokens far above the agent's own recent baseline (median + MAD over its last runs) or above"
         " its configured budget."),
    Rule("loop", "medium", "The same tool with the same arguments called many times in one run."),
)  # fmt: skip

BUILTIN_RULE_IDS: Final = tuple(rule.id for rule in BUILTIN_RULES)
