//! Reading recordings from real `.npy` files: good files of every integer
//! dtype, the real data, and each kind of bad input.

mod common;

use std::path::Path;

use ndarray::{Array3, ArrayD, IxDyn};
use ndarray_npy::{WritableElement, write_npy};
use worker::recordings::{RecordingsError, load_split};
use worker::split::Split;
use worker::tetris::{CELLS, COLS, ROWS};

/// Three boards: empty, an O spawned, the O one row down.
fn game_boards() -> Vec<u8> {
    let mut boards = vec![0u8; 3 * CELLS];
    for (r, c) in [(0, 4), (0, 5), (1, 4), (1, 5)] {
        boards[CELLS + r * COLS + c] = 1;
        boards[2 * CELLS + (r + 1) * COLS + c] = 1;
    }
    boards
}

fn write_item<T: WritableElement>(dir: &Path, index: usize, to: fn(u8) -> T) {
    let values: Vec<T> = game_boards().into_iter().map(to).collect();
    let array = Array3::from_shape_vec((3, ROWS, COLS), values).unwrap();
    write_npy(dir.join(format!("{index}.npy")), &array).unwrap();
}

fn good_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3 {
        write_item(dir.path(), i, i32::from);
    }
    dir
}

fn expected_split(n: usize) -> Split {
    let boards = game_boards();
    let mut split = Split::default();
    for _ in 0..n {
        split.push(
            boards[CELLS..2 * CELLS].try_into().unwrap(),
            boards[2 * CELLS..].try_into().unwrap(),
        );
    }
    split
}

#[test]
fn an_item_is_the_last_two_boards_for_every_integer_and_bool_dtype() {
    let dir = tempfile::tempdir().unwrap();
    write_item(dir.path(), 0, i32::from);
    write_item(dir.path(), 1, i64::from);
    write_item(dir.path(), 2, |v| v);
    write_item(dir.path(), 3, |v| v == 1);
    write_item(dir.path(), 4, |v| v as i8);
    write_item(dir.path(), 5, i16::from);
    write_item(dir.path(), 6, u16::from);
    write_item(dir.path(), 7, u32::from);
    write_item(dir.path(), 8, u64::from);
    assert_eq!(load_split(dir.path()).unwrap(), expected_split(9));
}

#[test]
fn indices_are_read_in_numeric_order_whatever_the_listing_order() {
    let dir = tempfile::tempdir().unwrap();
    for i in (0..12).rev() {
        write_item(dir.path(), i, i32::from);
    }
    std::fs::write(dir.path().join("README.txt"), "not a recording").unwrap();
    assert_eq!(load_split(dir.path()).unwrap().len(), 12);
}

fn error_of(dir: &Path) -> (RecordingsError, String) {
    let err = load_split(dir).unwrap_err();
    let text = err.to_string();
    (err, text)
}

#[test]
fn a_float_dtype_is_refused_with_the_file_and_dtype() {
    let dir = good_dir();
    let array = Array3::<f32>::zeros((2, ROWS, COLS));
    write_npy(dir.path().join("1.npy"), &array).unwrap();
    let (err, text) = error_of(dir.path());
    assert!(matches!(err, RecordingsError::Dtype { .. }), "{err:?}");
    assert!(text.contains("1.npy") && text.contains("<f4"), "{text}");
}

#[test]
fn a_wrong_shape_is_refused() {
    for shape in [vec![1, ROWS, COLS], vec![2, ROWS, 9], vec![2, ROWS * COLS]] {
        let dir = good_dir();
        let array = ArrayD::<i32>::zeros(IxDyn(&shape));
        write_npy(dir.path().join("2.npy"), &array).unwrap();
        let (err, text) = error_of(dir.path());
        assert!(matches!(err, RecordingsError::Shape { .. }), "{err:?}");
        assert!(text.contains("2.npy"), "{text}");
    }
}

#[test]
fn a_value_of_2_is_refused() {
    let dir = good_dir();
    let mut array = Array3::<i32>::zeros((2, ROWS, COLS));
    array[[1, 5, 5]] = 2;
    write_npy(dir.path().join("0.npy"), &array).unwrap();
    let (err, text) = error_of(dir.path());
    assert!(
        matches!(err, RecordingsError::Value { value: 2, .. }),
        "{err:?}"
    );
    assert!(text.contains("0.npy"), "{text}");
}

#[test]
fn a_truncated_file_is_refused() {
    let dir = good_dir();
    let path = dir.path().join("1.npy");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let (err, text) = error_of(dir.path());
    assert!(matches!(err, RecordingsError::Corrupt { .. }), "{err:?}");
    assert!(text.contains("1.npy"), "{text}");
    std::fs::write(&path, &bytes[..20]).unwrap();
    assert!(matches!(
        error_of(dir.path()).0,
        RecordingsError::Corrupt { .. }
    ));
}

#[test]
fn a_gap_in_the_indices_is_refused() {
    let dir = good_dir();
    std::fs::remove_file(dir.path().join("1.npy")).unwrap();
    let (err, text) = error_of(dir.path());
    assert!(
        matches!(err, RecordingsError::Gap { index: 1, .. }),
        "{err:?}"
    );
    assert!(text.contains("1.npy is missing"), "{text}");
}

#[test]
fn a_name_that_is_not_an_index_is_refused() {
    let dir = good_dir();
    write_item(dir.path(), 0, i32::from);
    std::fs::copy(dir.path().join("0.npy"), dir.path().join("board-3.npy")).unwrap();
    let (err, text) = error_of(dir.path());
    assert!(matches!(err, RecordingsError::BadName(_)), "{err:?}");
    assert!(text.contains("board-3.npy"), "{text}");
}

#[test]
fn an_empty_or_missing_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(error_of(dir.path()).0, RecordingsError::Empty(_)));
    let missing = dir.path().join("nope");
    let (err, text) = error_of(&missing);
    assert!(matches!(err, RecordingsError::Missing(_)), "{err:?}");
    assert!(text.contains("nope"), "{text}");
}

#[test]
fn the_real_recordings_have_the_notebooks_sizes_and_spawns() {
    let Some(data) = common::real_data() else {
        return;
    };
    let train = load_split(&data.join("train")).unwrap();
    let test = load_split(&data.join("test")).unwrap();
    assert_eq!((train.len(), train.spawn_count()), (1762, 125));
    assert_eq!((test.len(), test.spawn_count()), (440, 40));
    assert_eq!(train.distinct_pairs(), 1492);
}

#[test]
fn every_bad_recording_of_the_corpus_is_refused_naming_its_file() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad_recordings");
    let mut cases: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "a corpus of at least 20 bad splits");
    let mut wrong = Vec::new();
    for dir in cases {
        let expect = std::fs::read_to_string(dir.join("expect.txt")).unwrap();
        match load_split(&dir) {
            Ok(split) => wrong.push(format!("{}: accepted {} items", dir.display(), split.len())),
            Err(err) => {
                let text = err.to_string();
                if !text.contains(expect.trim()) || !text.contains(&*dir.to_string_lossy()) {
                    wrong.push(format!(
                        "{}:\n  got:  {text}\n  want: {}",
                        dir.display(),
                        expect.trim()
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn good_file() -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        write_item(dir.path(), 0, i32::from);
        std::fs::read(dir.path().join("0.npy")).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any bytes at all: an error naming the file, or a split; never a
        /// panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("0.npy"), &bytes).unwrap();
            if let Err(err) = load_split(dir.path()) {
                prop_assert!(err.to_string().contains("0.npy"), "{err}");
            }
        }

        /// A good file with some bytes changed: refused with its name, or
        /// read as boards of 0 and 1 only.
        #[test]
        fn corrupted_files_are_refused_or_read_as_boards(
            changes in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut bytes = good_file();
            for (at, value) in changes {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("0.npy"), &bytes).unwrap();
            match load_split(dir.path()) {
                Err(err) => prop_assert!(err.to_string().contains("0.npy"), "{err}"),
                Ok(split) => {
                    for i in 0..split.len() {
                        prop_assert!(split.x(i).iter().chain(split.y(i)).all(|&c| c <= 1));
                    }
                }
            }
        }
    }
}
