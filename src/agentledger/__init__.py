"""agentledger: an OpenTelemetry-native observability and audit pipeline for AI agent fleets."""

__version__ = "0.1.0"
