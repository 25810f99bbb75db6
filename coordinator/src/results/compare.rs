//! Welch's t-tests of one metric between groups of configurations.

use proto::metrics::{Metric, Split};
use proto::v1 as pb;

use crate::convert;
use crate::error::Error;
use crate::packed;
use crate::stats;
use crate::store::{Store, status};

use super::configurations::{Configuration, select};
use super::epochs::{Chosen, Index, choose, selection, values_at};
use super::{invalid, split_or_default, summary, sweep};

/// One metric's values at each configuration's chosen epoch, as a
/// compare request reads them.
struct Read {
    metric: Metric,
    split: Split,
    chosen: Vec<Chosen>,
    index: Index,
}

async fn read(store: &Store, r: &pb::CompareRequest) -> Result<Read, Error> {
    let sweep = sweep(store, r.sweep_id).await?;
    let split = split_or_default(&r.split)?;
    if r.metric.is_empty() {
        return Err(invalid("a metric to compare is required"));
    }
    let metric = Metric::parse(&r.metric, split).map_err(invalid)?;
    let selection = selection(&sweep, split, r.epoch.as_ref())?;
    let (chosen, index) = choose(store, &sweep, &selection).await?;
    Ok(Read {
        metric,
        split,
        chosen,
        index,
    })
}

impl Read {
    /// The values of the configurations `members` as one group.
    fn group(&self, members: &[usize], label: String) -> pb::Group {
        let mut g = pb::Group {
            label,
            ..Default::default()
        };
        let slot = packed::slot_of(self.split, self.metric);
        for &i in members {
            let Chosen {
                configuration: c,
                epoch,
                ..
            } = &self.chosen[i];
            let epoch = *epoch;
            g.config_keys.push(c.key.clone());
            for (t, v) in values_at(c, &self.index, epoch, slot) {
                g.stopped += u32::from(t.status == status::STOPPED);
                g.trial_ids.push(t.id);
                g.epochs.push(epoch);
                g.values.push(v);
            }
        }
        g.summary = Some(summary(&g.values));
        g
    }

    /// Each configuration as a group of its own.
    fn per_configuration(&self) -> Vec<pb::Group> {
        self.chosen
            .iter()
            .enumerate()
            .map(|(i, c)| self.group(&[i], c.configuration.label.clone()))
            .collect()
    }
}

/// Each configuration's values of the request's metric (its `a`, `b` and
/// `all_pairs` aside) as a group, with the metric's and split's names: what
/// a table of every pair's test is made from.
pub async fn configuration_groups(
    store: &Store,
    r: &pb::CompareRequest,
) -> Result<(String, String, Vec<pb::Group>), Error> {
    let read = read(store, r).await?;
    Ok((
        read.metric.name().to_string(),
        read.split.name().to_string(),
        read.per_configuration(),
    ))
}

/// Welch's t-test of one metric between two groups of configurations,
/// or between every ordered pair of configurations.
pub async fn compare(store: &Store, r: &pb::CompareRequest) -> Result<pb::CompareResponse, Error> {
    let alternative = convert::alternative(r.alternative)
        .ok_or_else(|| invalid(format!("unknown alternative {}", r.alternative)))?;
    let read = read(store, r).await?;
    let pairs: Vec<(pb::Group, pb::Group)> = if r.all_pairs {
        // Each configuration's group once; n (n - 1) pairs of copies.
        let groups = read.per_configuration();
        let n = groups.len();
        (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| (groups[i].clone(), groups[j].clone()))
            .collect()
    } else {
        let configurations: Vec<&Configuration> =
            read.chosen.iter().map(|c| &c.configuration).collect();
        let a = select(&configurations, &r.a, "a")?;
        let b = select(&configurations, &r.b, "b")?;
        if let Some(&shared) = a.iter().find(|i| b.contains(i)) {
            return Err(invalid(format!(
                "groups a and b both hold configuration {}",
                configurations[shared].label
            )));
        }
        vec![(read.group(&a, r.a.join(" ")), read.group(&b, r.b.join(" ")))]
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
        metric: read.metric.name().to_string(),
        split: read.split.name().to_string(),
        alternative: r.alternative,
        comparisons,
    })
}
