"""OTLP receivers: decode requests into columnar span batches."""
