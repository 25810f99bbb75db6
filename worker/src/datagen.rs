//! Generated datasets: recordings made by the built-in engine from a seed, so
//! that every worker builds the same bytes without shipping files.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, bail};
use ndarray::Array3;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::split::Split;
use crate::tetris::{Board, COLS, Game, ROWS};

/// How consecutive boards of a game become items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Pairing {
    /// Boards 1-2, 3-4, ...: the recorder behind the notebook's data.
    #[default]
    NonOverlapping,
    /// Boards 1-2, 2-3, ...: every transition once.
    Overlapping,
}

impl FromStr for Pairing {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "non-overlapping" => Ok(Self::NonOverlapping),
            "overlapping" => Ok(Self::Overlapping),
            other => Err(format!(
                "unknown pairing {other:?}; expected non-overlapping or overlapping"
            )),
        }
    }
}

impl fmt::Display for Pairing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NonOverlapping => "non-overlapping",
            Self::Overlapping => "overlapping",
        })
    }
}

/// What determines a generated dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneratedSpec {
    /// Seed of the games and of the split.
    pub seed: u64,
    /// Items in the train split.
    pub train: usize,
    /// Items in the test split.
    pub test: usize,
    /// How consecutive boards become items.
    pub pairing: Pairing,
}

/// A train and a test split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// The train split.
    pub train: Split,
    /// The test split.
    pub test: Split,
}

/// Plays seeded games until `train + test` items are recorded, shuffles them
/// and splits them, as the notebook's random split of its recordings did.
pub fn generate(spec: &GeneratedSpec) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let wanted = spec.train + spec.test;
    let mut items: Vec<(Board, Board)> = Vec::with_capacity(wanted);
    while items.len() < wanted {
        let mut game = Game::new();
        let boards: Vec<Board> = std::iter::from_fn(|| game.step(&mut rng)).collect();
        match spec.pairing {
            Pairing::NonOverlapping => {
                items.extend(boards.chunks_exact(2).map(|p| (p[0], p[1])));
            }
            Pairing::Overlapping => items.extend(boards.windows(2).map(|p| (p[0], p[1]))),
        }
    }
    items.truncate(wanted);
    items.shuffle(&mut rng);
    let mut dataset = Dataset {
        train: Split::default(),
        test: Split::default(),
    };
    for (i, (x, y)) in items.iter().enumerate() {
        let split = if i < spec.train {
            &mut dataset.train
        } else {
            &mut dataset.test
        };
        split.push(x, y);
    }
    dataset
}

/// Writes `split` as `dir/{i}.npy`, each an int32 array (2, 22, 10) of x and
/// y, like the real recordings. Refuses a directory that already holds files.
pub fn write_split(split: &Split, dir: &Path) -> anyhow::Result<()> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} is not empty; choose a new output directory",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for i in 0..split.len() {
        let values: Vec<i32> = split
            .x(i)
            .iter()
            .chain(split.y(i))
            .map(|&c| i32::from(c))
            .collect();
        let array = Array3::from_shape_vec((2, ROWS, COLS), values).expect("two full boards");
        let path = dir.join(format!("{i}.npy"));
        ndarray_npy::write_npy(&path, &array)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// A one-line description of a split: items, spawn share, distinct pairs.
pub fn summary(name: &str, split: &Split) -> String {
    let n = split.len();
    let spawns = split.spawn_count();
    let share = if n == 0 {
        0.0
    } else {
        spawns as f64 / n as f64
    };
    format!(
        "{name}: {n} items, {spawns} spawns ({:.1}%), {} distinct pairs",
        100.0 * share,
        split.distinct_pairs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::is_spawn;
    use crate::tetris::{CELLS, SPAWN_PATTERNS};

    fn spec(train: usize, test: usize, pairing: Pairing) -> GeneratedSpec {
        GeneratedSpec {
            seed: 25,
            train,
            test,
            pairing,
        }
    }

    /// A fall moves every cell of one piece down one row; a spawn adds one
    /// spawn pattern to a board whose row 0 is empty.
    fn is_fall_or_spawn(x: &[u8], y: &[u8]) -> bool {
        let added: Vec<usize> = (0..CELLS).filter(|&i| x[i] == 0 && y[i] == 1).collect();
        let removed: Vec<usize> = (0..CELLS).filter(|&i| x[i] == 1 && y[i] == 0).collect();
        let spawn = is_spawn(x, y)
            && removed.is_empty()
            && SPAWN_PATTERNS.iter().any(|p| {
                let cells: Vec<usize> = (0..3 * COLS)
                    .filter(|&i| p[i / COLS][i % COLS] == 1)
                    .collect();
                cells.iter().all(|&i| y[i] == 1) && added.iter().all(|i| cells.contains(i))
            });
        // In a fall, each column of the piece loses its top cell (row r) and
        // gains the cell below its bottom (row a); rows r..a stay filled.
        let mut piece_cells = 0;
        let fall = !removed.is_empty()
            && (0..COLS).all(|c| {
                let lost: Vec<usize> = removed
                    .iter()
                    .filter(|&&i| i % COLS == c)
                    .map(|&i| i / COLS)
                    .collect();
                let won: Vec<usize> = added
                    .iter()
                    .filter(|&&i| i % COLS == c)
                    .map(|&i| i / COLS)
                    .collect();
                match (&lost[..], &won[..]) {
                    ([], []) => true,
                    (&[r], &[a]) if a > r => {
                        piece_cells += a - r;
                        (r..a).all(|row| x[row * COLS + c] == 1)
                            && (r + 1..=a).all(|row| y[row * COLS + c] == 1)
                    }
                    _ => false,
                }
            })
            && piece_cells == 4;
        spawn || fall
    }

    #[test]
    fn every_transition_is_a_fall_or_a_spawn() {
        for pairing in [Pairing::NonOverlapping, Pairing::Overlapping] {
            let data = generate(&spec(600, 150, pairing));
            for split in [&data.train, &data.test] {
                for i in 0..split.len() {
                    assert!(
                        is_fall_or_spawn(split.x(i), split.y(i)),
                        "{pairing} item {i} is neither a fall nor a spawn"
                    );
                }
            }
        }
    }

    #[test]
    fn the_spawn_share_at_the_real_size_is_as_in_the_real_data() {
        let data = generate(&spec(1762, 440, Pairing::NonOverlapping));
        assert_eq!((data.train.len(), data.test.len()), (1762, 440));
        for split in [&data.train, &data.test] {
            let share = split.spawn_count() as f64 / split.len() as f64;
            assert!((0.05..=0.12).contains(&share), "spawn share {share}");
        }
    }

    #[test]
    fn the_same_spec_gives_the_same_dataset() {
        let a = generate(&spec(100, 20, Pairing::Overlapping));
        assert_eq!(a, generate(&spec(100, 20, Pairing::Overlapping)));
        let other_seed = GeneratedSpec {
            seed: 26,
            ..spec(100, 20, Pairing::Overlapping)
        };
        assert_ne!(a, generate(&other_seed));
    }
}
