-- A conversation (session, thread) groups runs; it is not a run. The collector fills it from the
-- producer's session/thread/conversation id, namespaced by tenant and service.name
-- (`<tenant>/<service>/<id>`, the first two percent-encoded) so two services' thread "1" never meet.
ALTER TABLE spans ADD COLUMN IF NOT EXISTS conversation_id String;
ALTER TABLE spans ADD INDEX IF NOT EXISTS idx_conversation_id conversation_id TYPE bloom_filter(0.01) GRANULARITY 1;
