//! Reading a split directory of `{i}.npy` recordings into memory.
//!
//! Each file holds a sequence of boards `(T, 22, 10)`, `T >= 2`, of any
//! integer or bool dtype with values in {0, 1}; an item is the last two
//! boards. Indices must run 0..N-1 without a gap.

use std::io;
use std::path::{Path, PathBuf};

use ndarray::ArrayD;
use ndarray_npy::npy::header::Header;
use ndarray_npy::{ReadNpyError, ReadNpyExt, ReadableElement};

use crate::split::Split;
use crate::tetris::{Board, CELLS, COLS, ROWS};

/// Why a split directory could not be read. Every variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum RecordingsError {
    /// The directory does not exist.
    #[error("recordings directory {0} does not exist")]
    Missing(PathBuf),
    /// The path is a file.
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    /// The directory holds no recordings.
    #[error("recordings directory {0} holds no .npy files")]
    Empty(PathBuf),
    /// A `.npy` file whose name is not a number.
    #[error("{0}: a recording must be named {{index}}.npy")]
    BadName(PathBuf),
    /// An index between 0 and the number of files is missing.
    #[error("{dir}: {index}.npy is missing (indices must run 0..{count} without a gap)")]
    Gap {
        /// The split directory.
        dir: PathBuf,
        /// The first missing index.
        index: usize,
        /// How many recordings the directory holds.
        count: usize,
    },
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The recording.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The file is not a well-formed `.npy` array.
    #[error("{path}: not a readable .npy file: {reason}")]
    Corrupt {
        /// The recording.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The array's element type is neither an integer nor bool.
    #[error("{path}: unsupported dtype {descr}; expected an integer or bool array")]
    Dtype {
        /// The recording.
        path: PathBuf,
        /// The dtype as the file's header spells it.
        descr: String,
    },
    /// The array is not a sequence of at least two 22x10 boards.
    #[error("{path}: shape {shape:?}; expected (T, 22, 10) with T >= 2")]
    Shape {
        /// The recording.
        path: PathBuf,
        /// The array's shape.
        shape: Vec<usize>,
    },
    /// A cell that is neither 0 nor 1.
    #[error("{path}: value {value} in board {board}; cells must be 0 or 1")]
    Value {
        /// The recording.
        path: PathBuf,
        /// The offending value.
        value: i128,
        /// The board (0-based) it is in.
        board: usize,
    },
}

/// Loads every `{i}.npy` of `dir` as one split, in index order.
pub fn load_split(dir: &Path) -> Result<Split, RecordingsError> {
    let io_err = |source| RecordingsError::Io {
        path: dir.to_path_buf(),
        source,
    };
    if !dir.exists() {
        return Err(RecordingsError::Missing(dir.to_path_buf()));
    }
    if !dir.is_dir() {
        return Err(RecordingsError::NotADirectory(dir.to_path_buf()));
    }
    let mut indices = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let path = entry.map_err(io_err)?.path();
        if path.extension().is_none_or(|e| e != "npy") {
            continue;
        }
        let index = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or_else(|| RecordingsError::BadName(path.clone()))?;
        indices.push(index);
    }
    if indices.is_empty() {
        return Err(RecordingsError::Empty(dir.to_path_buf()));
    }
    indices.sort_unstable();
    let count = indices.len();
    if let Some(gap) = (0..count).find(|&i| indices[i] != i) {
        return Err(RecordingsError::Gap {
            dir: dir.to_path_buf(),
            index: gap,
            count: indices[count - 1] + 1,
        });
    }
    let mut split = Split::default();
    for i in 0..count {
        let (x, y) = read_item(&dir.join(format!("{i}.npy")))?;
        split.push(&x, &y);
    }
    Ok(split)
}

/// Reads one recording and returns its last two boards.
pub fn read_item(path: &Path) -> Result<(Board, Board), RecordingsError> {
    let bytes = std::fs::read(path).map_err(|source| RecordingsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let corrupt = |reason: String| RecordingsError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    // The shape first, before anything the header asks for is allocated: a
    // header may declare far more values than the file holds.
    let header = Header::from_reader(&mut bytes.as_slice()).map_err(|e| corrupt(e.to_string()))?;
    let shape = header.shape;
    if shape.len() != 3 || shape[0] < 2 || shape[1] != ROWS || shape[2] != COLS {
        return Err(RecordingsError::Shape {
            path: path.to_path_buf(),
            shape,
        });
    }
    let declared = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if declared.is_none_or(|n| n > bytes.len()) {
        return Err(corrupt(format!(
            "the header declares shape {shape:?}, more values than the file's {} bytes hold",
            bytes.len()
        )));
    }
    let values = read_as_i128(&bytes).map_err(|e| match e {
        ReadNpyError::WrongDescriptor(descr) => RecordingsError::Dtype {
            path: path.to_path_buf(),
            descr: descr.to_string(),
        },
        other => RecordingsError::Corrupt {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    })?;
    let t = shape[0];
    let flat: Vec<i128> = values.iter().copied().collect();
    let board = |k: usize| -> Result<Board, RecordingsError> {
        let mut board = [0u8; CELLS];
        for (cell, &v) in board.iter_mut().zip(&flat[k * CELLS..(k + 1) * CELLS]) {
            *cell = match v {
                0 | 1 => v as u8,
                value => {
                    return Err(RecordingsError::Value {
                        path: path.to_path_buf(),
                        value,
                        board: k,
                    });
                }
            };
        }
        Ok(board)
    };
    Ok((board(t - 2)?, board(t - 1)?))
}

/// Parses `.npy` bytes of any integer or bool dtype into one wide type.
fn read_as_i128(bytes: &[u8]) -> Result<ArrayD<i128>, ReadNpyError> {
    fn widen<T: ReadableElement + Copy>(
        bytes: &[u8],
        to_wide: fn(T) -> i128,
    ) -> Result<ArrayD<i128>, ReadNpyError> {
        ArrayD::<T>::read_npy(bytes).map(|a| a.mapv(to_wide))
    }
    type Reader = fn(&[u8]) -> Result<ArrayD<i128>, ReadNpyError>;
    let readers: [Reader; 9] = [
        |b| widen::<i32>(b, i128::from),
        |b| widen::<i64>(b, i128::from),
        |b| widen::<u8>(b, i128::from),
        |b| widen::<bool>(b, i128::from),
        |b| widen::<i8>(b, i128::from),
        |b| widen::<i16>(b, i128::from),
        |b| widen::<u16>(b, i128::from),
        |b| widen::<u32>(b, i128::from),
        |b| widen::<u64>(b, i128::from),
    ];
    let mut last = None;
    for read in readers {
        match read(bytes) {
            Err(e @ ReadNpyError::WrongDescriptor(_)) => last = Some(e),
            other => return other,
        }
    }
    Err(last.expect("at least one reader ran"))
}
