"""Parses the collector sections of a config document into typed component configs, all validated up front.

`receivers`, `processors` and `exporters` map `type[/name]` ids to settings; `service.pipelines.traces`
names which are used; `spool` configures the durable spool.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from agentledger.collector.components import EXPORTERS, PROCESSORS, RECEIVERS, component_type
from agentledger.collector.config import (
    ConfigError,
    ExporterConfig,
    FrozenModel,
    OtlpReceiverConfig,
    PipelineSpec,
    ServiceConfig,
    SpoolConfig,
    describe_validation_error,
)

DEFAULT_COMPONENTS: Mapping[str, Mapping[str, Any]] = {
    "receivers": {"otlp": {}},
    "processors": {"normalize": {}, "redaction": {}},
    "exporters": {"clickhouse": {}},
}


@dataclass(frozen=True)
class CollectorConfig:
    receivers: Mapping[str, OtlpReceiverConfig] = field(default_factory=lambda: {"otlp": OtlpReceiverConfig()})
    processors: Mapping[str, FrozenModel] = field(
        default_factory=lambda: {name: PROCESSORS[name].config_model() for name in ("normalize", "redaction")}
    )
    exporters: Mapping[str, ExporterConfig] = field(
        default_factory=lambda: {"clickhouse": EXPORTERS["clickhouse"].config_model()}
    )
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    pipeline: PipelineSpec = field(default_factory=PipelineSpec)

    @property
    def receiver(self) -> OtlpReceiverConfig:
        """The one OTLP receiver of the traces pipeline."""
        return self.receivers[self.pipeline.receivers[0]]


def _validate(model: type[FrozenModel], raw: object, path: str) -> FrozenModel:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path} must be a mapping of settings")
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(path, error)) from None


def _section(document: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """The section's components over the default ones: defining `normalize` must not silently drop
    `redaction`. A default component is left out of the pipeline by `service.pipelines.traces` only."""
    raw = document.get(name)
    if raw is None:
        return DEFAULT_COMPONENTS[name]
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{name} must be a mapping of component ids to settings")
    return {**DEFAULT_COMPONENTS[name], **raw}


def parse_collector_config(document: Mapping[str, Any]) -> CollectorConfig:
    receivers: dict[str, OtlpReceiverConfig] = {}
    for component_id, raw in _section(document, "receivers").items():
        kind = component_type(str(component_id))
        if kind not in RECEIVERS:
            raise ConfigError(
                f"receivers.{component_id}: unknown receiver type {kind!r} (known: {', '.join(RECEIVERS)})"
            )
        config = _validate(RECEIVERS[kind], raw, f"receivers.{component_id}")
        assert isinstance(config, OtlpReceiverConfig)
        receivers[str(component_id)] = config
    processors = {}
    for component_id, raw in _section(document, "processors").items():
        kind = component_type(str(component_id))
        if kind not in PROCESSORS:
            known = ", ".join(sorted(PROCESSORS)) or "none"
            raise ConfigError(f"processors.{component_id}: unknown processor type {kind!r} (known: {known})")
        processors[str(component_id)] = _validate(PROCESSORS[kind].config_model, raw, f"processors.{component_id}")
    exporters: dict[str, ExporterConfig] = {}
    for component_id, raw in _section(document, "exporters").items():
        kind = component_type(str(component_id))
        if kind not in EXPORTERS:
            known = ", ".join(sorted(EXPORTERS))
            raise ConfigError(f"exporters.{component_id}: unknown exporter type {kind!r} (known: {known})")
        exporter_config = _validate(EXPORTERS[kind].config_model, raw, f"exporters.{component_id}")
        assert isinstance(exporter_config, ExporterConfig)
        exporters[str(component_id)] = exporter_config
    spool = _validate(SpoolConfig, document.get("spool"), "spool")
    service = _validate(ServiceConfig, document.get("service"), "service")
    assert isinstance(spool, SpoolConfig) and isinstance(service, ServiceConfig)
    pipeline = service.pipelines.traces
    _check_pipeline(pipeline, receivers, processors, exporters)
    return CollectorConfig(receivers, processors, exporters, spool, pipeline)


def _check_pipeline(
    pipeline: PipelineSpec,
    receivers: Mapping[str, object],
    processors: Mapping[str, object],
    exporters: Mapping[str, object],
) -> None:
    where = "service.pipelines.traces"
    if len(pipeline.receivers) != 1:
        raise ConfigError(f"{where}.receivers must name exactly one receiver (the OTLP receiver)")
    for section, names, defined in (
        ("receivers", pipeline.receivers, receivers),
        ("processors", pipeline.processors, processors),
        ("exporters", pipeline.exporters, exporters),
    ):
        for name in names:
            if name not in defined:
                raise ConfigError(f"{where}.{section} names {name!r}, which is not defined under `{section}:`")
        if len(set(names)) != len(names):
            raise ConfigError(f"{where}.{section} names a component twice")
    if not pipeline.exporters:
        raise ConfigError(f"{where}.exporters must name at least one exporter")
