-- Per configuration and epoch, a running summary of every metric over the
-- configuration's trials (see the coordinator's aggregates module for the
-- bytes).
CREATE TABLE curve_points (
    sweep_id BIGINT NOT NULL REFERENCES sweeps (id) ON DELETE CASCADE,
    config_key TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    sums BLOB NOT NULL,
    PRIMARY KEY (sweep_id, config_key, epoch)
);

-- What each batch of stored epochs adds to the points, written in the
-- batch's transaction (an insert, so that batches never wait for each
-- other), folded into curve_points by the coordinator every second and
-- read beside them until then.
CREATE TABLE curve_deltas (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sweep_id BIGINT NOT NULL REFERENCES sweeps (id) ON DELETE CASCADE,
    config_key TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    sums BLOB NOT NULL
);
CREATE INDEX curve_deltas_sweep ON curve_deltas (sweep_id);

-- Sweeps made before this migration: the coordinator builds their points
-- from the stored epochs when it connects, one sweep at a time.
CREATE TABLE curve_backfill (
    sweep_id BIGINT PRIMARY KEY REFERENCES sweeps (id) ON DELETE CASCADE
);
INSERT INTO curve_backfill (sweep_id) SELECT id FROM sweeps;
