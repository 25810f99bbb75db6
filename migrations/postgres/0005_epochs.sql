-- Every metric of one epoch of one trial in one row (see the coordinator's
-- packed module for the bytes). The rows of the old metrics table are moved
-- here by the coordinator when it connects, and that table is then dropped.
CREATE TABLE epochs (
    trial_id BIGINT NOT NULL REFERENCES trials (id) ON DELETE CASCADE,
    epoch BIGINT NOT NULL,
    metrics BYTEA NOT NULL,
    PRIMARY KEY (trial_id, epoch)
);
