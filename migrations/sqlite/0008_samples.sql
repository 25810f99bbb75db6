-- Per trial, the latest predictions on the sample items that a worker sent
-- with a checkpoint or at the end (a prost-encoded BoardSamples).
CREATE TABLE samples (
    trial_id BIGINT PRIMARY KEY REFERENCES trials (id) ON DELETE CASCADE,
    epoch BIGINT NOT NULL,
    data BLOB NOT NULL
);
