//! Results, comparisons, learning curves and sweep status as a user reads
//! them: aligned tables, CSV and JSON. NaN prints as `NaN` in tables and CSV
//! and as `null` in JSON.

mod compare;
mod curves;
pub mod html;
mod results;
mod status;
mod tokens;

use comfy_table::{CellAlignment, ContentArrangement, Table, presets};
use proto::v1 as pb;
use serde_json::{Value, json};

pub use compare::compare;
use compare::p_text;
pub use curves::curves;
pub use results::results;
pub use status::{detail, detail_json, sweep_json, sweeps, trial_json};
pub use tokens::tokens;

/// The three ways a report can be printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for a terminal.
    Table,
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON document; NaN as `null`.
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

/// `mean ± std`, with the NaN count when there were any, as tables print
/// it.
pub fn mean_std(s: Option<&pb::Summary>) -> String {
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

/// Values a table cell lists one by one; beyond, the cell says how many.
const VALUES_SHOWN: usize = 12;

/// Each value, or for many the first few and how many there are (CSV and
/// JSON list every one).
fn values_text(values: &[f64]) -> String {
    let shown: Vec<String> = values
        .iter()
        .take(VALUES_SHOWN)
        .map(|v| number(*v))
        .collect();
    if values.len() <= VALUES_SHOWN {
        shown.join(" ")
    } else {
        format!(
            "{} ... ({} values; --csv or --json lists each)",
            shown.join(" "),
            values.len()
        )
    }
}

fn number_csv(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_lists_a_few_values_and_counts_many() {
        assert_eq!(values_text(&[0.5, 0.25]), "0.5000 0.2500");
        let many = vec![0.5; 25_000];
        let text = values_text(&many);
        assert!(
            text.ends_with("... (25000 values; --csv or --json lists each)"),
            "{text}"
        );
        assert_eq!(text.matches("0.5000").count(), VALUES_SHOWN);
    }
}
