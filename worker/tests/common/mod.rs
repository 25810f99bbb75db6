//! Helpers shared by the worker's integration tests.

use std::path::PathBuf;

/// The real Experiment 025 recordings, when this machine has them.
///
/// They are looked up in `$EXP025_DATA` or beside the repository in
/// `../shared/data/tetris-025`. When they are missing the test says so and is
/// skipped, unless `EXP025_REQUIRE_DATA` is set (as CI sets it): then the
/// absence is a failure.
pub fn real_data() -> Option<PathBuf> {
    let dir = std::env::var_os("EXP025_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/tetris-025")
        });
    if dir.join("train").is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("EXP025_REQUIRE_DATA").is_none(),
        "EXP025_REQUIRE_DATA is set but the real recordings are not at {}",
        dir.display()
    );
    eprintln!(
        "SKIPPED: the real recordings are not at {} (set EXP025_DATA)",
        dir.display()
    );
    None
}
