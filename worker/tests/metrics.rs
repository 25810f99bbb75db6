//! Every case of the fixtures' metrics_cases: counts exactly, ratios
//! exactly (NaN where the fixture says NaN).

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use serde_json::Value;
use worker::metrics::BoardCounts;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn number(v: &Value) -> f64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        other => other.as_f64().unwrap(),
    }
}

fn class_maps(t: &Tensor) -> Vec<u8> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|v| u8::try_from(v).unwrap())
        .collect()
}

#[test]
fn every_metrics_case_matches_exactly() {
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("metrics_cases.json")).unwrap(),
    )
    .unwrap();
    let tensors =
        candle_core::safetensors::load(fixtures().join("metrics_cases.safetensors"), &Device::Cpu)
            .unwrap();
    let cases = json["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 7);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let [x, y, pred] =
            ["x_cls", "y_cls", "pred_cls"].map(|k| class_maps(&tensors[&format!("{name}.{k}")]));
        let mut counts = BoardCounts::default();
        for i in 0..x.len() / 220 {
            let item = |v: &Vec<u8>| v[i * 220..(i + 1) * 220].to_vec();
            counts.add(&item(&x), &item(&y), &item(&pred));
        }
        let e = &case["expected"];
        let count = |k: &str| e[k].as_u64().unwrap();
        assert_eq!(
            counts,
            BoardCounts {
                n_items: count("n_items"),
                correct_cells: count("correct_cells"),
                correct_boards: count("correct_boards"),
                actual_spawns: count("actual_spawns"),
                predicted_spawns: count("predicted_spawns"),
                true_positives: count("true_positives"),
                valid_spawns: count("valid_spawns"),
            },
            "{name}: counts"
        );
        assert_eq!(counts.n_items * 220, count("total_cells"));
        for (metric, got) in [
            ("cell_accuracy", counts.cell_accuracy()),
            ("board_accuracy", counts.board_accuracy()),
            ("spawn_recall", counts.spawn_recall()),
            ("spawn_precision", counts.spawn_precision()),
            ("spawn_validity", counts.spawn_validity()),
        ] {
            let want = number(&e[metric]);
            assert!(
                got == want || (got.is_nan() && want.is_nan()),
                "{name}.{metric}: {got} vs {want}"
            );
        }
    }
}
