//! The results table by configuration, and the stopping-epoch table.

use proto::metrics::Metric;
use proto::v1 as pb;
use serde_json::{Value, json};

use super::html::confidence_interval;
use super::{Format, csv_text, epoch_words, mean_std, number_csv, render, summary_json, table};

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
        Metric::TABLE.iter().map(|m| m.name().to_string()).collect()
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
                            v["ci95"] = json!(
                                m.summary
                                    .as_ref()
                                    .and_then(confidence_interval)
                                    .map(|(low, high)| [low, high])
                            );
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
                        "stop_candidates": candidates, "stopped_early": c.stopped,
                        "proposal": c.proposal, "proposed_by": c.proposed_by,
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
            let mut header: Vec<String> = [
                "configuration",
                "config_key",
                "trials",
                "n",
                "epoch",
                "stopped_early",
                "proposal",
                "proposed_by",
            ]
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
                    c.reported.to_string(),
                    c.epoch.to_string(),
                    c.stopped.to_string(),
                    c.proposal.to_string(),
                    c.proposed_by.clone(),
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
            let stopped: u32 = r.configurations.iter().map(|c| c.stopped).sum();
            let searched = sweep.method == "bayes";
            let mut header: Vec<String> =
                ["configuration", "n", "epoch"].map(String::from).to_vec();
            if searched {
                header.insert(0, "proposed".into());
            }
            if stopped > 0 {
                header.push("stopped early".into());
            }
            header.extend(shown.iter().cloned());
            let mut t = table(header);
            for c in &r.configurations {
                let mut row = vec![
                    c.label.clone(),
                    format!("{}/{}", c.reported, c.trials),
                    c.epoch.to_string(),
                ];
                if searched {
                    row.insert(0, format!("#{} {}", c.proposal, c.proposed_by));
                }
                if stopped > 0 {
                    row.push(if c.stopped > 0 {
                        format!("{} at epoch {}", c.stopped, c.epoch)
                    } else {
                        String::new()
                    });
                }
                row.extend(shown.iter().map(|m| mean_std(metric(c, m).as_ref())));
                t.add_row(row);
            }
            out.push_str(&render(t, 1));
            out.push('\n');
            if stopped > 0 {
                out.push_str(&format!(
                    "\n{stopped} trials were stopped early by the sweep's rule; a configuration \
                     stopped early is read at the rung it was stopped at (its `epoch`); see \
                     `coordinator status {}` for the reasons\n",
                    sweep.id
                ));
            }
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
