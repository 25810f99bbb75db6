//! The one list of metrics: what a worker reports each epoch, under which
//! names and splits, and whether higher is better. Workers, the store, sweep
//! files, results and reports all read it from here.

use std::fmt;

use crate::v1;

/// The two halves of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    /// The items trained on.
    Train,
    /// The held-out items.
    Test,
}

impl Split {
    /// Both splits, train first.
    pub const ALL: [Split; 2] = [Split::Train, Split::Test];

    /// The split's name as stored and typed: `train` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }

    /// Parses `train` or `test`.
    pub fn parse(name: &str) -> Result<Split, String> {
        Split::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| format!("unknown split {:?}; expected train or test", shown(name)))
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name as an error shows it: at most 40 characters, so that a hostile
/// megabyte is not echoed back.
fn shown(name: &str) -> String {
    const MAX: usize = 40;
    if name.chars().count() <= MAX {
        name.to_string()
    } else {
        let head: String = name.chars().take(MAX).collect();
        format!("{head}...")
    }
}

/// Every metric a worker reports, ordered as [`Metric::all`] lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Mean over items of BCE(D(x, y), 1) + BCE(D(x, G(x, z)), 0).
    DiscLoss,
    /// Mean over items of BCE(D(x, G(x, z)), 1).
    GenLoss,
    /// Share of the 2N real and fake decisions the discriminator got right.
    DiscAccuracy,
    /// Share of cells predicted right.
    CellAccuracy,
    /// Share of boards predicted right in every cell.
    BoardAccuracy,
    /// Share of real spawns that were predicted as spawns.
    SpawnRecall,
    /// Share of predicted spawns that were real spawns (NaN with none).
    SpawnPrecision,
    /// Share of predicted spawns shaped as one of the seven pieces.
    SpawnValidity,
    /// Mean over the epoch's steps of the discriminator's step loss.
    StepDiscLoss,
    /// Mean over the epoch's steps of the generator's step loss.
    StepGenLoss,
    /// Exactly-zero gradient entries of the generator in the last step.
    GenZeroGrads,
    /// Exactly-zero gradient entries of the discriminator in the last step.
    DiscZeroGrads,
    /// Wall time of training plus evaluation.
    EpochSeconds,
    /// Wall time of the training steps alone.
    TrainSeconds,
    /// Training items per second of the whole epoch.
    ItemsPerSecond,
}

impl Metric {
    /// The evaluation metrics, computed on each split after every epoch.
    pub const EVALUATED: [Metric; 8] = [
        Metric::DiscLoss,
        Metric::GenLoss,
        Metric::DiscAccuracy,
        Metric::CellAccuracy,
        Metric::BoardAccuracy,
        Metric::SpawnRecall,
        Metric::SpawnPrecision,
        Metric::SpawnValidity,
    ];

    /// The training step's own figures, reported for the train split.
    pub const STEP: [Metric; 7] = [
        Metric::StepDiscLoss,
        Metric::StepGenLoss,
        Metric::GenZeroGrads,
        Metric::DiscZeroGrads,
        Metric::EpochSeconds,
        Metric::TrainSeconds,
        Metric::ItemsPerSecond,
    ];

    /// The notebook's closing table, in its order.
    pub const TABLE: [Metric; 5] = [
        Metric::BoardAccuracy,
        Metric::SpawnRecall,
        Metric::SpawnPrecision,
        Metric::SpawnValidity,
        Metric::CellAccuracy,
    ];

    /// The metric's name as stored, typed and printed.
    pub fn name(self) -> &'static str {
        match self {
            Metric::DiscLoss => "disc_loss",
            Metric::GenLoss => "gen_loss",
            Metric::DiscAccuracy => "disc_accuracy",
            Metric::CellAccuracy => "cell_accuracy",
            Metric::BoardAccuracy => "board_accuracy",
            Metric::SpawnRecall => "spawn_recall",
            Metric::SpawnPrecision => "spawn_precision",
            Metric::SpawnValidity => "spawn_validity",
            Metric::StepDiscLoss => "step_disc_loss",
            Metric::StepGenLoss => "step_gen_loss",
            Metric::GenZeroGrads => "gen_zero_grads",
            Metric::DiscZeroGrads => "disc_zero_grads",
            Metric::EpochSeconds => "epoch_seconds",
            Metric::TrainSeconds => "train_seconds",
            Metric::ItemsPerSecond => "items_per_second",
        }
    }

    /// Whether higher is better: accuracies, recall, precision, validity
    /// and throughput; losses, zero gradients and times are better low.
    pub fn maximize(self) -> bool {
        matches!(
            self,
            Metric::DiscAccuracy
                | Metric::CellAccuracy
                | Metric::BoardAccuracy
                | Metric::SpawnRecall
                | Metric::SpawnPrecision
                | Metric::SpawnValidity
                | Metric::ItemsPerSecond
        )
    }

    /// The splits the metric is reported for: both for an evaluation
    /// metric, train alone for the training step's own figures.
    pub fn splits(self) -> &'static [Split] {
        if Metric::EVALUATED.contains(&self) {
            &Split::ALL
        } else {
            &[Split::Train]
        }
    }

    /// Every metric: the evaluation metrics, then the training step's.
    pub fn all() -> impl Iterator<Item = Metric> {
        Metric::EVALUATED.into_iter().chain(Metric::STEP)
    }

    /// The metrics reported for `split`, in [`Metric::all`] order.
    pub fn of_split(split: Split) -> impl Iterator<Item = Metric> {
        Metric::all().filter(move |m| m.splits().contains(&split))
    }

    /// Parses a metric of `split` by name; the error lists the choices.
    pub fn parse(name: &str, split: Split) -> Result<Metric, String> {
        Metric::of_split(split)
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Metric::of_split(split).map(Metric::name).collect();
                format!(
                    "unknown {split} metric {:?}; expected one of {}",
                    shown(name),
                    known.join(", ")
                )
            })
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One value of one metric of one split (NaN where undefined).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricValue {
    /// The split the value was computed on.
    pub split: Split,
    /// Which metric.
    pub metric: Metric,
    /// NaN where the metric is undefined (e.g. precision with no predictions).
    pub value: f64,
}

impl From<MetricValue> for v1::Metric {
    fn from(m: MetricValue) -> Self {
        v1::Metric {
            split: m.split.name().to_string(),
            name: m.metric.name().to_string(),
            value: m.value,
        }
    }
}

impl TryFrom<&v1::Metric> for MetricValue {
    type Error = String;

    /// A reported metric, refused when its split or name is unknown, the
    /// metric is not reported for that split, or the value is infinite (a
    /// value is finite, or NaN where the metric is undefined).
    fn try_from(m: &v1::Metric) -> Result<Self, String> {
        let split = Split::parse(&m.split)?;
        let metric = Metric::parse(&m.name, split)?;
        if m.value.is_infinite() {
            return Err(format!("{split} {metric} cannot be {}", m.value));
        }
        Ok(MetricValue {
            split,
            metric,
            value: m.value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_for_each_of_their_splits_only() {
        let mut reported = 0;
        for split in Split::ALL {
            assert_eq!(Split::parse(split.name()), Ok(split));
            for metric in Metric::of_split(split) {
                assert_eq!(Metric::parse(metric.name(), split), Ok(metric));
                reported += 1;
            }
        }
        // Eight evaluation metrics on each split, seven of the training step.
        assert_eq!(reported, 23);
        let err = Metric::parse("step_gen_loss", Split::Test).unwrap_err();
        assert!(err.contains("unknown test metric") && err.contains("board_accuracy"));
        assert!(Split::parse("evil").is_err());
    }

    #[test]
    fn losses_and_times_are_minimised_accuracies_maximised() {
        assert!(!Metric::DiscLoss.maximize());
        assert!(!Metric::StepGenLoss.maximize());
        assert!(!Metric::EpochSeconds.maximize());
        assert!(Metric::BoardAccuracy.maximize());
        assert!(Metric::ItemsPerSecond.maximize());
    }

    #[test]
    fn a_proto_metric_round_trips_and_unknown_ones_are_refused() {
        let value = MetricValue {
            split: Split::Test,
            metric: Metric::SpawnRecall,
            value: 0.25,
        };
        let wire = v1::Metric::from(value);
        assert_eq!(MetricValue::try_from(&wire), Ok(value));
        for (split, name) in [
            ("evil", "board_accuracy"),
            ("test", "nope"),
            ("test", "train_seconds"),
        ] {
            let bad = v1::Metric {
                split: split.into(),
                name: name.into(),
                value: 0.0,
            };
            assert!(MetricValue::try_from(&bad).is_err(), "{split} {name}");
        }
        for (value, fine) in [
            (f64::INFINITY, false),
            (f64::NEG_INFINITY, false),
            (f64::NAN, true),
            (-7.5, true),
        ] {
            let m = v1::Metric {
                split: "test".into(),
                name: "gen_loss".into(),
                value,
            };
            assert_eq!(MetricValue::try_from(&m).is_ok(), fine, "{value}");
        }
    }
}
