"""OTLP collector: receivers -> processors -> exporters, assembled from one config in pipeline.py."""
