-- Each trial's newest stored epoch, a copy of its row in epochs. Results
-- at the last epoch (the usual reading) read one sweep's trials here,
-- tens of them to a page, instead of one scattered epochs page per trial.
CREATE TABLE last_epochs (
    trial_id BIGINT PRIMARY KEY REFERENCES trials (id) ON DELETE CASCADE,
    epoch BIGINT NOT NULL,
    metrics BYTEA NOT NULL
);

-- Databases made before this migration: the coordinator fills last_epochs
-- from the stored epochs when it connects (after moving any older rows),
-- once.
CREATE TABLE last_epochs_backfill (pending INTEGER NOT NULL);
INSERT INTO last_epochs_backfill (pending) VALUES (1);
