"""The query API's store layer: each module owns the reads and writes of one resource and maps rows to
models; the SQL text is in query_api/queries.py, and routers and services never issue SQL themselves."""
