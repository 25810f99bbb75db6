-- Every epoch report updates its trial (lease expiry, epochs done, when it
-- changed). Without an index on any of those columns, and with room left
-- in each page, Postgres makes those updates in place (heap-only tuples):
-- no new index entries and no index bloat per report, which under
-- hundreds of workers is most of the database's work. Watch finds changed
-- trials by scanning the trials instead (their rows are small).
DROP INDEX trials_updated;
ALTER TABLE trials SET (fillfactor = 70);
