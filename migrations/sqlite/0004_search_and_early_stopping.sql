-- How a sweep makes its configurations (grid, random or bayes), how many
-- it will try and has proposed, and its early-stopping rule (a
-- proto-encoded EarlyStopping; empty or NULL for none).
ALTER TABLE sweeps ADD COLUMN method TEXT NOT NULL DEFAULT 'grid';
ALTER TABLE sweeps ADD COLUMN budget BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sweeps ADD COLUMN proposed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sweeps ADD COLUMN early_stopping BLOB;
-- Sweeps made before: every configuration was made at submission.
UPDATE sweeps SET
    budget = (SELECT COUNT(DISTINCT config_key) FROM trials WHERE trials.sweep_id = sweeps.id),
    proposed = (SELECT COUNT(DISTINCT config_key) FROM trials WHERE trials.sweep_id = sweeps.id);

-- A trial stopped early: the rung its configuration was judged at and why.
ALTER TABLE trials ADD COLUMN stop_epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE trials ADD COLUMN stop_reason TEXT NOT NULL DEFAULT '';
-- The order in which the search proposed the trial's configuration, and by
-- what.
ALTER TABLE trials ADD COLUMN proposal BIGINT NOT NULL DEFAULT 0;
ALTER TABLE trials ADD COLUMN proposed_by TEXT NOT NULL DEFAULT '';
