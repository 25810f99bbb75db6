-- Sweeps, their trials, per-epoch metrics, checkpoints and workers.
CREATE TABLE sweeps (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    yaml TEXT NOT NULL,
    metric TEXT NOT NULL,
    metric_split TEXT NOT NULL,
    maximize BIGINT NOT NULL,
    cancelled BIGINT NOT NULL DEFAULT 0,
    created_ms BIGINT NOT NULL
);

CREATE TABLE workers (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    device TEXT NOT NULL,
    slots BIGINT NOT NULL,
    registered_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL
);

CREATE TABLE trials (
    id BIGSERIAL PRIMARY KEY,
    sweep_id BIGINT NOT NULL REFERENCES sweeps (id) ON DELETE CASCADE,
    config BYTEA NOT NULL,
    config_key TEXT NOT NULL,
    repeat_index BIGINT NOT NULL,
    seed BIGINT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    epochs_done BIGINT NOT NULL DEFAULT 0,
    lease_id TEXT,
    worker_id BIGINT REFERENCES workers (id),
    lease_expires_ms BIGINT,
    error TEXT NOT NULL DEFAULT '',
    created_ms BIGINT NOT NULL,
    started_ms BIGINT,
    finished_ms BIGINT,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX trials_queue ON trials (status, id);
CREATE INDEX trials_by_sweep ON trials (sweep_id, config_key);
CREATE INDEX trials_updated ON trials (updated_ms);

-- NaN is stored as NULL (SQLite cannot hold NaN), on both backends.
CREATE TABLE metrics (
    trial_id BIGINT NOT NULL REFERENCES trials (id) ON DELETE CASCADE,
    epoch BIGINT NOT NULL,
    split TEXT NOT NULL,
    metric TEXT NOT NULL,
    value DOUBLE PRECISION,
    PRIMARY KEY (trial_id, epoch, split, metric)
);
CREATE INDEX metrics_by_epoch ON metrics (epoch, split, metric);

CREATE TABLE checkpoints (
    trial_id BIGINT PRIMARY KEY REFERENCES trials (id) ON DELETE CASCADE,
    epoch BIGINT NOT NULL,
    data BYTEA NOT NULL,
    created_ms BIGINT NOT NULL
);
