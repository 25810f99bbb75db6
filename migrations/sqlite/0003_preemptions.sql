-- Times a trial was handed back by a preempted worker.
ALTER TABLE trials ADD COLUMN preemptions BIGINT NOT NULL DEFAULT 0;
