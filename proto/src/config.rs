//! A trial's configuration: the notebook's settings, which fill whatever a
//! sweep or a local run leaves out, and the one validation every
//! configuration passes, whether it comes from a sweep file, `worker train`
//! or a lease.

use std::fmt;

use crate::names::{init_scheme_name, parse_init_scheme};
use crate::v1::{InitScheme, TrialConfig};

/// The notebook's training settings, which a trial takes where its sweep
/// says nothing: PyTorch's default init for both networks, no glob ReLU,
/// Adam with lr 1e-4 and betas (0.9, 0.999), batch 4, 300 epochs, seed 0,
/// no dataset.
pub fn notebook_defaults() -> TrialConfig {
    let default_init = parse_init_scheme("default").expect("a known name");
    TrialConfig {
        gen_init: Some(default_init),
        disc_init: Some(default_init),
        glob_relu: false,
        lr: 1e-4,
        beta1: 0.9,
        beta2: 0.999,
        batch_size: 4,
        epochs: 300,
        seed: 0,
        dataset: None,
    }
}

/// What is wrong with a configuration, and in which field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfig {
    /// The field as a sweep file names it, e.g. `lr` or `glob_relu`.
    pub field: &'static str,
    /// Why it was refused.
    pub message: String,
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for InvalidConfig {}

/// A learning rate: positive and finite.
pub fn check_lr(lr: f64) -> Result<(), String> {
    if lr.is_finite() && lr > 0.0 {
        Ok(())
    } else {
        Err(format!("must be a positive number, got {lr}"))
    }
}

/// An Adam beta: in [0, 1).
pub fn check_beta(beta: f64) -> Result<(), String> {
    if (0.0..1.0).contains(&beta) {
        Ok(())
    } else {
        Err(format!("must lie in [0, 1), got {beta}"))
    }
}

/// A batch size or an epoch count: at least 1.
pub fn check_count(n: u64) -> Result<(), String> {
    if n >= 1 {
        Ok(())
    } else {
        Err(format!("must be at least 1, got {n}"))
    }
}

/// Smart init of the generator was designed for the ReLU after `glob.9`.
pub fn check_glob_relu(gen_init: &InitScheme, glob_relu: bool) -> Result<(), String> {
    if init_scheme_name(gen_init).as_deref() == Some("smart") && !glob_relu {
        Err(
            "smart init of the generator needs glob_relu: true (the notebook's GenWithSmartInit)"
                .into(),
        )
    } else {
        Ok(())
    }
}

/// Checks everything the message's types cannot: both inits named and
/// complete, positive sizes, a sane learning rate and betas, and smart
/// init only with the ReLU it was designed for. The dataset and seed are
/// not checked here.
pub fn validate(c: &TrialConfig) -> Result<(), InvalidConfig> {
    let at = |field: &'static str| move |message: String| InvalidConfig { field, message };
    let init = |scheme: &Option<InitScheme>, field: &'static str| {
        scheme
            .as_ref()
            .filter(|s| init_scheme_name(s).is_some())
            .copied()
            .ok_or_else(|| at(field)("is missing or incomplete".to_string()))
    };
    let gen_init = init(&c.gen_init, "gen_init")?;
    init(&c.disc_init, "disc_init")?;
    check_lr(c.lr).map_err(at("lr"))?;
    check_beta(c.beta1).map_err(at("beta1"))?;
    check_beta(c.beta2).map_err(at("beta2"))?;
    check_count(c.batch_size.into()).map_err(at("batch_size"))?;
    check_count(c.epochs.into()).map_err(at("epochs"))?;
    check_glob_relu(&gen_init, c.glob_relu).map_err(at("glob_relu"))?;
    Ok(())
}

/// Trials whose keys are equal can train in one pack, as one computation:
/// the same batch size on the same dataset (what shapes the tensors);
/// everything else may differ.
pub fn pack_key(c: &TrialConfig) -> String {
    use prost::Message;
    let dataset: String = c
        .dataset
        .as_ref()
        .map(|d| d.encode_to_vec())
        .unwrap_or_default()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("batch {} data {dataset}", c.batch_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notebook_defaults_are_valid() {
        assert_eq!(validate(&notebook_defaults()), Ok(()));
    }

    #[test]
    fn each_bad_field_is_named() {
        let smart = parse_init_scheme("smart").unwrap();
        type Spoil = fn(&mut TrialConfig);
        let cases: [(&str, Spoil); 9] = [
            ("lr", |c| c.lr = 0.0),
            ("lr", |c| c.lr = f64::INFINITY),
            ("beta1", |c| c.beta1 = 1.0),
            ("beta2", |c| c.beta2 = -0.1),
            ("batch_size", |c| c.batch_size = 0),
            ("epochs", |c| c.epochs = 0),
            ("gen_init", |c| c.gen_init = None),
            ("disc_init", |c| {
                c.disc_init = Some(InitScheme { scheme: None })
            }),
            ("glob_relu", |c| {
                c.gen_init = parse_init_scheme("smart").ok();
                c.glob_relu = false;
            }),
        ];
        for (field, spoil) in cases {
            let mut c = notebook_defaults();
            spoil(&mut c);
            assert_eq!(validate(&c).unwrap_err().field, field);
        }
        let fine = TrialConfig {
            gen_init: Some(smart),
            glob_relu: true,
            ..notebook_defaults()
        };
        assert_eq!(validate(&fine), Ok(()));
    }
}
