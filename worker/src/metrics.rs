//! Evaluation metrics of the notebook, over all items of a split.
//!
//! Accuracies weigh every item the same; spawn ratios are NaN where their
//! denominator is zero; validity counts only predicted spawns, so it stays
//! within [0, 1] (the notebook's own formula can exceed 1).

use proto::metrics::Metric;
use serde::{Deserialize, Serialize};

use crate::tetris::{CELLS, COLS, SPAWN_PATTERNS};

/// The notebook's spawn test on class maps: row 0 of `x` is empty and row 0
/// of `y` has a filled cell.
pub fn is_spawn(x: &[u8], y: &[u8]) -> bool {
    x[..COLS].iter().all(|&c| c == 0) && y[..COLS].contains(&1)
}

/// Raw counts over the boards of a split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardCounts {
    /// Items counted.
    pub n_items: u64,
    /// Cells predicted right.
    pub correct_cells: u64,
    /// Boards predicted right in every cell.
    pub correct_boards: u64,
    /// Items that are spawns.
    pub actual_spawns: u64,
    /// Items predicted as spawns.
    pub predicted_spawns: u64,
    /// Spawns predicted as spawns.
    pub true_positives: u64,
    /// Predicted spawns shaped as one of the pieces.
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

    /// Share of cells predicted right.
    pub fn cell_accuracy(&self) -> f64 {
        ratio(self.correct_cells, self.n_items * CELLS as u64)
    }

    /// Share of boards predicted right in every cell.
    pub fn board_accuracy(&self) -> f64 {
        ratio(self.correct_boards, self.n_items)
    }

    /// Share of spawns predicted as spawns; NaN without spawns.
    pub fn spawn_recall(&self) -> f64 {
        ratio(self.true_positives, self.actual_spawns)
    }

    /// Share of predicted spawns that are spawns; NaN without predicted spawns.
    pub fn spawn_precision(&self) -> f64 {
        ratio(self.true_positives, self.predicted_spawns)
    }

    /// Share of predicted spawns shaped as a piece; NaN without predicted spawns.
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
    /// The board counts behind the cell, board and spawn metrics.
    pub counts: BoardCounts,
}

impl SplitMetrics {
    /// Every evaluation metric of the split ([`Metric::EVALUATED`]).
    pub fn values(&self) -> [(Metric, f64); 8] {
        Metric::EVALUATED.map(|m| (m, self.value(m)))
    }

    fn value(&self, metric: Metric) -> f64 {
        match metric {
            Metric::DiscLoss => self.disc_loss,
            Metric::GenLoss => self.gen_loss,
            Metric::DiscAccuracy => self.disc_accuracy,
            Metric::CellAccuracy => self.counts.cell_accuracy(),
            Metric::BoardAccuracy => self.counts.board_accuracy(),
            Metric::SpawnRecall => self.counts.spawn_recall(),
            Metric::SpawnPrecision => self.counts.spawn_precision(),
            Metric::SpawnValidity => self.counts.spawn_validity(),
            _ => unreachable!("{metric} is not an evaluation metric"),
        }
    }
}
