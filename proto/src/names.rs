//! Human names of init schemes, as sweep files, CLIs and result tables use
//! them: `default`, `smart` and `kaiming_{fan_in|fan_out}[_normal][_zero_bias]`
//! (uniform unless `_normal`; biases keep PyTorch's default unless
//! `_zero_bias`). The same names as the fixtures' `init_stats.json`.

use crate::v1::{Empty, FanMode, InitDistribution, InitScheme, KaimingInit, init_scheme::Scheme};

/// The accepted forms, for error messages.
pub const INIT_SCHEME_FORMS: &str =
    "default, smart or kaiming_{fan_in|fan_out}[_normal][_zero_bias]";

/// Parses an init scheme name.
pub fn parse_init_scheme(name: &str) -> Result<InitScheme, String> {
    let unknown = || format!("unknown init scheme {name:?}; expected {INIT_SCHEME_FORMS}");
    let scheme = match name {
        "default" => Scheme::PytorchDefault(Empty {}),
        "smart" => Scheme::Smart(Empty {}),
        _ => {
            let rest = name.strip_prefix("kaiming_").ok_or_else(unknown)?;
            let (fan, rest) = if let Some(r) = rest.strip_prefix("fan_in") {
                (FanMode::FanIn, r)
            } else if let Some(r) = rest.strip_prefix("fan_out") {
                (FanMode::FanOut, r)
            } else {
                return Err(unknown());
            };
            let (distribution, rest) = match rest.strip_prefix("_normal") {
                Some(r) => (InitDistribution::Normal, r),
                None => (InitDistribution::Uniform, rest),
            };
            let zero_bias = match rest {
                "" => false,
                "_zero_bias" => true,
                _ => return Err(unknown()),
            };
            Scheme::Kaiming(KaimingInit {
                fan: fan.into(),
                distribution: distribution.into(),
                zero_bias,
            })
        }
    };
    Ok(InitScheme {
        scheme: Some(scheme),
    })
}

/// The name of an init scheme; `None` for an incomplete message.
pub fn init_scheme_name(init: &InitScheme) -> Option<String> {
    Some(match init.scheme.as_ref()? {
        Scheme::PytorchDefault(_) => "default".to_string(),
        Scheme::Smart(_) => "smart".to_string(),
        Scheme::Kaiming(k) => {
            let fan = match FanMode::try_from(k.fan).ok()? {
                FanMode::FanIn => "fan_in",
                FanMode::FanOut => "fan_out",
                FanMode::Unspecified => return None,
            };
            let dist = match InitDistribution::try_from(k.distribution).ok()? {
                InitDistribution::Uniform => "",
                InitDistribution::Normal => "_normal",
                InitDistribution::Unspecified => return None,
            };
            let bias = if k.zero_bias { "_zero_bias" } else { "" };
            format!("kaiming_{fan}{dist}{bias}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_are_refused() {
        for name in [
            "default",
            "smart",
            "kaiming_fan_in",
            "kaiming_fan_out_zero_bias",
            "kaiming_fan_in_normal",
            "kaiming_fan_out_normal_zero_bias",
        ] {
            let scheme = parse_init_scheme(name).unwrap();
            assert_eq!(init_scheme_name(&scheme).as_deref(), Some(name));
        }
        for bad in [
            "kaiming",
            "kaiming_fan_up",
            "kaiming_fan_in_zero",
            "xavier",
            "",
        ] {
            let err = parse_init_scheme(bad).unwrap_err();
            assert!(err.contains(INIT_SCHEME_FORMS), "{err}");
        }
    }
}
