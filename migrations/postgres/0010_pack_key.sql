-- Trials that can train in one pack (the same batch size and dataset)
-- share a pack key; a worker training a pack asks for its key's trials
-- first. Trials queued before this migration get theirs when the
-- coordinator connects; until then they are leased as before.
ALTER TABLE trials ADD COLUMN pack_key TEXT NOT NULL DEFAULT '';
CREATE INDEX trials_pack_key ON trials (status, pack_key, id);
