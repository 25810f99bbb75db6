//! Per configuration and epoch, a running summary of every metric over the
//! configuration's trials, kept as epochs arrive, so that learning curves
//! read one small row per configuration and epoch instead of every trial's.
//! Each batch of stored epochs records what it adds as a delta row (an
//! insert, never a wait on another batch); every second the coordinator
//! folds the deltas into the points, and readers add the deltas not yet
//! folded.
//!
//! Each summary is Chan et al.'s pairwise form of Welford's update (count,
//! mean, sum of squared deviations), which stays accurate where a sum of
//! squares would cancel; it equals the two-pass mean and sample standard
//! deviation of [`crate::stats`] to within rounding (about 1e-15 relative),
//! not bit for bit: results, compare and stopping epochs read the stored
//! values themselves.
//!
//! The bytes: for each slot of [`packed::slots`], in order, the count of
//! values that are numbers (`u32`), the count that are NaN (`u32`), their
//! mean and their sum of squared deviations (`f64`), all little-endian.

use proto::metrics::MetricValue;
use proto::v1 as pb;

use crate::packed;

/// Bytes per slot.
pub const SLOT_BYTES: usize = 24;

/// The running summary of one slot.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Running {
    /// Values that are numbers.
    pub n: u32,
    /// Values that are NaN.
    pub nan: u32,
    /// Mean of the numbers (0 without any).
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
}

impl Running {
    /// Takes in one value.
    pub fn add(&mut self, value: f64) {
        if value.is_nan() {
            self.nan += 1;
            return;
        }
        self.merge(&Running {
            n: 1,
            nan: 0,
            mean: value,
            m2: 0.0,
        });
    }

    /// Takes in another summary (of other values).
    pub fn merge(&mut self, other: &Running) {
        self.nan += other.nan;
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            (self.n, self.mean, self.m2) = (other.n, other.mean, other.m2);
            return;
        }
        let (na, nb) = (f64::from(self.n), f64::from(other.n));
        let n = na + nb;
        let delta = other.mean - self.mean;
        self.mean += delta * nb / n;
        self.m2 += other.m2 + delta * delta * na * nb / n;
        self.n += other.n;
    }

    /// As results report it: n, NaN count, mean, sample std (ddof 1); NaN
    /// where undefined.
    pub fn summary(&self) -> pb::Summary {
        pb::Summary {
            n: self.n,
            nan: self.nan,
            mean: if self.n == 0 { f64::NAN } else { self.mean },
            std: if self.n < 2 {
                f64::NAN
            } else {
                (self.m2 / f64::from(self.n - 1)).sqrt()
            },
        }
    }

    /// One slot's bytes.
    pub fn to_bytes(self) -> [u8; SLOT_BYTES] {
        let mut out = [0u8; SLOT_BYTES];
        out[0..4].copy_from_slice(&self.n.to_le_bytes());
        out[4..8].copy_from_slice(&self.nan.to_le_bytes());
        out[8..16].copy_from_slice(&self.mean.to_le_bytes());
        out[16..24].copy_from_slice(&self.m2.to_le_bytes());
        out
    }

    /// One slot from its bytes; None unless exactly [`SLOT_BYTES`].
    pub fn from_bytes(bytes: &[u8]) -> Option<Running> {
        let bytes: &[u8; SLOT_BYTES] = bytes.try_into().ok()?;
        let word = |i: usize| bytes[i..i + 8].try_into().map(f64::from_le_bytes).ok();
        Some(Running {
            n: u32::from_le_bytes(bytes[0..4].try_into().ok()?),
            nan: u32::from_le_bytes(bytes[4..8].try_into().ok()?),
            mean: word(8)?,
            m2: word(16)?,
        })
    }
}

/// The running summaries of every slot of one configuration's epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Point(Vec<Running>);

impl Default for Point {
    fn default() -> Self {
        Point(vec![Running::default(); packed::slots().count()])
    }
}

impl Point {
    /// Takes in one trial's metrics of the epoch.
    pub fn add(&mut self, values: &[MetricValue]) {
        for v in values {
            self.0[packed::slot_of(v.split, v.metric)].add(v.value);
        }
    }

    /// Takes in the summaries of other trials.
    pub fn merge(&mut self, other: &Point) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            a.merge(b);
        }
    }

    /// The summary of one slot.
    pub fn slot(&self, slot: usize) -> Running {
        self.0[slot]
    }

    /// The stored bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|r| r.to_bytes()).collect()
    }

    /// From stored bytes; None when they are not a point's.
    pub fn from_bytes(bytes: &[u8]) -> Option<Point> {
        let point = Point::default();
        if bytes.len() != point.0.len() * SLOT_BYTES {
            return None;
        }
        bytes
            .chunks_exact(SLOT_BYTES)
            .map(Running::from_bytes)
            .collect::<Option<Vec<_>>>()
            .map(Point)
    }
}

/// Where slot `slot` starts in a point's bytes, counted from 1 as SQL's
/// `substr` counts.
pub fn sql_offset(slot: usize) -> usize {
    1 + slot * SLOT_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::summarize_present;

    fn running(values: &[f64]) -> Running {
        let mut r = Running::default();
        for v in values {
            r.add(*v);
        }
        r
    }

    #[test]
    fn equals_the_two_pass_summary_to_rounding() {
        // Close together, far from zero: where a sum of squares cancels.
        let values = [
            1_000.000_002,
            1_000.000_003,
            f64::NAN,
            1_000.000_001,
            1_000.000_002_5,
        ];
        let (s, nan) = summarize_present(&values);
        let r = running(&values).summary();
        assert_eq!((r.n as usize, r.nan as usize), (s.n, nan));
        assert!((r.mean - s.mean).abs() <= 1e-15 * s.mean.abs());
        // The std's error grows with |mean| / std (here 1e9): it stays
        // within a few roundings of the mean's size.
        let bound = 8.0 * f64::EPSILON * values.len() as f64 * s.mean.abs();
        assert!((r.std - s.std).abs() <= bound, "{} {}", r.std, s.std);
    }

    #[test]
    fn merging_halves_equals_adding_all() {
        let values: Vec<f64> = (0..50).map(|i| (f64::from(i) * 0.37).sin()).collect();
        let mut a = running(&values[..17]);
        a.merge(&running(&values[17..]));
        let all = running(&values);
        assert_eq!(a.n, all.n);
        assert!((a.mean - all.mean).abs() < 1e-15);
        assert!((a.m2 - all.m2).abs() < 1e-12);
    }

    #[test]
    fn undefined_where_results_are() {
        assert!(running(&[]).summary().mean.is_nan());
        assert!(running(&[f64::NAN]).summary().mean.is_nan());
        let one = running(&[0.5]).summary();
        assert_eq!(one.mean, 0.5);
        assert!(one.std.is_nan());
    }

    #[test]
    fn bytes_round_trip_and_refuse_other_lengths() {
        let mut p = Point::default();
        p.add(&[MetricValue {
            split: proto::metrics::Split::Test,
            metric: proto::metrics::Metric::BoardAccuracy,
            value: 0.25,
        }]);
        let bytes = p.to_bytes();
        assert_eq!(Point::from_bytes(&bytes), Some(p.clone()));
        assert_eq!(Point::from_bytes(&bytes[1..]), None);
        let slot = packed::slot_of(
            proto::metrics::Split::Test,
            proto::metrics::Metric::BoardAccuracy,
        );
        let at = sql_offset(slot) - 1;
        assert_eq!(
            Running::from_bytes(&bytes[at..at + SLOT_BYTES]),
            Some(p.slot(slot))
        );
    }
}
