-- How exactly a sweep's metrics are stored (the sweep file's
-- `metric_precision`): float64, every value as reported, or float32, each
-- rounded to the nearest 32-bit float as it is stored.
ALTER TABLE sweeps ADD COLUMN metric_precision TEXT NOT NULL DEFAULT 'float64';
