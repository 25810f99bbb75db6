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
    metrics BYTEA NOT NULL,
    PRIMARY KEY (trial_id, epoch)
);

-- The copies are made by the database, in the statement that stores the
-- epochs, so that every writer (any coordinator version, any replica)
-- keeps them whole. Only rows the statement inserted are in new_epochs
-- (an epoch stored before is not copied again).
CREATE FUNCTION copy_stop_epochs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stop_epoch_rows (trial_id, epoch, metrics)
    SELECT n.trial_id, n.epoch, n.metrics FROM new_epochs n
    JOIN trials t ON t.id = n.trial_id
    JOIN sweep_stop_epochs s ON s.sweep_id = t.sweep_id AND s.epoch = n.epoch
    ON CONFLICT (trial_id, epoch) DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER epochs_stop_copies AFTER INSERT ON epochs
REFERENCING NEW TABLE AS new_epochs
FOR EACH STATEMENT EXECUTE FUNCTION copy_stop_epochs();
