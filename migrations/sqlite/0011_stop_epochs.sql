-- The epochs a sweep file names as its stopping epochs (`stop_epochs`),
-- and a copy of each trial's epoch row at them. Results read at those
-- epochs (`--stop-epochs`, `--epoch`) read the copies, many trials to a
-- page, instead of one scattered epochs page per trial.
CREATE TABLE sweep_stop_epochs (
    sweep_id BIGINT NOT NULL REFERENCES sweeps (id) ON DELETE CASCADE,
    epoch BIGINT NOT NULL,
    PRIMARY KEY (sweep_id, epoch)
);

CREATE TABLE stop_epoch_rows (
    trial_id BIGINT NOT NULL REFERENCES trials (id) ON DELETE CASCADE,
    epoch BIGINT NOT NULL,
    metrics BLOB NOT NULL,
    PRIMARY KEY (trial_id, epoch)
);

-- The copies are made by the database, as each epoch row is inserted, so
-- that every writer keeps them whole. A row skipped as stored before
-- (ON CONFLICT DO NOTHING) is not inserted, so not copied again.
CREATE TRIGGER epochs_stop_copies AFTER INSERT ON epochs
BEGIN
    INSERT INTO stop_epoch_rows (trial_id, epoch, metrics)
    SELECT NEW.trial_id, NEW.epoch, NEW.metrics
    WHERE EXISTS (
        SELECT 1 FROM trials t JOIN sweep_stop_epochs s ON s.sweep_id = t.sweep_id
        WHERE t.id = NEW.trial_id AND s.epoch = NEW.epoch
    )
    ON CONFLICT (trial_id, epoch) DO NOTHING;
END;
