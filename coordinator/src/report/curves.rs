//! Learning curves: mean ± std per configuration and epoch.

use proto::v1 as pb;
use serde_json::{Value, json};

use super::{Format, csv_text, mean_std, number_csv, render, summary_json, table};

/// Learning curves: a table with one row per epoch and one column per
/// configuration, or one line per configuration and epoch in CSV.
pub fn curves(r: &pb::LearningCurvesResponse, format: Format) -> String {
    match format {
        Format::Json => {
            let curves: Vec<Value> = r
                .curves
                .iter()
                .map(|c| {
                    let points: Vec<Value> = c
                        .points
                        .iter()
                        .map(|p| {
                            let mut v = summary_json(p.summary.as_ref());
                            v["epoch"] = json!(p.epoch);
                            v
                        })
                        .collect();
                    json!({"configuration": c.label, "config_key": c.config_key, "points": points})
                })
                .collect();
            json!({"metric": r.metric, "split": r.split, "curves": curves}).to_string()
        }
        Format::Csv => {
            let mut rows = vec![
                [
                    "configuration",
                    "config_key",
                    "epoch",
                    "n",
                    "nan",
                    "mean",
                    "std",
                ]
                .map(String::from)
                .to_vec(),
            ];
            for c in &r.curves {
                for p in &c.points {
                    let s = p.summary.unwrap_or_default();
                    rows.push(vec![
                        c.label.clone(),
                        c.config_key.clone(),
                        p.epoch.to_string(),
                        s.n.to_string(),
                        s.nan.to_string(),
                        number_csv(s.mean),
                        number_csv(s.std),
                    ]);
                }
            }
            csv_text(rows)
        }
        Format::Table => {
            let mut epochs: Vec<u32> = r
                .curves
                .iter()
                .flat_map(|c| c.points.iter().map(|p| p.epoch))
                .collect();
            epochs.sort_unstable();
            epochs.dedup();
            let mut header = vec!["epoch".to_string()];
            header.extend(r.curves.iter().map(|c| c.label.clone()));
            let mut t = table(header);
            for e in epochs {
                let mut row = vec![e.to_string()];
                row.extend(r.curves.iter().map(|c| {
                    c.points
                        .iter()
                        .find(|p| p.epoch == e)
                        .map_or("-".to_string(), |p| mean_std(p.summary.as_ref()))
                }));
                t.add_row(row);
            }
            let t = render(t, 0);
            format!(
                "{} {} per epoch; mean ± sample std over repeats\n\n{t}\n",
                r.split, r.metric
            )
        }
    }
}
