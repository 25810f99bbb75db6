//! A dataset split held in memory: items of (x, y) boards as class maps.

use std::collections::HashSet;

use crate::metrics::is_spawn;
use crate::tetris::{Board, CELLS};

/// Items of one split, stored compactly as class values (0 empty, 1 filled),
/// row-major, `CELLS` bytes per board.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    x: Vec<u8>,
    y: Vec<u8>,
}

impl Split {
    /// Appends one item: the board before and the board after a step.
    pub fn push(&mut self, x: &Board, y: &Board) {
        self.x.extend_from_slice(x);
        self.y.extend_from_slice(y);
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.x.len() / CELLS
    }

    /// True when the split has no items.
    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }

    /// The input board of item `i`.
    pub fn x(&self, i: usize) -> &[u8] {
        &self.x[i * CELLS..(i + 1) * CELLS]
    }

    /// The target board of item `i`.
    pub fn y(&self, i: usize) -> &[u8] {
        &self.y[i * CELLS..(i + 1) * CELLS]
    }

    /// Number of items that are spawns by the notebook's definition: row 0
    /// of x empty and row 0 of y not.
    pub fn spawn_count(&self) -> usize {
        (0..self.len())
            .filter(|&i| is_spawn(self.x(i), self.y(i)))
            .count()
    }

    /// Number of distinct (x, y) pairs.
    pub fn distinct_pairs(&self) -> usize {
        (0..self.len())
            .map(|i| (self.x(i), self.y(i)))
            .collect::<HashSet<_>>()
            .len()
    }
}
