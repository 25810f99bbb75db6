//! Results, comparisons and learning curves as a user reads them: aligned
//! tables, CSV and JSON. NaN prints as `NaN` in tables and CSV and as
//! `null` in JSON.

use comfy_table::{CellAlignment, ContentArrangement, Table, presets};
use proto::v1 as pb;
use serde_json::{Value, json};

/// The notebook's closing table: the metrics a results table shows unless
/// asked for others.
pub const TABLE_METRICS: [&str; 5] = [
    "board_accuracy",
    "spawn_recall",
    "spawn_precision",
    "spawn_validity",
    "cell_accuracy",
];

/// The three ways a report can be printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

fn table(header: Vec<String>) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header);
    t
}

/// Right-aligns the columns from `numbers_from` on and renders the table
/// with two spaces between columns and none at the line ends.
fn render(mut t: Table, numbers_from: usize) -> String {
    for (i, column) in t.column_iter_mut().enumerate() {
        column.set_padding((0, 2));
        if i >= numbers_from {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    let lines: Vec<String> = t.lines().map(|l| l.trim_end().to_string()).collect();
    lines.join("\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else {
        format!("{v:.4}")
    }
}

/// `mean ± std`, with the NaN count when there were any.
fn mean_std(s: Option<&pb::Summary>) -> String {
    let Some(s) = s else {
        return "-".to_string();
    };
    let mut text = if s.n == 0 {
        "NaN".to_string()
    } else {
        format!("{} ± {}", number(s.mean), number(s.std))
    };
    if s.nan > 0 {
        text.push_str(&format!(" ({} NaN)", s.nan));
    }
    text
}

fn summary_json(s: Option<&pb::Summary>) -> Value {
    let s = s.cloned().unwrap_or_default();
    json!({"n": s.n, "nan": s.nan, "mean": s.mean, "std": s.std})
}

fn csv_text(rows: Vec<Vec<String>>) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in rows {
        w.write_record(row).expect("writing to memory");
    }
    String::from_utf8(w.into_inner().expect("writing to memory")).expect("UTF-8 fields")
}

/// Which epoch a report read, in words.
fn epoch_words(selection: Option<&pb::EpochSelection>) -> String {
    use pb::epoch_selection::Choice;
    match selection.and_then(|s| s.choice.as_ref()) {
        None => "each configuration's last epoch".to_string(),
        Some(Choice::Epoch(e)) => format!("epoch {e}"),
        Some(Choice::StopEpochs(_)) => "each configuration's stopping epoch".to_string(),
    }
}

fn values_text(values: &[f64]) -> String {
    let all: Vec<String> = values.iter().map(|v| number(*v)).collect();
    all.join(" ")
}

/// The results table. `metrics` picks and orders the metric columns of the
/// table and CSV (JSON holds every metric); empty means the notebook's five
/// in a table and every metric in CSV.
pub fn results(
    r: &pb::ResultsResponse,
    selection: Option<&pb::EpochSelection>,
    metrics: &[String],
    format: Format,
) -> String {
    let every: Vec<String> = {
        let mut names: Vec<String> = Vec::new();
        for c in &r.configurations {
            for m in &c.metrics {
                if !names.contains(&m.name) {
                    names.push(m.name.clone());
                }
            }
        }
        names
    };
    let shown: Vec<String> = if !metrics.is_empty() {
        metrics.to_vec()
    } else if format == Format::Table {
        TABLE_METRICS.iter().map(|m| m.to_string()).collect()
    } else {
        every
    };
    let metric = |c: &pb::ConfigurationResult, name: &str| {
        c.metrics
            .iter()
            .find(|m| m.name == name)
            .and_then(|m| m.summary)
    };
    match format {
        Format::Json => {
            let configurations: Vec<Value> = r
                .configurations
                .iter()
                .map(|c| {
                    let metrics: serde_json::Map<String, Value> = c
                        .metrics
                        .iter()
                        .map(|m| {
                            let mut v = summary_json(m.summary.as_ref());
                            v["values"] = json!(m.values);
                            v["trial_ids"] = json!(m.trial_ids);
                            (m.name.clone(), v)
                        })
                        .collect();
                    let candidates: Vec<Value> = c
                        .candidates
                        .iter()
                        .map(|s| json!({"epoch": s.epoch, "by": summary_json(s.by.as_ref())}))
                        .collect();
                    json!({
                        "configuration": c.label, "config_key": c.config_key, "trials": c.trials,
                        "epoch": c.epoch, "trial_ids": c.trial_ids, "metrics": metrics,
                        "stop_candidates": candidates,
                    })
                })
                .collect();
            let sweep = r.sweep.clone().unwrap_or_default();
            json!({
                "sweep": sweep.id, "name": sweep.name, "split": r.split,
                "stop_by": r.stop_by, "stop_maximize": r.stop_maximize,
                "configurations": configurations,
            })
            .to_string()
        }
        Format::Csv => {
            let mut header: Vec<String> = ["configuration", "config_key", "trials", "n", "epoch"]
                .map(String::from)
                .to_vec();
            for m in &shown {
                for part in ["mean", "std", "n", "nan"] {
                    header.push(format!("{m}_{part}"));
                }
            }
            let mut rows = vec![header];
            for c in &r.configurations {
                let mut row = vec![
                    c.label.clone(),
                    c.config_key.clone(),
                    c.trials.to_string(),
                    c.trial_ids.len().to_string(),
                    c.epoch.to_string(),
                ];
                for m in &shown {
                    let s = metric(c, m).unwrap_or_default();
                    row.extend([
                        number_csv(s.mean),
                        number_csv(s.std),
                        s.n.to_string(),
                        s.nan.to_string(),
                    ]);
                }
                rows.push(row);
            }
            csv_text(rows)
        }
        Format::Table => {
            let sweep = r.sweep.clone().unwrap_or_default();
            let mut out = format!(
                "sweep {} ({}): {} metrics at {}; mean ± sample std over repeats, \
                 n = trials with values / trials\n\n",
                sweep.id,
                sweep.name,
                r.split,
                epoch_words(selection)
            );
            let mut header: Vec<String> =
                ["configuration", "n", "epoch"].map(String::from).to_vec();
            header.extend(shown.iter().cloned());
            let mut t = table(header);
            for c in &r.configurations {
                let mut row = vec![
                    c.label.clone(),
                    format!("{}/{}", c.trial_ids.len(), c.trials),
                    c.epoch.to_string(),
                ];
                row.extend(shown.iter().map(|m| mean_std(metric(c, m).as_ref())));
                t.add_row(row);
            }
            out.push_str(&render(t, 1));
            out.push('\n');
            if !r.stop_by.is_empty() {
                out.push_str(&stop_table(r));
            }
            out
        }
    }
}

/// Each configuration's `by` metric at every candidate stopping epoch.
fn stop_table(r: &pb::ResultsResponse) -> String {
    let mut epochs: Vec<u32> = r
        .configurations
        .iter()
        .flat_map(|c| c.candidates.iter().map(|s| s.epoch))
        .collect();
    epochs.sort_unstable();
    epochs.dedup();
    let mut header = vec!["configuration".to_string()];
    header.extend(epochs.iter().map(|e| format!("epoch {e}")));
    header.push("chosen".to_string());
    let mut t = table(header);
    for c in &r.configurations {
        let mut row = vec![c.label.clone()];
        row.extend(epochs.iter().map(|e| {
            c.candidates
                .iter()
                .find(|s| s.epoch == *e)
                .map_or("not reached".to_string(), |s| mean_std(s.by.as_ref()))
        }));
        row.push(c.epoch.to_string());
        t.add_row(row);
    }
    let t = render(t, 1);
    format!(
        "\nstopping epoch: the candidate with the {} mean {} over the configuration's repeats \
         (NaN left out; ties to the earlier epoch)\n\n{t}\n",
        if r.stop_maximize { "highest" } else { "lowest" },
        r.stop_by
    )
}

fn number_csv(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else {
        v.to_string()
    }
}

fn alternative_words(a: pb::Alternative) -> &'static str {
    match a {
        pb::Alternative::Less => "less (mean of a < mean of b)",
        pb::Alternative::Greater => "greater (mean of a > mean of b)",
        pb::Alternative::TwoSided | pb::Alternative::Unspecified => "two-sided",
    }
}

fn group_json(g: Option<&pb::Group>) -> Value {
    let g = g.cloned().unwrap_or_default();
    json!({
        "label": g.label, "config_keys": g.config_keys, "trial_ids": g.trial_ids,
        "epochs": g.epochs, "values": g.values, "summary": summary_json(g.summary.as_ref()),
    })
}

/// Welch t-tests: one comparison in detail, or with `all_pairs` a matrix of
/// p-values (row against column) in a table and one line per pair in CSV.
pub fn compare(
    r: &pb::CompareResponse,
    selection: Option<&pb::EpochSelection>,
    all_pairs: bool,
    format: Format,
) -> String {
    let alternative = pb::Alternative::try_from(r.alternative).unwrap_or_default();
    match format {
        Format::Json => {
            let comparisons: Vec<Value> = r
                .comparisons
                .iter()
                .map(|c| {
                    json!({
                        "a": group_json(c.a.as_ref()), "b": group_json(c.b.as_ref()),
                        "statistic": c.statistic, "df": c.df, "pvalue": c.pvalue,
                    })
                })
                .collect();
            json!({
                "metric": r.metric, "split": r.split,
                "alternative": alternative_words(alternative), "comparisons": comparisons,
            })
            .to_string()
        }
        Format::Csv => {
            let mut rows = vec![
                [
                    "a",
                    "a_n",
                    "a_nan",
                    "a_mean",
                    "a_std",
                    "a_values",
                    "b",
                    "b_n",
                    "b_nan",
                    "b_mean",
                    "b_std",
                    "b_values",
                    "statistic",
                    "df",
                    "pvalue",
                ]
                .map(String::from)
                .to_vec(),
            ];
            for c in &r.comparisons {
                let mut row = Vec::new();
                for g in [&c.a, &c.b] {
                    let g = g.clone().unwrap_or_default();
                    let s = g.summary.unwrap_or_default();
                    row.extend([
                        g.label,
                        s.n.to_string(),
                        s.nan.to_string(),
                        number_csv(s.mean),
                        number_csv(s.std),
                        g.values
                            .iter()
                            .map(|v| number_csv(*v))
                            .collect::<Vec<_>>()
                            .join(" "),
                    ]);
                }
                row.extend([c.statistic, c.df, c.pvalue].map(number_csv));
                rows.push(row);
            }
            csv_text(rows)
        }
        Format::Table => {
            let mut out = format!(
                "{} {} at {}; Welch's t-test, alternative: {}\n\n",
                r.split,
                r.metric,
                epoch_words(selection),
                alternative_words(alternative)
            );
            if all_pairs {
                out.push_str(&pairs_matrix(r));
                return out;
            }
            for c in &r.comparisons {
                let mut t = table(
                    ["group", "configuration", "n", "mean", "std", "values"]
                        .map(String::from)
                        .to_vec(),
                );
                for (name, g) in [("a", &c.a), ("b", &c.b)] {
                    let g = g.clone().unwrap_or_default();
                    let s = g.summary.unwrap_or_default();
                    let n = if s.nan > 0 {
                        format!("{} (+{} NaN)", s.n, s.nan)
                    } else {
                        s.n.to_string()
                    };
                    t.add_row(vec![
                        name.to_string(),
                        g.label,
                        n,
                        number(s.mean),
                        number(s.std),
                        values_text(&g.values),
                    ]);
                }
                out.push_str(&format!(
                    "{}\n\nt = {}  df = {}  p = {}\n",
                    render(t, 2),
                    number(c.statistic),
                    number(c.df),
                    p_text(c.pvalue)
                ));
                if c.pvalue.is_nan() {
                    out.push_str(
                        "(NaN, as scipy gives: a NaN value, a group of one, or equal means without variance)\n",
                    );
                }
            }
            out
        }
    }
}

fn p_text(p: f64) -> String {
    if p.is_nan() {
        "NaN".to_string()
    } else {
        if p != 0.0 && p < 1e-4 {
            format!("{p:.3e}")
        } else {
            format!("{p:.4}")
        }
    }
}

/// p-values of every ordered pair, row (a) against column (b).
fn pairs_matrix(r: &pb::CompareResponse) -> String {
    let mut labels: Vec<String> = Vec::new();
    for c in &r.comparisons {
        for g in [&c.a, &c.b].into_iter().flatten() {
            if !labels.contains(&g.label) {
                labels.push(g.label.clone());
            }
        }
    }
    let mut header = vec!["p-value: a (row) vs b (column)".to_string()];
    header.extend(labels.iter().cloned());
    let mut t = table(header);
    for a in &labels {
        let mut row = vec![a.clone()];
        row.extend(labels.iter().map(|b| {
            r.comparisons
                .iter()
                .find(|c| {
                    c.a.as_ref().is_some_and(|g| &g.label == a)
                        && c.b.as_ref().is_some_and(|g| &g.label == b)
                })
                .map_or("-".to_string(), |c| p_text(c.pvalue))
        }));
        t.add_row(row);
    }
    format!("{}\n", render(t, 1))
}

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
