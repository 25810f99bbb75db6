//! One epoch's metrics as one stored value: a row per trial and epoch
//! instead of a row per metric (23 times fewer rows, about 15 times less
//! space).
//!
//! The bytes: a little-endian `u32` mask whose bit `i` says whether
//! [`SLOTS`]`[i]` was reported, then each reported value as a little-endian
//! `f64`, in slot order. NaN (an undefined metric) is stored as NaN; a
//! metric not reported is absent from the mask. The slots are every
//! (split, metric) pair of the vocabulary, train then test, each in
//! [`Metric::of_split`] order; a new metric must be added at the end.

use std::sync::LazyLock;

use proto::metrics::{Metric, MetricValue, Split};

/// Every (split, metric) pair, in slot order: made once, as every row read
/// looks its slots up.
static SLOTS: LazyLock<Vec<(Split, Metric)>> = LazyLock::new(|| {
    Split::ALL
        .into_iter()
        .flat_map(|split| Metric::of_split(split).map(move |metric| (split, metric)))
        .collect()
});

/// The (split, metric) of each bit of the mask, in order.
pub fn slots() -> impl Iterator<Item = (Split, Metric)> {
    SLOTS.iter().copied()
}

/// The index of (split, metric) in [`slots`].
pub fn slot_of(split: Split, metric: Metric) -> usize {
    slots()
        .position(|s| s == (split, metric))
        .expect("every metric of a split has a slot")
}

/// Packs one epoch's metrics (each at most once).
pub fn pack(values: &[MetricValue]) -> Vec<u8> {
    let mut by_slot: Vec<(usize, f64)> = values
        .iter()
        .map(|v| (slot_of(v.split, v.metric), v.value))
        .collect();
    by_slot.sort_by_key(|(slot, _)| *slot);
    let mask = by_slot.iter().fold(0u32, |m, (slot, _)| m | 1 << slot);
    let mut out = Vec::with_capacity(4 + 8 * by_slot.len());
    out.extend_from_slice(&mask.to_le_bytes());
    for (_, value) in by_slot {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out
}

/// The mask of packed bytes and the values after it; None when the bytes
/// are not a packing (a wrong length, or a bit with no slot).
pub(crate) fn split_mask(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (mask, rest) = bytes.split_first_chunk::<4>()?;
    let mask = u32::from_le_bytes(*mask);
    (mask >> SLOTS.len() == 0 && rest.len() == 8 * mask.count_ones() as usize)
        .then_some((mask, rest))
}

/// The value of one slot in packed bytes: Some(None) where it was not
/// reported, None when the bytes are not a packing.
pub fn value_of(bytes: &[u8], slot: usize) -> Option<Option<f64>> {
    let (mask, rest) = split_mask(bytes)?;
    Some(slot_value(mask, rest, slot))
}

/// The value of `slot` in the values after a checked mask; None where it
/// was not reported.
fn slot_value(mask: u32, values: &[u8], slot: usize) -> Option<f64> {
    if mask & (1 << slot) == 0 {
        return None;
    }
    let at = 8 * (mask & ((1 << slot) - 1)).count_ones() as usize;
    let value: [u8; 8] = values[at..at + 8].try_into().ok()?;
    Some(f64::from_le_bytes(value))
}

/// One epoch's packed metrics, checked to be a packing when read: kept as
/// bytes, each value read where it lies when wanted (a sweep's results
/// hold hundreds of thousands of these).
#[derive(Debug, Clone, PartialEq)]
pub struct Packed(Vec<u8>);

impl Packed {
    /// The bytes, if they are a packing.
    pub fn new(bytes: Vec<u8>) -> Option<Self> {
        split_mask(&bytes)?;
        Some(Packed(bytes))
    }

    /// The value of one slot (NaN where undefined); None where it was not
    /// reported.
    pub fn get(&self, slot: usize) -> Option<f64> {
        // Checked when made: only the mask is read again, not checked.
        let (mask, values) = self.0.split_first_chunk::<4>()?;
        slot_value(u32::from_le_bytes(*mask), values, slot)
    }
}

/// The metrics of packed bytes, in slot order; None when the bytes are not
/// a packing (a wrong length, or a bit with no slot).
pub fn unpack(bytes: &[u8]) -> Option<Vec<MetricValue>> {
    let (mask, mut rest) = split_mask(bytes)?;
    let mut out = Vec::with_capacity(mask.count_ones() as usize);
    for (i, &(split, metric)) in SLOTS.iter().enumerate() {
        if mask & (1 << i) != 0 {
            let (value, tail) = rest.split_first_chunk::<8>()?;
            rest = tail;
            out.push(MetricValue {
                split,
                metric,
                value: f64::from_le_bytes(*value),
            });
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_is_read_where_unpacking_finds_it() {
        let values: Vec<MetricValue> = [
            (Split::Test, Metric::BoardAccuracy, 0.25),
            (Split::Train, Metric::DiscLoss, f64::NAN),
            (Split::Test, Metric::SpawnValidity, 0.75),
        ]
        .into_iter()
        .map(|(split, metric, value)| MetricValue {
            split,
            metric,
            value,
        })
        .collect();
        let bytes = pack(&values);
        for (slot, (split, metric)) in slots().enumerate() {
            let want = values
                .iter()
                .find(|v| (v.split, v.metric) == (split, metric))
                .map(|v| v.value);
            let got = value_of(&bytes, slot).unwrap();
            assert_eq!(
                got.map(f64::to_bits),
                want.map(f64::to_bits),
                "{split} {metric}"
            );
            let kept = Packed::new(bytes.clone()).unwrap().get(slot);
            assert_eq!(kept.map(f64::to_bits), want.map(f64::to_bits));
        }
        assert_eq!(value_of(&bytes[..bytes.len() - 1], 0), None);
        assert_eq!(Packed::new(bytes[..bytes.len() - 1].to_vec()), None);
    }

    #[test]
    fn the_slots_keep_their_order() {
        // Stored data depends on it: add new metrics at the end only.
        let names: Vec<String> = slots().map(|(s, m)| format!("{s} {m}")).collect();
        assert_eq!(
            names,
            [
                "train disc_loss",
                "train gen_loss",
                "train disc_accuracy",
                "train cell_accuracy",
                "train board_accuracy",
                "train spawn_recall",
                "train spawn_precision",
                "train spawn_validity",
                "train step_disc_loss",
                "train step_gen_loss",
                "train gen_zero_grads",
                "train disc_zero_grads",
                "train epoch_seconds",
                "train train_seconds",
                "train items_per_second",
                "test disc_loss",
                "test gen_loss",
                "test disc_accuracy",
                "test cell_accuracy",
                "test board_accuracy",
                "test spawn_recall",
                "test spawn_precision",
                "test spawn_validity",
            ]
        );
    }

    #[test]
    fn packing_keeps_every_bit_and_what_was_absent() {
        let all: Vec<MetricValue> = slots()
            .enumerate()
            .map(|(i, (split, metric))| MetricValue {
                split,
                metric,
                value: match i {
                    3 => f64::NAN,
                    4 => -0.0,
                    5 => f64::MIN_POSITIVE,
                    _ => 1.0 / (i as f64 + 3.0),
                },
            })
            .collect();
        let bytes = pack(&all);
        assert_eq!(bytes.len(), 4 + 8 * 23);
        let back = unpack(&bytes).unwrap();
        assert_eq!(back.len(), all.len());
        for (a, b) in all.iter().zip(&back) {
            assert_eq!((a.split, a.metric), (b.split, b.metric));
            assert_eq!(a.value.to_bits(), b.value.to_bits());
        }
        // A subset, given in any order, comes back in slot order.
        let some = vec![all[20], all[2]];
        assert_eq!(unpack(&pack(&some)).unwrap(), vec![all[2], all[20]]);
        assert_eq!(unpack(&pack(&[])).unwrap(), vec![]);
    }

    #[test]
    fn bytes_that_are_no_packing_are_refused() {
        let bytes = pack(&[MetricValue {
            split: Split::Test,
            metric: Metric::BoardAccuracy,
            value: 0.5,
        }]);
        assert_eq!(unpack(&bytes[..bytes.len() - 1]), None);
        assert_eq!(unpack(&bytes[..3]), None);
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(unpack(&extra), None);
        let mut unknown_bit = bytes;
        unknown_bit[3] |= 0x80;
        assert_eq!(unpack(&unknown_bit), None);
    }
}
