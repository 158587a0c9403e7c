"""Audits runs as stored: reads each run's audit context (the tenant's tool catalogue, the agent's cost
baseline) and runs the rules, for one run or for a page of runs with a fixed number of reads."""

from __future__ import annotations

from collections.abc import Sequence

from clickhouse_connect.driver.client import Client

from agentledger.query_api.audit import AuditContext, SpanFact, active_rules, audit_run, link_writes
from agentledger.query_api.audit_config import SEVERITY_ORDER, AuditConfig, ToolCatalogue
from agentledger.query_api.models import Audit, LinkedWrite
from agentledger.query_api.read_pool import Reads
from agentledger.query_api.store import catalogue as catalogue_store
from agentledger.query_api.store import runs as run_store


def tool_catalogue(client: Client, tenant: str, config: AuditConfig) -> ToolCatalogue:
    """The tenant's catalogue: as last set through the admin API, else the config file's."""
    stored = catalogue_store.load_catalogue(client, tenant)
    return stored.catalogue if stored is not None else config.catalogue_for(tenant)


def load_audit(
    reads: Reads, tenant: str, run_id: str, config: AuditConfig | None = None
) -> tuple[list[SpanFact], list[LinkedWrite], Audit] | None:
    """The run's facts, linked writes and audit, or None for an unknown run."""
    audits = audit_runs(reads, tenant, [run_id], config)
    return audits.get(run_id)


def audit_runs(
    reads: Reads, tenant: str, run_ids: Sequence[str], config: AuditConfig | None = None
) -> dict[str, tuple[list[SpanFact], list[LinkedWrite], Audit]]:
    """Audits of many runs in six reads whatever their number (locations, spans, writes, the baseline's
    two, catalogue); runs the index does not know are left out. The writes and the catalogue need only
    the run ids, so they are read beside the locations; the spans and the baseline once these are known
    (query_api/read_pool.py)."""
    config = config or AuditConfig()
    if not run_ids:
        return {}
    found = reads.submit(lambda client: run_store.locate_runs(client, tenant, run_ids))
    run_writes = reads.submit(lambda client: run_store.load_runs_writes(client, tenant, list(run_ids)))
    tenant_catalogue = reads.submit(lambda client: tool_catalogue(client, tenant, config))
    locations = found.result()
    if not locations:
        return {}
    span_facts = reads.submit(lambda client: run_store.load_runs_span_facts(client, tenant, locations))
    run_baselines = reads.submit(
        lambda client: run_store.load_token_baselines(client, tenant, locations, config.cost.baseline_runs)
    )
    facts, writes, catalogue = span_facts.result(), run_writes.result(), tenant_catalogue.result()
    baselines = run_baselines.result()
    rules = active_rules(config)
    audited: dict[str, tuple[list[SpanFact], list[LinkedWrite], Audit]] = {}
    for location in locations:
        spans = facts.get(location.run_id, [])
        linked = link_writes(writes.get(location.run_id, []), spans)
        context = AuditContext(config, catalogue, baselines.get(location.run_id, []), rules)
        audited[location.run_id] = (spans, linked, audit_run(location.run_id, spans, linked, context))
    return audited


def matches(audit: Audit, has_violations: bool | None, rule: str, severity: str) -> bool:
    """Whether a run's audit passes the listing's finding filters (severity: at least this severe)."""
    findings = [
        f
        for f in audit.findings
        if (not rule or f.rule == rule) and (not severity or SEVERITY_ORDER[f.severity] >= SEVERITY_ORDER[severity])
    ]
    if has_violations is False:
        return not audit.findings
    if has_violations is None and not rule and not severity:
        return True
    return bool(findings)


def max_severity(audit: Audit) -> str | None:
    return max((f.severity for f in audit.findings), key=SEVERITY_ORDER.__getitem__, default=None)
