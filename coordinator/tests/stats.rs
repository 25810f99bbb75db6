//! Welch's t-test against every scipy case of the fixtures (rtol 1e-9 on t
//! and df, 1e-7 on p; NaN where scipy gives NaN).

mod common;

use std::path::PathBuf;

use common::{close, fixture_number as number};
use coordinator::stats::{Alternative, summarize, welch};
use serde_json::Value;

#[test]
fn every_scipy_case_matches() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/welch_ttest.json");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = json["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 23);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let values = |k: &str| {
            case[k]
                .as_array()
                .unwrap()
                .iter()
                .map(number)
                .collect::<Vec<f64>>()
        };
        let alternative: Alternative = case["alternative"].as_str().unwrap().parse().unwrap();
        let got = welch(&values("a"), &values("b"), alternative);
        for (what, g, w, rtol) in [
            ("statistic", got.statistic, number(&case["statistic"]), 1e-9),
            ("df", got.df, number(&case["df"]), 1e-9),
            ("pvalue", got.pvalue, number(&case["pvalue"]), 1e-7),
        ] {
            assert!(close(g, w, rtol), "{name}.{what}: {g} vs scipy {w}");
        }
    }
}

#[test]
fn summaries_use_the_sample_standard_deviation() {
    let s = summarize(&[1.0, 2.0, 4.0]);
    assert_eq!(s.n, 3);
    assert!((s.mean - 7.0 / 3.0).abs() < 1e-15);
    assert!((s.std - (7.0f64 / 3.0).sqrt()).abs() < 1e-15);
    assert!(summarize(&[5.0]).std.is_nan());
    assert!(summarize(&[]).mean.is_nan());
}
