//! Welch t-tests: one comparison in detail, or the matrix of p-values.

use proto::v1 as pb;
use serde_json::{Value, json};

use super::{
    Format, csv_text, epoch_words, number, number_csv, render, summary_json, table, values_text,
};

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
        "stopped_early": g.stopped,
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
                    let mut n = if s.nan > 0 {
                        format!("{} (+{} NaN)", s.n, s.nan)
                    } else {
                        s.n.to_string()
                    };
                    if g.stopped > 0 {
                        n.push_str(&format!(", {} stopped early", g.stopped));
                    }
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

/// A p-value as tables show it.
pub(super) fn p_text(p: f64) -> String {
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
