//! Bounds on everything that arrives from outside, each refused with an
//! error that names the field, its size and the bound.

use crate::error::Error;

/// The largest gRPC message either way (a checkpoint is the largest).
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// The largest sweep file.
pub const MAX_SWEEP_FILE_BYTES: usize = 1 << 20;
/// The most trials a sweep may expand to.
pub const MAX_TRIALS: u64 = 100_000;
/// The largest checkpoint (under the message bound).
pub const MAX_CHECKPOINT_BYTES: usize = 3 << 20;
/// The most slots a worker may announce.
pub const MAX_SLOTS: u32 = 4096;
/// The longest a Lease call may ask to wait, in milliseconds.
pub const MAX_LEASE_WAIT_MS: u32 = 30_000;
/// The most sample items a checkpoint or completion may carry.
pub const MAX_SAMPLES: usize = 32;
/// The most stopping epochs a sweep file may name (each is a copy of every
/// trial's metrics).
pub const MAX_STOP_EPOCHS: usize = 16;
/// Names: sweeps, workers, devices, tokens, file names.
pub const MAX_NAME_CHARS: usize = 200;
/// Free text: descriptions, failure reasons.
pub const MAX_TEXT_CHARS: usize = 10_000;

/// Refuses a text longer than `max` characters.
pub fn text(field: &str, value: &str, max: usize) -> Result<(), Error> {
    let n = value.chars().count();
    if n > max {
        return Err(Error::InvalidArgument(format!(
            "{field} is {n} characters long; at most {max} are allowed"
        )));
    }
    Ok(())
}

/// Refuses an empty name or one longer than [`MAX_NAME_CHARS`].
pub fn name(field: &str, value: &str) -> Result<(), Error> {
    if value.trim().is_empty() {
        return Err(Error::InvalidArgument(format!("{field} must not be empty")));
    }
    text(field, value, MAX_NAME_CHARS)
}

/// Refuses predictions on sample items that are not boards: more than
/// [`MAX_SAMPLES`], a kind other than spawn or fall, or a board that is not
/// 220 cells of 0 or 1.
pub fn samples(samples: &[proto::v1::BoardSample]) -> Result<(), Error> {
    if samples.len() > MAX_SAMPLES {
        return Err(Error::InvalidArgument(format!(
            "{} samples; at most {MAX_SAMPLES} are allowed",
            samples.len()
        )));
    }
    for s in samples {
        if s.kind != "spawn" && s.kind != "fall" {
            return Err(Error::InvalidArgument(format!(
                "sample of item {}: kind {:?} is neither spawn nor fall",
                s.item, s.kind
            )));
        }
        for (what, board) in [
            ("input", &s.input),
            ("predicted", &s.predicted),
            ("truth", &s.truth),
        ] {
            if board.len() != BOARD_CELLS || board.iter().any(|&c| c > 1) {
                return Err(Error::InvalidArgument(format!(
                    "sample of item {}: the {what} board must be {BOARD_CELLS} cells of 0 or 1",
                    s.item
                )));
            }
        }
    }
    Ok(())
}

/// Cells of a board: 22 rows of 10.
pub const BOARD_CELLS: usize = 220;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_texts_are_bounded() {
        assert!(name("worker name", "gpu-7").is_ok());
        let err = name("worker name", "  ").unwrap_err().to_string();
        assert_eq!(err, "worker name must not be empty");
        let long = "x".repeat(MAX_NAME_CHARS + 1);
        let err = name("worker name", &long).unwrap_err().to_string();
        assert_eq!(
            err,
            "worker name is 201 characters long; at most 200 are allowed"
        );
        assert!(text("reason", &"é".repeat(MAX_TEXT_CHARS), MAX_TEXT_CHARS).is_ok());
    }
}
