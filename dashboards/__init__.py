"""Grafana dashboards (JSON) for the ClickHouse datasource."""
