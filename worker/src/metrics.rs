//! Evaluation metrics of the notebook, over all items of a split.
//!
//! Accuracies weigh every item the same; spawn ratios are NaN where their
//! denominator is zero; validity counts only predicted spawns, so it stays
//! within [0, 1] (the notebook's own formula can exceed 1).

use serde::{Deserialize, Serialize};

use crate::split::is_spawn;
use crate::tetris::{CELLS, COLS, SPAWN_PATTERNS};

/// Raw counts over the boards of a split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardCounts {
    pub n_items: u64,
    pub correct_cells: u64,
    pub correct_boards: u64,
    pub actual_spawns: u64,
    pub predicted_spawns: u64,
    pub true_positives: u64,
    pub valid_spawns: u64,
}

impl BoardCounts {
    /// Counts one item: input `x`, target `y` and prediction `pred`, each a
    /// class map of `CELLS` values.
    pub fn add(&mut self, x: &[u8], y: &[u8], pred: &[u8]) {
        let correct = y.iter().zip(pred).filter(|(a, b)| a == b).count() as u64;
        let actual = is_spawn(x, y);
        let predicted = is_spawn(x, pred);
        self.n_items += 1;
        self.correct_cells += correct;
        self.correct_boards += u64::from(correct == CELLS as u64);
        self.actual_spawns += u64::from(actual);
        self.predicted_spawns += u64::from(predicted);
        self.true_positives += u64::from(actual && predicted);
        self.valid_spawns += u64::from(predicted && has_spawn_shape(x, pred));
    }

    pub fn cell_accuracy(&self) -> f64 {
        ratio(self.correct_cells, self.n_items * CELLS as u64)
    }

    pub fn board_accuracy(&self) -> f64 {
        ratio(self.correct_boards, self.n_items)
    }

    pub fn spawn_recall(&self) -> f64 {
        ratio(self.true_positives, self.actual_spawns)
    }

    pub fn spawn_precision(&self) -> f64 {
        ratio(self.true_positives, self.predicted_spawns)
    }

    pub fn spawn_validity(&self) -> f64 {
        ratio(self.valid_spawns, self.predicted_spawns)
    }
}

/// Rows 0-2 of `pred - x` (signed) equal one spawn pattern exactly.
pub fn has_spawn_shape(x: &[u8], pred: &[u8]) -> bool {
    SPAWN_PATTERNS.iter().any(|pattern| {
        (0..3 * COLS)
            .all(|i| i16::from(pred[i]) - i16::from(x[i]) == i16::from(pattern[i / COLS][i % COLS]))
    })
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        f64::NAN
    } else {
        num as f64 / den as f64
    }
}

/// Evaluation of the GAN on one split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitMetrics {
    /// Mean over items of BCE(D(x, y), 1) + BCE(D(x, G(x, z)), 0).
    pub disc_loss: f64,
    /// Mean over items of BCE(D(x, G(x, z)), 1).
    pub gen_loss: f64,
    /// Share of the 2N decisions (real and fake) the discriminator got right.
    pub disc_accuracy: f64,
    pub counts: BoardCounts,
}

impl SplitMetrics {
    /// Every metric of the split by its stored name.
    pub fn named(&self) -> [(&'static str, f64); 8] {
        [
            ("disc_loss", self.disc_loss),
            ("gen_loss", self.gen_loss),
            ("disc_accuracy", self.disc_accuracy),
            ("cell_accuracy", self.counts.cell_accuracy()),
            ("board_accuracy", self.counts.board_accuracy()),
            ("spawn_recall", self.counts.spawn_recall()),
            ("spawn_precision", self.counts.spawn_precision()),
            ("spawn_validity", self.counts.spawn_validity()),
        ]
    }
}
