//! The rule-based Tetris engine behind the notebook's recordings.
//!
//! A 22 x 10 board (row 0 is the top), seven pieces at fixed spawn patterns
//! chosen uniformly at random, one-row falls, an immediate lock when a piece
//! rests on the floor or on a settled cell, and game over once row 0 of the
//! settled board is filled. No player input and no line clearing.

use rand::{Rng, RngExt};

/// Board height in rows.
pub const ROWS: usize = 22;
/// Board width in columns.
pub const COLS: usize = 10;
/// Cells on a board.
pub const CELLS: usize = ROWS * COLS;

/// A board as class values, row-major: 0 empty, 1 filled.
pub type Board = [u8; CELLS];

/// The empty board a game starts from.
pub const EMPTY: Board = [0; CELLS];

/// Rows 0-2 of the board right after each piece spawns, in the notebook's
/// order: I, O, J, T, S, L, Z.
pub const SPAWN_PATTERNS: [[[u8; COLS]; 3]; 7] = [
    [[0, 0, 0, 1, 1, 1, 1, 0, 0, 0], [0; COLS], [0; COLS]],
    [
        [0, 0, 0, 0, 1, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 1, 0, 0, 0, 0],
        [0; COLS],
    ],
    [
        [0, 0, 0, 1, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 1, 1, 1, 0, 0, 0, 0],
        [0; COLS],
    ],
    [
        [0, 0, 0, 1, 1, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 0, 0, 0, 0, 0],
        [0; COLS],
    ],
    [
        [0, 0, 0, 0, 1, 1, 0, 0, 0, 0],
        [0, 0, 0, 1, 1, 0, 0, 0, 0, 0],
        [0; COLS],
    ],
    [
        [0, 0, 0, 0, 0, 1, 0, 0, 0, 0],
        [0, 0, 0, 1, 1, 1, 0, 0, 0, 0],
        [0; COLS],
    ],
    [
        [0, 0, 0, 1, 1, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 1, 0, 0, 0, 0],
        [0; COLS],
    ],
];

/// The (row, column) cells of piece `kind` at its spawn position.
pub fn spawn_cells(kind: usize) -> Vec<(usize, usize)> {
    let pattern = &SPAWN_PATTERNS[kind];
    (0..3)
        .flat_map(|r| (0..COLS).map(move |c| (r, c)))
        .filter(|&(r, c)| pattern[r][c] == 1)
        .collect()
}

/// One game of the engine: the settled cells and the piece falling, if any.
#[derive(Debug, Clone)]
pub struct Game {
    settled: Board,
    falling: Option<Vec<(usize, usize)>>,
}

impl Default for Game {
    fn default() -> Self {
        Self::new()
    }
}

impl Game {
    /// A game on an empty board with no piece falling.
    pub fn new() -> Self {
        Self::from_settled(EMPTY)
    }

    /// A game whose settled board is `settled`, with no piece falling.
    pub fn from_settled(settled: Board) -> Self {
        Self {
            settled,
            falling: None,
        }
    }

    /// True once row 0 of the settled board holds a filled cell.
    pub fn is_over(&self) -> bool {
        self.settled[..COLS].contains(&1)
    }

    /// The settled cells plus the falling piece.
    pub fn board(&self) -> Board {
        let mut board = self.settled;
        for &(r, c) in self.falling.iter().flatten() {
            board[r * COLS + c] = 1;
        }
        board
    }

    /// One "drop" event: spawn a piece (chosen uniformly with `rng`) when
    /// none is falling, else move the falling piece down one row; lock it at
    /// once if it rests on the floor or on a settled cell. Returns the new
    /// board, or `None` when the game is over (nothing changes then).
    pub fn step<R: Rng>(&mut self, rng: &mut R) -> Option<Board> {
        self.step_with(|| rng.random_range(0..SPAWN_PATTERNS.len()))
    }

    /// [`Game::step`] with the spawned piece given by `next_piece`, which is
    /// called only when a piece spawns.
    pub fn step_with(&mut self, next_piece: impl FnOnce() -> usize) -> Option<Board> {
        if self.is_over() {
            return None;
        }
        let cells = match self.falling.take() {
            None => spawn_cells(next_piece()),
            Some(cells) => cells.into_iter().map(|(r, c)| (r + 1, c)).collect(),
        };
        if self.rests(&cells) {
            for &(r, c) in &cells {
                self.settled[r * COLS + c] = 1;
            }
        } else {
            self.falling = Some(cells);
        }
        Some(self.board())
    }

    fn rests(&self, cells: &[(usize, usize)]) -> bool {
        cells
            .iter()
            .any(|&(r, c)| r + 1 == ROWS || self.settled[(r + 1) * COLS + c] == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_of(board: &Board, rows: std::ops::Range<usize>) -> Vec<&[u8]> {
        rows.map(|r| &board[r * COLS..(r + 1) * COLS]).collect()
    }

    #[test]
    fn first_step_spawns_the_chosen_piece_at_its_pattern() {
        for (kind, pattern) in SPAWN_PATTERNS.iter().enumerate() {
            let mut game = Game::new();
            let board = game.step_with(|| kind).unwrap();
            let expected: Vec<&[u8]> = pattern.iter().map(|r| &r[..]).collect();
            assert_eq!(rows_of(&board, 0..3), expected, "piece {kind}");
            assert!(board[3 * COLS..].iter().all(|&c| c == 0));
        }
    }

    #[test]
    fn a_falling_piece_moves_down_exactly_one_row() {
        let mut game = Game::new();
        let spawned = game.step_with(|| 1).unwrap();
        let fallen = game
            .step_with(|| unreachable!("no spawn while a piece falls"))
            .unwrap();
        let mut expected = EMPTY;
        expected[COLS..].copy_from_slice(&spawned[..CELLS - COLS]);
        assert_eq!(fallen, expected);
    }

    #[test]
    fn a_piece_locks_on_the_floor_and_the_next_step_spawns() {
        let mut game = Game::new();
        game.step_with(|| 1).unwrap(); // O on rows 0-1
        for _ in 0..20 {
            game.step_with(|| unreachable!()).unwrap();
        }
        // The O now occupies rows 20-21: it rests on the floor and locked.
        assert!(game.falling.is_none());
        assert_eq!(game.settled[21 * COLS + 4], 1);
        assert_eq!(game.settled[20 * COLS + 5], 1);
        let board = game.step_with(|| 0).unwrap();
        assert_eq!(&board[3..7], &[1, 1, 1, 1], "the next step spawns an I");
    }

    #[test]
    fn a_piece_locks_on_a_filled_cell_directly_below() {
        let mut settled = EMPTY;
        settled[10 * COLS + 4] = 1;
        let mut game = Game::from_settled(settled);
        game.step_with(|| 1).unwrap(); // O in rows 0-1, columns 4-5
        let mut steps = 0;
        while game.falling.is_some() {
            game.step_with(|| unreachable!()).unwrap();
            steps += 1;
        }
        // It locked with its bottom row on row 9, right above the filled cell.
        assert_eq!(steps, 8);
        assert_eq!(game.settled[9 * COLS + 4], 1);
        assert_eq!(game.settled[8 * COLS + 5], 1);
    }

    #[test]
    fn the_game_is_over_once_row_0_of_the_settled_board_is_filled() {
        let mut settled = EMPTY;
        settled[2 * COLS + 4] = 1;
        let mut game = Game::from_settled(settled);
        // The O spawns on rows 0-1 right above a filled cell: it locks at once.
        let locked = game.step_with(|| 1).unwrap();
        assert!(game.is_over());
        assert_eq!(game.step_with(|| unreachable!()), None);
        assert_eq!(game.board(), locked, "a finished game does not change");
    }

    #[test]
    fn seeded_games_are_repeatable() {
        use rand::SeedableRng;
        let play = |seed| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut game = Game::new();
            std::iter::from_fn(|| game.step(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(play(7), play(7));
        assert_ne!(play(7), play(8));
    }
}
