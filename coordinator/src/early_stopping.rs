//! Early stopping by configuration, never by a single noisy seed.
//!
//! A sweep's rule ([`EarlyStopping`]) names rungs: epochs at which a
//! configuration is judged. A configuration is judged at a rung once
//! `min_repeats` of its trials (all of them by default) have reached it,
//! on the mean over those repeats of the sweep's metric (NaN values left
//! out; a configuration with no value counts as the worst). It is compared
//! with the other configurations at that rung over the same repeats, that
//! is the same seeds (a paired comparison: repeat r of every configuration
//! has seed `seed + r`):
//!
//! - **median**: stopped when its mean is worse than the median of the
//!   other configurations' means, once `min_configurations` others have
//!   been judged there (the median stopping rule of Vizier and Ray Tune, by
//!   configuration).
//! - **asha**: stopped when its mean is worse than the `1 - 1/η` quantile
//!   of the means at the rung, its own included (asynchronous successive
//!   halving as Ray Tune's ASHA stops trials, by configuration; the first
//!   configuration at a rung always goes on).
//!
//! A stopped configuration's running trials get
//! [`Directive::StoppedEarly`](proto::v1::Directive) at their next report
//! and its queued trials never start. A stopped trial is not a failure: it
//! keeps its epochs and shows as `stopped` with its rung and reason.

use proto::v1::{EarlyStopping, EarlyStoppingMethod};

use crate::spec::Objective;
use crate::stats;

/// The rungs of `rule` for a configuration of `epochs` epochs: each below
/// its last epoch, in order.
pub fn rungs(rule: &EarlyStopping, epochs: u32) -> Vec<u32> {
    let below = |r: &u32| *r < epochs;
    if !rule.rungs.is_empty() {
        return rule.rungs.iter().copied().filter(below).collect();
    }
    let grace = rule.grace.max(1);
    let mut out = Vec::new();
    let mut rung = u64::from(grace);
    while rung < u64::from(epochs) {
        out.push(rung as u32);
        rung = match method(rule) {
            EarlyStoppingMethod::Asha => rung * u64::from(rule.reduction_factor.max(2)),
            _ => rung + u64::from(rule.interval.max(1)),
        };
    }
    out
}

/// Whether `epoch` is a rung of `rule` for a configuration of `epochs`.
pub fn is_rung(rule: &EarlyStopping, epoch: u32, epochs: u32) -> bool {
    rungs(rule, epochs).contains(&epoch)
}

fn method(rule: &EarlyStopping) -> EarlyStoppingMethod {
    EarlyStoppingMethod::try_from(rule.method).unwrap_or(EarlyStoppingMethod::Median)
}

/// A configuration's standing at a rung: the mean over its repeats there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Standing {
    /// The mean (NaN when every repeat's value is NaN).
    pub mean: f64,
    /// Repeats it is over.
    pub repeats: usize,
}

impl Standing {
    /// The standing of these values (NaN left out of the mean).
    pub fn of(values: &[f64]) -> Self {
        Self {
            mean: stats::summarize_present(values).0.mean,
            repeats: values.len(),
        }
    }
}

/// Whether `a` is worse than `b` for the objective (NaN is the worst).
fn worse(a: f64, b: f64, objective: &Objective) -> bool {
    match (a.is_nan(), b.is_nan()) {
        (true, false) => true,
        (_, true) => false,
        _ if objective.maximize => a < b,
        _ => a > b,
    }
}

/// numpy's linear-interpolation percentile (`q` in 0..=1) of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let (low, high) = (position.floor() as usize, position.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (position - low as f64)
}

/// The verdict on a configuration standing at a rung, among the other
/// configurations' means judged there: None to go on, or the reason it is
/// stopped.
pub fn judge(
    rule: &EarlyStopping,
    objective: &Objective,
    rung: u32,
    this: Standing,
    others: &[f64],
) -> Option<String> {
    let name = format!("{} {}", objective.split, objective.metric);
    // Finite means, oriented so that larger is better.
    let sign = if objective.maximize { 1.0 } else { -1.0 };
    let mut finite: Vec<f64> = others
        .iter()
        .filter(|v| v.is_finite())
        .map(|v| sign * v)
        .collect();
    finite.sort_by(f64::total_cmp);
    match method(rule) {
        EarlyStoppingMethod::Asha => {
            let eta = rule.reduction_factor.max(2);
            if this.mean.is_finite() {
                finite.push(sign * this.mean);
                finite.sort_by(f64::total_cmp);
            }
            if finite.is_empty() {
                return None;
            }
            let cutoff = sign * quantile(&finite, 1.0 - 1.0 / f64::from(eta));
            worse(this.mean, cutoff, objective).then(|| {
                format!(
                    "asha at epoch {rung}: mean {name} {:.4} over {} repeats is outside the top 1/{eta} \
                     of the {} configurations at this rung (cutoff {cutoff:.4})",
                    this.mean,
                    this.repeats,
                    others.len() + 1
                )
            })
        }
        _ => {
            let needed = rule.min_configurations.max(1) as usize;
            if others.len() < needed || finite.is_empty() {
                return None;
            }
            let median = sign * quantile(&finite, 0.5);
            worse(this.mean, median, objective).then(|| {
                format!(
                    "median rule at epoch {rung}: mean {name} {:.4} over {} repeats is worse than \
                     the median {median:.4} of the other {} configurations at this rung",
                    this.mean,
                    this.repeats,
                    others.len()
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use proto::metrics::{Metric, Split};

    use super::*;

    fn asha(eta: u32, grace: u32) -> EarlyStopping {
        EarlyStopping {
            method: EarlyStoppingMethod::Asha.into(),
            grace,
            reduction_factor: eta,
            ..Default::default()
        }
    }

    fn median(min_configurations: u32) -> EarlyStopping {
        EarlyStopping {
            method: EarlyStoppingMethod::Median.into(),
            grace: 1,
            interval: 1,
            min_configurations,
            ..Default::default()
        }
    }

    const MAX: Objective = Objective {
        metric: Metric::BoardAccuracy,
        split: Split::Test,
        maximize: true,
    };
    const MIN: Objective = Objective {
        metric: Metric::GenLoss,
        split: Split::Test,
        maximize: false,
    };

    fn standing(mean: f64) -> Standing {
        Standing { mean, repeats: 3 }
    }

    #[test]
    fn rungs_follow_the_method_and_stay_below_the_last_epoch() {
        assert_eq!(rungs(&asha(3, 1), 100), [1, 3, 9, 27, 81]);
        assert_eq!(rungs(&asha(2, 5), 40), [5, 10, 20]);
        assert_eq!(rungs(&asha(2, 5), 5), Vec::<u32>::new());
        let m = EarlyStopping {
            interval: 10,
            grace: 5,
            ..median(3)
        };
        assert_eq!(rungs(&m, 40), [5, 15, 25, 35]);
        let listed = EarlyStopping {
            rungs: vec![2, 10, 50],
            ..asha(3, 1)
        };
        assert_eq!(rungs(&listed, 50), [2, 10]);
        assert!(is_rung(&listed, 10, 50));
        assert!(!is_rung(&listed, 50, 50));
    }

    #[test]
    fn the_first_configuration_at_an_asha_rung_goes_on() {
        assert_eq!(judge(&asha(3, 1), &MAX, 1, standing(0.1), &[]), None);
    }

    #[test]
    fn asha_stops_what_lies_outside_the_top_fraction() {
        // numpy: np.percentile([0.1, 0.5, 0.9], 50) == 0.5.
        let rule = asha(2, 1);
        let stopped = judge(&rule, &MAX, 4, standing(0.1), &[0.5, 0.9]).expect("stopped");
        assert!(stopped.contains("asha at epoch 4"), "{stopped}");
        assert!(stopped.contains("cutoff 0.5000"), "{stopped}");
        assert_eq!(judge(&rule, &MAX, 4, standing(0.5), &[0.1, 0.9]), None);
        // Equal to the cutoff goes on.
        assert_eq!(judge(&rule, &MAX, 4, standing(0.5), &[0.5]), None);
        // np.percentile([0.1, 0.2, 0.3, 0.9], 100 * (1 - 1/3)) == 0.3.
        assert!(judge(&asha(3, 1), &MAX, 4, standing(0.29), &[0.1, 0.3, 0.9]).is_some());
        assert_eq!(
            judge(&asha(3, 1), &MAX, 4, standing(0.3), &[0.1, 0.29, 0.9]),
            None
        );
        // Minimised: a high loss is the bad one.
        assert!(judge(&rule, &MIN, 4, standing(2.0), &[1.0, 0.5]).is_some());
        assert_eq!(judge(&rule, &MIN, 4, standing(0.4), &[1.0, 2.0]), None);
    }

    #[test]
    fn the_median_rule_waits_for_enough_others() {
        let rule = median(2);
        assert_eq!(judge(&rule, &MAX, 3, standing(0.0), &[0.9]), None);
        let stopped = judge(&rule, &MAX, 3, standing(0.0), &[0.9, 0.8]).expect("stopped");
        assert!(stopped.contains("median 0.8500"), "{stopped}");
        assert!(stopped.contains("other 2 configurations"), "{stopped}");
        assert_eq!(judge(&rule, &MAX, 3, standing(0.86), &[0.9, 0.8]), None);
        assert!(judge(&rule, &MIN, 3, standing(0.9), &[0.1, 0.2]).is_some());
    }

    #[test]
    fn a_configuration_without_a_value_is_the_worst() {
        assert!(judge(&median(1), &MAX, 3, standing(f64::NAN), &[0.0]).is_some());
        assert!(judge(&asha(2, 1), &MIN, 3, standing(f64::NAN), &[5.0]).is_some());
        // Nothing finite to compare with: go on.
        assert_eq!(judge(&median(1), &MAX, 3, standing(0.5), &[f64::NAN]), None);
    }
}
