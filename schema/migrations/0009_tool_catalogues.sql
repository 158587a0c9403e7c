-- Tool catalogues set through the admin API (PUT /v1/admin/tool-catalogue): one JSON document per
-- version per tenant; the newest wins over `api.audit.tool_catalogue` of the config file. Versions are
-- kept (who changed the catalogue, and when, is itself audit evidence).
CREATE TABLE IF NOT EXISTS tool_catalogues
(
    tenant LowCardinality(String),
    updated_at DateTime64(9),
    updated_by String,
    catalogue String CODEC(ZSTD(3))
)
ENGINE = MergeTree
ORDER BY (tenant, updated_at);
