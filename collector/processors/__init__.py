"""Processors: transform columnar span batches between receivers and exporters."""
