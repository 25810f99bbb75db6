//! A finished trial's epochs, [`EPOCHS`] to a stored row: the per-epoch
//! rows of a trial that will not run again are folded into blocks, which
//! saves each epoch its own row's header and index entry (about 80 of the
//! 270 bytes an epoch took as a row). Lossless: every packing (see
//! [`crate::packed`]) comes back bit for bit.
//!
//! A block holds epochs `first..first + n` of one trial, `first` one more
//! than a multiple of [`EPOCHS`] (epochs 1-8, 9-16, ...). Its bytes are
//! each epoch in turn, all of one width: the packing's little-endian `u32`
//! mask of reported slots, then every slot's value, zero where not
//! reported. The values are little-endian `f64`s, or, where every value of
//! the block is a 32-bit float exactly (as all are in a sweep that stores
//! `float32`), little-endian `f32`s: half the bytes, nothing lost. A
//! block's width is its length over its count of epochs, so one epoch is
//! found by its place alone, and a read of one epoch of many trials has
//! the database cut it out ([`slice_sql`]) instead of sending whole blocks.

use crate::packed;

/// Epochs a block holds at most. Eight full epochs stay under the size at
/// which Postgres starts compressing or moving a row out of line (2 KB),
/// so a block is read with its row.
pub const EPOCHS: u32 = 8;

/// The bytes each value of a block takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Width {
    /// `f64`.
    Wide,
    /// `f32`, where every value of the block is one exactly.
    Narrow,
}

impl Width {
    fn value_bytes(self) -> usize {
        match self {
            Width::Wide => 8,
            Width::Narrow => 4,
        }
    }

    /// The bytes of one epoch.
    fn entry_bytes(self) -> usize {
        4 + self.value_bytes() * packed::slots().count()
    }

    /// The width whose epochs take `bytes` each.
    fn of_entry(bytes: usize) -> Option<Self> {
        [Width::Wide, Width::Narrow]
            .into_iter()
            .find(|w| w.entry_bytes() == bytes)
    }
}

/// `value` as a 32-bit float, when it is one exactly (NaN only as
/// `f64::NAN`, so that its bits come back too).
fn narrow(value: f64) -> Option<f32> {
    if value.is_nan() {
        return (value.to_bits() == f64::NAN.to_bits()).then_some(f32::NAN);
    }
    let narrow = value as f32;
    (f64::from(narrow).to_bits() == value.to_bits()).then_some(narrow)
}

/// The value [`narrow`] made `bits` of; None for a NaN it never makes.
fn widen(bits: u32) -> Option<f64> {
    let value = f32::from_bits(bits);
    if value.is_nan() {
        return (bits == f32::NAN.to_bits()).then_some(f64::NAN);
    }
    Some(f64::from(value))
}

/// The first epoch of the block that holds `epoch` (1-based).
pub fn first_of(epoch: u32) -> u32 {
    (epoch.max(1) - 1) / EPOCHS * EPOCHS + 1
}

/// SQL for the bytes of epoch `epoch` (an SQL expression) in the block
/// `b`, for Postgres and SQLite alike: one entry, which [`unpack`] reads
/// as a block of one epoch.
pub fn slice_sql(epoch: &str) -> String {
    let entry = "CAST(length(b.metrics) / b.epoch_count AS INTEGER)";
    format!("substr(b.metrics, CAST(({epoch} - b.first_epoch) * {entry} + 1 AS INTEGER), {entry})")
}

/// The block of the given packings, consecutive epochs in order, narrow
/// where it can be; None when one of them is not a packing.
pub fn pack(epochs: &[&[u8]]) -> Option<Vec<u8>> {
    let mut values = Vec::with_capacity(epochs.len());
    for bytes in epochs {
        let (mask, _) = packed::split_mask(bytes)?;
        let slots: Vec<f64> = (0..packed::slots().count())
            .map(|slot| Some(packed::value_of(bytes, slot)?.unwrap_or(0.0)))
            .collect::<Option<_>>()?;
        values.push((mask, slots));
    }
    let width = if values
        .iter()
        .all(|(_, v)| v.iter().all(|&v| narrow(v).is_some()))
    {
        Width::Narrow
    } else {
        Width::Wide
    };
    let mut out = Vec::with_capacity(epochs.len() * width.entry_bytes());
    for (mask, slots) in values {
        out.extend_from_slice(&mask.to_le_bytes());
        for value in slots {
            match width {
                Width::Wide => out.extend_from_slice(&value.to_le_bytes()),
                Width::Narrow => {
                    let value = narrow(value).expect("checked to be narrow");
                    out.extend_from_slice(&value.to_le_bytes());
                }
            }
        }
    }
    Some(out)
}

/// The packings of a block of `count` epochs, in order; None when the
/// bytes are not such a block.
pub fn unpack(bytes: &[u8], count: usize) -> Option<Vec<Vec<u8>>> {
    if count == 0 {
        return bytes.is_empty().then(Vec::new);
    }
    if !bytes.len().is_multiple_of(count) {
        return None;
    }
    let width = Width::of_entry(bytes.len() / count)?;
    bytes
        .chunks_exact(width.entry_bytes())
        .map(|entry| {
            let (mask, values) = entry.split_first_chunk::<4>()?;
            let mask = u32::from_le_bytes(*mask);
            let mut epoch = Vec::with_capacity(4 + 8 * mask.count_ones() as usize);
            epoch.extend_from_slice(&mask.to_le_bytes());
            for (slot, value) in values.chunks_exact(width.value_bytes()).enumerate() {
                if mask & (1 << slot) != 0 {
                    let value = match width {
                        Width::Wide => f64::from_le_bytes(value.try_into().ok()?),
                        Width::Narrow => widen(u32::from_le_bytes(value.try_into().ok()?))?,
                    };
                    epoch.extend_from_slice(&value.to_le_bytes());
                } else if value.iter().any(|&b| b != 0) {
                    return None;
                }
            }
            packed::split_mask(&epoch)?;
            Some(epoch)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proto::metrics::MetricValue;

    use super::*;

    fn epoch(values: &[f64]) -> Vec<u8> {
        let values: Vec<MetricValue> = packed::slots()
            .zip(values)
            .map(|((split, metric), &value)| MetricValue {
                split,
                metric,
                value,
            })
            .collect();
        packed::pack(&values)
    }

    fn packs(epochs: &[Vec<u8>]) -> Vec<u8> {
        let refs: Vec<&[u8]> = epochs.iter().map(Vec::as_slice).collect();
        pack(&refs).unwrap()
    }

    #[test]
    fn every_packing_comes_back_bit_for_bit() {
        let odd_nan = f64::from_bits(0x7ff8_0000_0000_0001);
        let epochs = [
            epoch(&[0.0, -0.0, 1.0, 3.0, f64::NAN, odd_nan, 0.1, 1.0 / 3.0]),
            epoch(&[f64::INFINITY, f64::NEG_INFINITY, f64::MIN_POSITIVE, 1e-300]),
            epoch(&[]),
            epoch(&(0..23).map(|i| (i as f64).sqrt()).collect::<Vec<_>>()),
        ];
        let block = packs(&epochs);
        assert_eq!(block.len(), 4 * Width::Wide.entry_bytes());
        assert_eq!(unpack(&block, 4).unwrap(), epochs);
        // Each epoch where its place says.
        let third = &block[2 * Width::Wide.entry_bytes()..3 * Width::Wide.entry_bytes()];
        assert_eq!(unpack(third, 1).unwrap(), [epochs[2].clone()]);
    }

    #[test]
    fn blocks_of_32_bit_floats_take_half_the_bytes_and_lose_nothing() {
        let f32_values = [
            0.0,
            -0.0,
            1.0,
            16_777_216.0,
            0.1f32 as f64,
            f64::NAN,
            f64::INFINITY,
            f64::from(f32::MIN_POSITIVE) / 4.0,
            f64::from(f32::MAX),
        ];
        let epochs = [
            epoch(&f32_values),
            epoch(&[]),
            epoch(
                &(0..23)
                    .map(|i| f64::from(i as f32 / 7.0))
                    .collect::<Vec<_>>(),
            ),
        ];
        let block = packs(&epochs);
        assert_eq!(block.len(), 3 * Width::Narrow.entry_bytes());
        assert_eq!(Width::Narrow.entry_bytes(), 4 + 4 * 23);
        assert_eq!(unpack(&block, 3).unwrap(), epochs);
        let second = &block[Width::Narrow.entry_bytes()..2 * Width::Narrow.entry_bytes()];
        assert_eq!(unpack(second, 1).unwrap(), [epochs[1].clone()]);

        // One value that is no 32-bit float makes the whole block wide.
        for odd in [
            0.1,
            16_777_217.0,
            f64::from_bits(0x7ff8_0000_0000_0001),
            -f64::NAN,
            1e39,
            1e-46,
        ] {
            let mut with_odd = epochs.to_vec();
            with_odd.push(epoch(&[1.0, odd]));
            let block = packs(&with_odd);
            assert_eq!(block.len(), 4 * Width::Wide.entry_bytes(), "{odd}");
            let back = unpack(&block, 4).unwrap();
            assert_eq!(back, with_odd, "{odd:e} comes back bit for bit");
        }
    }

    #[test]
    fn bytes_that_are_no_block_are_refused() {
        let one = epoch(&[0.25, 0.1]);
        let block = packs(&[one.clone(), one.clone()]);
        assert_eq!(unpack(&block[..block.len() - 1], 2), None);
        assert_eq!(unpack(&block, 3), None, "a count that does not divide it");
        assert_eq!(unpack(&block, 4), None, "an entry of no width");
        let mut value_not_reported = block.clone();
        value_not_reported[4 + 8 * 5] = 1;
        assert_eq!(unpack(&value_not_reported, 2), None);
        let mut unknown_slot = block;
        unknown_slot[3] |= 0x80;
        assert_eq!(unpack(&unknown_slot, 2), None);
        assert_eq!(pack(&[&one[..one.len() - 1]]), None);
        assert_eq!(unpack(&[], 0).unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(unpack(&[], 1), None);

        // A narrow NaN other than the one pack writes.
        let mut narrow = packs(&[epoch(&[f64::NAN])]);
        assert_eq!(narrow.len(), Width::Narrow.entry_bytes());
        narrow[4] |= 1;
        assert_eq!(unpack(&narrow, 1), None);
    }

    #[test]
    fn blocks_start_one_past_a_multiple_of_their_size() {
        let firsts: Vec<u32> = [1, 2, 8, 9, 16, 17, 300].map(first_of).to_vec();
        assert_eq!(firsts, [1, 1, 1, 9, 9, 17, 297]);
    }
}
