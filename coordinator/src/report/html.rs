//! One self-contained HTML file of a sweep, to attach to a paper or a
//! message: the learning curves of one metric grouped by configuration
//! (mean over repeats, ±std band), the results table with 95% confidence
//! intervals, the matrix of Welch p-values, and each configuration's
//! latest predictions on the sample items beside the true boards. Styles and drawings are
//! inline (SVG); the file loads nothing and runs no script.

use std::fmt::Write;

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use proto::metrics::Metric;
use proto::v1 as pb;
use statrs::distribution::{ContinuousCDF, StudentsT};

use super::{mean_std, number, p_text};

/// What a report shows, as the API answered it.
#[derive(Debug)]
pub struct Inputs {
    /// Results at each configuration's last epoch (summaries suffice).
    pub results: pb::ResultsResponse,
    /// Every configuration against every other, two-sided.
    pub pairs: pb::CompareResponse,
    /// The curves of the same metric and split.
    pub curves: pb::LearningCurvesResponse,
    /// Each configuration's latest predictions on the sample items.
    pub predictions: pb::PredictionsResponse,
}

/// Line colours, one per configuration (repeating past ten).
const PALETTE: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{padding:.25em .6em;border-bottom:1px solid #ddd;text-align:right}\
td:first-child,th:first-child{text-align:left}.p001{background:#1a9850;color:#fff}.p01{background:#91cf60}\
.p05{background:#d9ef8b}.legend span{display:inline-block;margin-right:1.2em}\
.legend i{display:inline-block;width:1.2em;height:.25em;vertical-align:middle;margin-right:.3em}\
svg text{font-size:11px;fill:#444}.samples{display:flex;flex-wrap:wrap;gap:1em}\
.sample{margin:0;text-align:center;font-size:.8em;color:#555}.sample svg{margin:0 1px}";

/// The 95% confidence interval of a mean from n values with sample std
/// `std` (Student's t); None below two values.
pub fn confidence_interval(s: &pb::Summary) -> Option<(f64, f64)> {
    if s.n < 2 || s.mean.is_nan() || s.std.is_nan() {
        return None;
    }
    let t = StudentsT::new(0.0, 1.0, f64::from(s.n - 1))
        .ok()?
        .inverse_cdf(0.975);
    let half = t * s.std / f64::from(s.n).sqrt();
    Some((s.mean - half, s.mean + half))
}

/// The whole report.
pub fn html(inputs: &Inputs) -> String {
    let sweep = inputs.results.sweep.clone().unwrap_or_default();
    let mut out = String::new();
    let title = format!("Sweep {} · {}", sweep.id, sweep.name);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        text(&title),
        text(&title)
    );
    let _ = writeln!(
        out,
        "<p>{} trials: {} completed, {} stopped early, {} failed, {} cancelled, {} running, \
         {} queued. The sweep's metric: {} {} ({} is better).</p>",
        sweep.trials,
        sweep.completed,
        sweep.stopped,
        sweep.failed,
        sweep.cancelled,
        sweep.running,
        sweep.queued,
        text(&sweep.metric_split),
        text(&sweep.metric),
        if sweep.maximize { "higher" } else { "lower" }
    );
    curves_section(&mut out, &inputs.curves);
    results_section(&mut out, &inputs.results);
    pairs_section(&mut out, &inputs.pairs);
    predictions_section(&mut out, &inputs.predictions);
    out.push_str("</body></html>\n");
    out
}

fn curves_section(out: &mut String, curves: &pb::LearningCurvesResponse) {
    let _ = writeln!(
        out,
        "<h2>Learning curves: {} {}</h2>\n<p>Mean over each configuration's repeats, \
         with a band of ±1 sample std.</p>",
        text(&curves.split),
        text(&curves.metric)
    );
    let points = |c: &pb::Curve| -> Vec<(f64, f64, f64)> {
        c.points
            .iter()
            .filter_map(|p| {
                let s = p.summary?;
                (!s.mean.is_nan()).then_some((f64::from(p.epoch), s.mean, s.std))
            })
            .collect()
    };
    let all: Vec<(f64, f64, f64)> = curves.curves.iter().flat_map(points).collect();
    if all.is_empty() {
        out.push_str("<p>No epochs stored yet.</p>\n");
        return;
    }
    let spread = |p: &(f64, f64, f64)| if p.2.is_nan() { 0.0 } else { p.2 };
    let (x0, x1) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (mut y0, mut y1) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), p| {
        (a.min(p.1 - spread(p)), b.max(p.1 + spread(p)))
    });
    if y1 - y0 < 1e-12 {
        (y0, y1) = (y0 - 0.5, y1 + 0.5);
    }
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let (w, h, left, bottom, top, right) = (760.0, 380.0, 60.0, 30.0, 10.0, 10.0);
    let sx = |x: f64| left + (x - x0) / (x1 - x0) * (w - left - right);
    let sy = |y: f64| top + (y1 - y) / (y1 - y0) * (h - top - bottom);
    let _ = writeln!(
        out,
        "<svg class=\"curves\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         xmlns=\"http://www.w3.org/2000/svg\" role=\"img\">"
    );
    // Axes with five ticks each.
    let _ = writeln!(
        out,
        "<path d=\"M{left},{top} V{} H{}\" stroke=\"#888\" fill=\"none\"/>",
        h - bottom,
        w - right
    );
    for i in 0..=4 {
        let f = f64::from(i) / 4.0;
        let (x, y) = (x0 + f * (x1 - x0), y0 + f * (y1 - y0));
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            sx(x),
            h - 12.0,
            x.round(),
            left - 6.0,
            sy(y) + 4.0,
            number(y)
        );
    }
    let mut legend = String::from("<p class=\"legend\">");
    for (i, c) in curves.curves.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let p = points(c);
        if p.is_empty() {
            continue;
        }
        let band: Vec<String> = p
            .iter()
            .map(|q| format!("{:.1},{:.1}", sx(q.0), sy(q.1 + spread(q))))
            .chain(
                p.iter()
                    .rev()
                    .map(|q| format!("{:.1},{:.1}", sx(q.0), sy(q.1 - spread(q)))),
            )
            .collect();
        let line: Vec<String> = p
            .iter()
            .map(|q| format!("{:.1},{:.1}", sx(q.0), sy(q.1)))
            .collect();
        let _ = writeln!(
            out,
            "<g data-configuration=\"{}\"><polygon class=\"band\" points=\"{}\" fill=\"{color}\" \
             fill-opacity=\"0.15\"/><polyline class=\"mean\" points=\"{}\" fill=\"none\" \
             stroke=\"{color}\" stroke-width=\"1.5\"/></g>",
            attr(&c.label),
            band.join(" "),
            line.join(" ")
        );
        let _ = write!(
            legend,
            "<span><i style=\"background:{color}\"></i>{}</span>",
            text(&c.label)
        );
    }
    out.push_str("</svg>\n");
    legend.push_str("</p>\n");
    out.push_str(&legend);
}

fn results_section(out: &mut String, results: &pb::ResultsResponse) {
    let _ = writeln!(
        out,
        "<h2>Results: {} split, each configuration's last epoch</h2>\n<p>Mean ± sample std \
         over repeats [95% confidence interval of the mean, Student's t]; n counts the \
         trials with a value (NaN values are left out and counted).</p>\n<table class=\"results\">",
        text(&results.split)
    );
    out.push_str("<tr><th>configuration</th><th>epoch</th><th>n</th>");
    for m in Metric::TABLE {
        let _ = write!(out, "<th>{}</th>", m.name());
    }
    out.push_str("</tr>\n");
    for c in &results.configurations {
        let _ = write!(
            out,
            "<tr data-configuration=\"{}\"><td>{}</td><td>{}</td><td>{} / {}</td>",
            attr(&c.label),
            text(&c.label),
            c.epoch,
            c.reported,
            c.trials
        );
        for m in Metric::TABLE {
            let summary = c
                .metrics
                .iter()
                .find(|s| s.name == m.name())
                .and_then(|s| s.summary);
            let mut cell = mean_std(summary.as_ref());
            if let Some((lo, hi)) = summary.as_ref().and_then(confidence_interval) {
                let _ = write!(cell, " [{}, {}]", number(lo), number(hi));
            }
            let _ = write!(out, "<td data-metric=\"{}\">{}</td>", m.name(), text(&cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

fn pairs_section(out: &mut String, pairs: &pb::CompareResponse) {
    let _ = writeln!(
        out,
        "<h2>Welch's t-test p-values: {} {}</h2>\n<p>Row against column, two-sided, at each \
         configuration's last epoch. <span class=\"p001\">&lt; 0.001</span> \
         <span class=\"p01\">&lt; 0.01</span> <span class=\"p05\">&lt; 0.05</span></p>\n\
         <table class=\"pvalues\">",
        text(&pairs.split),
        text(&pairs.metric)
    );
    let mut labels: Vec<&str> = Vec::new();
    for c in &pairs.comparisons {
        for g in [&c.a, &c.b].into_iter().flatten() {
            if !labels.contains(&g.label.as_str()) {
                labels.push(&g.label);
            }
        }
    }
    out.push_str("<tr><th></th>");
    for l in &labels {
        let _ = write!(out, "<th>{}</th>", text(l));
    }
    out.push_str("</tr>\n");
    for a in &labels {
        let _ = write!(out, "<tr><th>{}</th>", text(a));
        for b in &labels {
            let found = pairs.comparisons.iter().find(|c| {
                c.a.as_ref().is_some_and(|g| g.label == *a)
                    && c.b.as_ref().is_some_and(|g| g.label == *b)
            });
            match found {
                None => out.push_str("<td>-</td>"),
                Some(c) => {
                    let class = match c.pvalue {
                        p if p < 0.001 => " class=\"p001\"",
                        p if p < 0.01 => " class=\"p01\"",
                        p if p < 0.05 => " class=\"p05\"",
                        _ => "",
                    };
                    let _ = write!(out, "<td{class}>{}</td>", p_text(c.pvalue));
                }
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

/// Pixels per board cell.
const CELL: usize = 6;

/// A board (220 cells, 22 rows of 10) as inline SVG; with `truth`, cells
/// that differ from it are red.
fn board(out: &mut String, cells: &[u8], truth: Option<&[u8]>, title: &str) {
    let (w, h) = (10 * CELL + 1, 22 * CELL + 1);
    let _ = write!(
        out,
        "<svg class=\"board\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\"><title>{title}</title>\
         <rect width=\"{w}\" height=\"{h}\" fill=\"#f4f4f4\" stroke=\"#ccc\"/>"
    );
    for (i, &c) in cells.iter().enumerate() {
        let wrong = truth.is_some_and(|t| t.get(i) != Some(&c));
        let fill = match (c == 1, wrong) {
            (true, false) => "#334",
            (true, true) => "#d62728",
            (false, true) => "#f7b6b6",
            (false, false) => continue,
        };
        let _ = write!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"{s}\" height=\"{s}\" fill=\"{fill}\"/>",
            (i % 10) * CELL + 1,
            (i / 10) * CELL + 1,
            s = CELL - 1
        );
    }
    out.push_str("</svg>");
}

fn predictions_section(out: &mut String, predictions: &pb::PredictionsResponse) {
    out.push_str(
        "<h2>Predictions on test items</h2>\n<p>Per configuration, the latest predictions of \
         its trial furthest along: input, predicted (red: cells that differ from the truth) \
         and true next board.</p>\n",
    );
    if predictions.configurations.is_empty() {
        out.push_str("<p>No predictions stored yet.</p>\n");
        return;
    }
    for c in &predictions.configurations {
        let _ = writeln!(
            out,
            "<h3>{}</h3>\n<p>Trial {} (repeat {}) at epoch {}.</p>\n<div class=\"samples\">",
            text(&c.label),
            c.trial_id,
            c.repeat,
            c.epoch
        );
        for s in &c.samples {
            out.push_str("<figure class=\"sample\"><div>");
            board(out, &s.input, None, "input");
            board(out, &s.predicted, Some(&s.truth), "predicted");
            board(out, &s.truth, None, "true");
            let _ = writeln!(
                out,
                "</div><figcaption>{} · item {}{}</figcaption></figure>",
                text(&s.kind),
                s.item,
                if s.predicted == s.truth {
                    " · exact"
                } else {
                    ""
                }
            );
        }
        out.push_str("</div>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_uses_students_t() {
        // n = 3: t(0.975, 2) = 4.302652729911275 (scipy.stats.t.ppf).
        let s = pb::Summary {
            n: 3,
            nan: 0,
            mean: 0.5,
            std: 0.1,
        };
        let (lo, hi) = confidence_interval(&s).unwrap();
        let half = 4.302_652_729_911_275 * 0.1 / 3f64.sqrt();
        assert!((lo - (0.5 - half)).abs() < 1e-9 && (hi - (0.5 + half)).abs() < 1e-9);
        assert_eq!(confidence_interval(&pb::Summary { n: 1, ..s }), None);
    }
}
