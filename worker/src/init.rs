//! Weight init schemes: PyTorch's default, the notebook's Kaiming variants
//! (`get_init_fn`) and its "smart" init (`GenWithSmartInit`,
//! `DiscWithSmartInit`).

use proto::names::{init_scheme_name, parse_init_scheme};
use proto::v1::{self as pb, init_scheme::Scheme};
use rand::{Rng, RngExt};
use rand_distr::{Distribution as _, Normal};
use serde::{Deserialize, Serialize};

/// Which fan Kaiming init scales by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FanMode {
    /// Scale by the fan in (weight columns x kernel area).
    FanIn,
    /// Scale by the fan out (weight rows x kernel area).
    FanOut,
}

/// The distribution Kaiming init samples from (same variance either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    /// U(-b, b) with b = gain x sqrt(3 / fan).
    Uniform,
    /// N(0, std) with std = gain / sqrt(fan).
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
        /// The fan that scales the weights.
        fan: FanMode,
        /// Uniform or normal weights.
        dist: Distribution,
        /// Biases start at zero instead of PyTorch's default.
        zero_bias: bool,
    },
    /// Kaiming uniform (fan_in) and bias 0.01 on every layer that feeds a
    /// ReLU; the output layer keeps PyTorch's default.
    Smart,
}

/// A Conv2d or Linear layer as init sees it.
#[derive(Debug, Clone, Copy)]
pub struct LayerShape {
    /// Input features x kernel area.
    pub fan_in: usize,
    /// Output features x kernel area.
    pub fan_out: usize,
    /// The network's output layer (generator `head.9`, discriminator
    /// `body.10`), which smart init leaves at PyTorch's default.
    pub is_output: bool,
}

/// The distribution of every entry of a weight or bias.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fill {
    /// U(-bound, bound).
    Uniform(f64),
    /// N(0, std).
    Normal(f64),
    /// Every entry the same value.
    Constant(f64),
}

impl Fill {
    /// Samples `n` values in f32.
    pub fn sample<R: Rng + ?Sized>(self, n: usize, rng: &mut R) -> Vec<f32> {
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

impl From<InitScheme> for pb::InitScheme {
    fn from(s: InitScheme) -> Self {
        let scheme = match s {
            InitScheme::Default => Scheme::PytorchDefault(pb::Empty {}),
            InitScheme::Smart => Scheme::Smart(pb::Empty {}),
            InitScheme::Kaiming {
                fan,
                dist,
                zero_bias,
            } => Scheme::Kaiming(pb::KaimingInit {
                fan: match fan {
                    FanMode::FanIn => pb::FanMode::FanIn,
                    FanMode::FanOut => pb::FanMode::FanOut,
                }
                .into(),
                distribution: match dist {
                    Distribution::Uniform => pb::InitDistribution::Uniform,
                    Distribution::Normal => pb::InitDistribution::Normal,
                }
                .into(),
                zero_bias,
            }),
        };
        pb::InitScheme {
            scheme: Some(scheme),
        }
    }
}

impl TryFrom<&pb::InitScheme> for InitScheme {
    type Error = String;

    fn try_from(p: &pb::InitScheme) -> Result<Self, String> {
        let incomplete = || format!("incomplete init scheme {p:?}");
        Ok(match p.scheme.as_ref().ok_or_else(incomplete)? {
            Scheme::PytorchDefault(_) => InitScheme::Default,
            Scheme::Smart(_) => InitScheme::Smart,
            Scheme::Kaiming(k) => InitScheme::Kaiming {
                fan: match pb::FanMode::try_from(k.fan) {
                    Ok(pb::FanMode::FanIn) => FanMode::FanIn,
                    Ok(pb::FanMode::FanOut) => FanMode::FanOut,
                    _ => return Err(incomplete()),
                },
                dist: match pb::InitDistribution::try_from(k.distribution) {
                    Ok(pb::InitDistribution::Uniform) => Distribution::Uniform,
                    Ok(pb::InitDistribution::Normal) => Distribution::Normal,
                    _ => return Err(incomplete()),
                },
                zero_bias: k.zero_bias,
            },
        })
    }
}

/// The names of `proto::names`: `default`, `smart`,
/// `kaiming_{fan_in|fan_out}[_normal][_zero_bias]`.
impl std::fmt::Display for InitScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = init_scheme_name(&(*self).into()).expect("a complete scheme");
        f.write_str(&name)
    }
}

impl std::str::FromStr for InitScheme {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        InitScheme::try_from(&parse_init_scheme(s)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_survives_its_name_and_the_proto_message() {
        let mut schemes = vec![InitScheme::Default, InitScheme::Smart];
        for fan in [FanMode::FanIn, FanMode::FanOut] {
            for dist in [Distribution::Uniform, Distribution::Normal] {
                for zero_bias in [false, true] {
                    schemes.push(InitScheme::Kaiming {
                        fan,
                        dist,
                        zero_bias,
                    });
                }
            }
        }
        for scheme in schemes {
            assert_eq!(scheme.to_string().parse::<InitScheme>(), Ok(scheme));
            assert_eq!(
                InitScheme::try_from(&pb::InitScheme::from(scheme)),
                Ok(scheme)
            );
        }
        assert!("xavier".parse::<InitScheme>().is_err());
    }
}
