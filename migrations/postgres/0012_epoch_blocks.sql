-- The epochs of trials that will not run again, folded by the coordinator
-- from epochs into blocks of up to eight (see the coordinator's blocks
-- module for the bytes): one row header and one index entry for eight
-- epochs instead of one each, and values a 32-bit float holds exactly in
-- half the bytes. A block holds epochs first_epoch .. first_epoch +
-- epoch_count - 1 of its trial; an epoch is in epochs or in a block,
-- never both.
CREATE TABLE epoch_blocks (
    trial_id BIGINT NOT NULL REFERENCES trials (id) ON DELETE CASCADE,
    first_epoch BIGINT NOT NULL,
    epoch_count BIGINT NOT NULL,
    metrics BYTEA NOT NULL,
    PRIMARY KEY (trial_id, first_epoch)
);

-- 1 once a trial's epochs are folded. Every trial made before this
-- migration is 0: their epochs are folded in the background, which is how
-- existing databases move to blocks.
ALTER TABLE trials ADD COLUMN epochs_folded BIGINT NOT NULL DEFAULT 0;
CREATE INDEX trials_to_fold ON trials (id)
    WHERE epochs_folded = 0 AND status IN ('completed', 'failed', 'cancelled', 'stopped');
