//! Welch's t-tests of one metric between groups of configurations.

use proto::metrics::Metric;
use proto::v1 as pb;

use crate::convert;
use crate::error::Error;
use crate::stats;
use crate::store::{Store, status};

use super::configurations::{Configuration, select};
use super::epochs::{Chosen, choose, chosen_values, selection, values_at};
use super::{invalid, split_or_default, summary, sweep};

/// Welch's t-test of one metric between two groups of configurations,
/// or between every ordered pair of configurations.
pub async fn compare(store: &Store, r: &pb::CompareRequest) -> Result<pb::CompareResponse, Error> {
    let sweep = sweep(store, r.sweep_id).await?;
    let split = split_or_default(&r.split)?;
    if r.metric.is_empty() {
        return Err(invalid("a metric to compare is required"));
    }
    let metric = Metric::parse(&r.metric, split).map_err(invalid)?;
    let alternative = convert::alternative(r.alternative)
        .ok_or_else(|| invalid(format!("unknown alternative {}", r.alternative)))?;
    let selection = selection(&sweep, split, r.epoch.as_ref())?;
    let chosen = choose(store, sweep.id, &selection).await?;
    let index = chosen_values(store, sweep.id, split, &chosen, Some(metric)).await?;
    let group = |members: &[usize], label: String| {
        let mut g = pb::Group {
            label,
            ..Default::default()
        };
        for &i in members {
            let Chosen {
                configuration: c,
                epoch,
                ..
            } = &chosen[i];
            let epoch = *epoch;
            g.config_keys.push(c.key.clone());
            for (t, v) in values_at(c, &index, epoch, metric) {
                g.stopped += u32::from(t.status == status::STOPPED);
                g.trial_ids.push(t.id);
                g.epochs.push(epoch);
                g.values.push(v);
            }
        }
        g.summary = Some(summary(&g.values));
        g
    };
    let pairs: Vec<(pb::Group, pb::Group)> = if r.all_pairs {
        // Each configuration's group once; n (n - 1) pairs of copies.
        let groups: Vec<pb::Group> = chosen
            .iter()
            .enumerate()
            .map(|(i, c)| group(&[i], c.configuration.label.clone()))
            .collect();
        let n = groups.len();
        (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| (groups[i].clone(), groups[j].clone()))
            .collect()
    } else {
        let configurations: Vec<&Configuration> = chosen.iter().map(|c| &c.configuration).collect();
        let a = select(&configurations, &r.a, "a")?;
        let b = select(&configurations, &r.b, "b")?;
        if let Some(&shared) = a.iter().find(|i| b.contains(i)) {
            return Err(invalid(format!(
                "groups a and b both hold configuration {}",
                configurations[shared].label
            )));
        }
        vec![(group(&a, r.a.join(" ")), group(&b, r.b.join(" ")))]
    };
    let comparisons = pairs
        .into_iter()
        .map(|(a, b)| {
            let w = stats::welch(&a.values, &b.values, alternative);
            pb::Comparison {
                a: Some(a),
                b: Some(b),
                statistic: w.statistic,
                df: w.df,
                pvalue: w.pvalue,
            }
        })
        .collect();
    Ok(pb::CompareResponse {
        metric: metric.name().to_string(),
        split: split.name().to_string(),
        alternative: r.alternative,
        comparisons,
    })
}
