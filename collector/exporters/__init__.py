"""Exporters: deliver columnar span batches to ClickHouse and other destinations."""
