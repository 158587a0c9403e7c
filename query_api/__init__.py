"""FastAPI query API: incident timelines, lookups and the responder page."""
