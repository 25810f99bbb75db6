//! Weight init schemes: PyTorch's default, the notebook's Kaiming variants
//! (`get_init_fn`) and its "smart" init (`GenWithSmartInit`,
//! `DiscWithSmartInit`).

use rand::{Rng, RngExt};
use rand_distr::{Distribution as _, Normal};
use serde::{Deserialize, Serialize};

/// Which fan Kaiming init scales by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FanMode {
    FanIn,
    FanOut,
}

/// The distribution Kaiming init samples from (same variance either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    Uniform,
    Normal,
}

/// How one network's Conv2d and Linear layers are initialised. BatchNorm
/// always starts at weight 1, bias 0, running mean 0, running variance 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "scheme", rename_all = "snake_case", deny_unknown_fields)]
pub enum InitScheme {
    /// PyTorch's own: weights and biases U(+-1/sqrt(fan_in)).
    Default,
    /// `kaiming_{dist}_(mode=fan, nonlinearity="relu")` on every weight;
    /// biases zero when `zero_bias`, else PyTorch's default.
    Kaiming {
        fan: FanMode,
        dist: Distribution,
        zero_bias: bool,
    },
    /// Kaiming uniform (fan_in) and bias 0.01 on every layer that feeds a
    /// ReLU; the output layer keeps PyTorch's default.
    Smart,
}

/// A Conv2d or Linear layer as init sees it.
#[derive(Debug, Clone, Copy)]
pub struct LayerShape {
    pub fan_in: usize,
    pub fan_out: usize,
    /// The network's output layer (generator `head.9`, discriminator
    /// `body.10`), which smart init leaves at PyTorch's default.
    pub is_output: bool,
}

/// The distribution of every entry of a weight or bias.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fill {
    Uniform(f64),
    Normal(f64),
    Constant(f64),
}

impl Fill {
    /// Samples `n` values in f32.
    pub fn sample<R: Rng>(self, n: usize, rng: &mut R) -> Vec<f32> {
        match self {
            Fill::Uniform(bound) => (0..n)
                .map(|_| ((rng.random::<f64>() * 2.0 - 1.0) * bound) as f32)
                .collect(),
            Fill::Normal(std) => {
                let normal = Normal::new(0.0, std).expect("a finite std");
                (0..n).map(|_| normal.sample(rng) as f32).collect()
            }
            Fill::Constant(value) => vec![value as f32; n],
        }
    }
}

/// `kaiming_{uniform,normal}_` with ReLU gain sqrt(2).
fn kaiming(fan: usize, dist: Distribution) -> Fill {
    let std = (2.0 / fan as f64).sqrt();
    match dist {
        Distribution::Uniform => Fill::Uniform(3f64.sqrt() * std),
        Distribution::Normal => Fill::Normal(std),
    }
}

fn pytorch_default(layer: LayerShape) -> Fill {
    Fill::Uniform(1.0 / (layer.fan_in as f64).sqrt())
}

impl InitScheme {
    /// The weight's distribution for `layer`.
    pub fn weight(self, layer: LayerShape) -> Fill {
        match self {
            InitScheme::Default => pytorch_default(layer),
            InitScheme::Kaiming { fan, dist, .. } => kaiming(
                match fan {
                    FanMode::FanIn => layer.fan_in,
                    FanMode::FanOut => layer.fan_out,
                },
                dist,
            ),
            InitScheme::Smart if layer.is_output => pytorch_default(layer),
            InitScheme::Smart => kaiming(layer.fan_in, Distribution::Uniform),
        }
    }

    /// The bias's distribution for `layer`.
    pub fn bias(self, layer: LayerShape) -> Fill {
        match self {
            InitScheme::Kaiming {
                zero_bias: true, ..
            } => Fill::Constant(0.0),
            InitScheme::Smart if !layer.is_output => Fill::Constant(0.01),
            _ => pytorch_default(layer),
        }
    }
}

/// Names as in the fixtures' `init_stats.json`: `default`, `smart`, and
/// `kaiming_{fan_in|fan_out}[_normal][_zero_bias]` (uniform unless
/// `_normal`; biases keep PyTorch's default unless `_zero_bias`).
impl std::fmt::Display for InitScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitScheme::Default => f.write_str("default"),
            InitScheme::Smart => f.write_str("smart"),
            InitScheme::Kaiming {
                fan,
                dist,
                zero_bias,
            } => {
                f.write_str(match fan {
                    FanMode::FanIn => "kaiming_fan_in",
                    FanMode::FanOut => "kaiming_fan_out",
                })?;
                if *dist == Distribution::Normal {
                    f.write_str("_normal")?;
                }
                if *zero_bias {
                    f.write_str("_zero_bias")?;
                }
                Ok(())
            }
        }
    }
}

impl std::str::FromStr for InitScheme {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let unknown = || {
            format!(
                "unknown init scheme {s:?}; expected default, smart or \
                 kaiming_{{fan_in|fan_out}}[_normal][_zero_bias]"
            )
        };
        match s {
            "default" => return Ok(InitScheme::Default),
            "smart" => return Ok(InitScheme::Smart),
            _ => {}
        }
        let rest = s.strip_prefix("kaiming_").ok_or_else(unknown)?;
        let (fan, rest) = if let Some(r) = rest.strip_prefix("fan_in") {
            (FanMode::FanIn, r)
        } else if let Some(r) = rest.strip_prefix("fan_out") {
            (FanMode::FanOut, r)
        } else {
            return Err(unknown());
        };
        let (dist, rest) = match rest.strip_prefix("_normal") {
            Some(r) => (Distribution::Normal, r),
            None => (Distribution::Uniform, rest),
        };
        let zero_bias = match rest {
            "" => false,
            "_zero_bias" => true,
            _ => return Err(unknown()),
        };
        Ok(InitScheme::Kaiming {
            fan,
            dist,
            zero_bias,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_names_round_trip() {
        for name in [
            "default",
            "smart",
            "kaiming_fan_in",
            "kaiming_fan_out_zero_bias",
            "kaiming_fan_in_normal",
            "kaiming_fan_out_normal_zero_bias",
        ] {
            let scheme: InitScheme = name.parse().unwrap();
            assert_eq!(scheme.to_string(), name);
        }
        for bad in [
            "kaiming",
            "kaiming_fan_up",
            "kaiming_fan_in_zero",
            "xavier",
            "",
        ] {
            assert!(bad.parse::<InitScheme>().is_err(), "{bad}");
        }
    }
}
