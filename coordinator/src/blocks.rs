//! A finished trial's epochs, [`EPOCHS`] to a stored row: the per-epoch
//! rows of a trial that will not run again are folded into blocks, which
//! saves each epoch its own row's header and index entry (about 80 of the
//! 270 bytes an epoch took as a row). Lossless: every packing (see
//! [`crate::packed`]) comes back bit for bit.
//!
//! A block holds epochs `first..first + n` of one trial, `first` one more
//! than a multiple of [`EPOCHS`] (epochs 1-8, 9-16, ...). Its bytes are
//! each epoch in turn, [`ENTRY`] bytes each: the packing's little-endian
//! `u32` mask of reported slots, then every slot's little-endian `f64`,
//! zero where not reported. One epoch is thus found by its place alone,
//! and a read of one epoch of many trials has the database cut it out
//! ([`slice_sql`]) instead of sending whole blocks.

use crate::packed;

/// Epochs a block holds at most. Eight full epochs stay under the size at
/// which Postgres starts compressing or moving a row out of line (2 KB),
/// so a block is read with its row.
pub const EPOCHS: u32 = 8;

/// The bytes of one epoch in a block.
pub fn entry_bytes() -> usize {
    4 + 8 * packed::slots().count()
}

/// The first epoch of the block that holds `epoch` (1-based).
pub fn first_of(epoch: u32) -> u32 {
    (epoch.max(1) - 1) / EPOCHS * EPOCHS + 1
}

/// SQL for the bytes of epoch `epoch` (an SQL expression) in the block
/// `b`, for Postgres and SQLite alike: one entry, which [`unpack`] reads
/// as a block of one epoch.
pub fn slice_sql(epoch: &str) -> String {
    let entry = entry_bytes();
    format!("substr(b.metrics, CAST(({epoch} - b.first_epoch) * {entry} + 1 AS INTEGER), {entry})")
}

/// The block of the given packings, consecutive epochs in order; None
/// when one of them is not a packing.
pub fn pack(epochs: &[&[u8]]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(epochs.len() * entry_bytes());
    for bytes in epochs {
        let (mask, _) = packed::split_mask(bytes)?;
        out.extend_from_slice(&mask.to_le_bytes());
        for slot in 0..packed::slots().count() {
            let value = packed::value_of(bytes, slot)?.unwrap_or(0.0);
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
    Some(out)
}

/// The packings of a block's epochs, in order; None when the bytes are
/// not a block.
pub fn unpack(bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    if !bytes.len().is_multiple_of(entry_bytes()) {
        return None;
    }
    bytes
        .chunks_exact(entry_bytes())
        .map(|entry| {
            let (mask, values) = entry.split_first_chunk::<4>()?;
            let mask = u32::from_le_bytes(*mask);
            let mut epoch = Vec::with_capacity(entry.len());
            epoch.extend_from_slice(&mask.to_le_bytes());
            for (slot, value) in values.chunks_exact(8).enumerate() {
                if mask & (1 << slot) != 0 {
                    epoch.extend_from_slice(value);
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

    #[test]
    fn every_packing_comes_back_bit_for_bit() {
        let odd_nan = f64::from_bits(0x7ff8_0000_0000_0001);
        let epochs = [
            epoch(&[0.0, -0.0, 1.0, 3.0, f64::NAN, odd_nan, 0.1, 1.0 / 3.0]),
            epoch(&[f64::INFINITY, f64::NEG_INFINITY, f64::MIN_POSITIVE, 1e-300]),
            epoch(&[]),
            epoch(&(0..23).map(|i| (i as f64).sqrt()).collect::<Vec<_>>()),
        ];
        let refs: Vec<&[u8]> = epochs.iter().map(Vec::as_slice).collect();
        let block = pack(&refs).unwrap();
        assert_eq!(block.len(), 4 * entry_bytes());
        assert_eq!(unpack(&block).unwrap(), epochs);
        // Each epoch where its place says.
        let third = &block[2 * entry_bytes()..3 * entry_bytes()];
        assert_eq!(unpack(third).unwrap(), [epochs[2].clone()]);
    }

    #[test]
    fn bytes_that_are_no_block_are_refused() {
        let one = epoch(&[0.25, 0.1]);
        let block = pack(&[&one, &one]).unwrap();
        assert_eq!(unpack(&block[..block.len() - 1]), None);
        let mut value_not_reported = block.clone();
        value_not_reported[4 + 8 * 5] = 1;
        assert_eq!(unpack(&value_not_reported), None);
        let mut unknown_slot = block;
        unknown_slot[3] |= 0x80;
        assert_eq!(unpack(&unknown_slot), None);
        assert_eq!(pack(&[&one[..one.len() - 1]]), None);
        assert_eq!(unpack(&[]).unwrap(), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn blocks_start_one_past_a_multiple_of_their_size() {
        let firsts: Vec<u32> = [1, 2, 8, 9, 16, 17, 300].map(first_of).to_vec();
        assert_eq!(firsts, [1, 1, 1, 9, 9, 17, 297]);
    }
}
