//! The sweep file's `early_stopping`, checked and resolved into the
//! proto's [`EarlyStopping`] (the rule itself is
//! [`crate::early_stopping`]).
//!
//! ```yaml
//! early_stopping:
//!   method: asha           # or median
//!   grace: 10              # the first rung (default 1)
//!   reduction_factor: 3    # asha: rungs at grace * 3^k (default 3)
//!   interval: 10           # median: rungs every 10 epochs from grace (default 1)
//!   rungs: [10, 30, 90]    # or the rungs themselves, instead of grace and interval
//!   min_configurations: 3  # median: others judged at the rung first (default 3)
//!   min_repeats: 2         # repeats at the rung before judging (default: all)
//! ```

use marked_yaml::Spanned;
use proto::v1::{EarlyStopping, EarlyStoppingMethod};
use serde::Deserialize;

use super::{SpecError, whole};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EarlyStoppingFile {
    method: Option<Spanned<String>>,
    grace: Option<Spanned<String>>,
    reduction_factor: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    rungs: Option<Spanned<Vec<Spanned<String>>>>,
    min_configurations: Option<Spanned<String>>,
    min_repeats: Option<Spanned<String>>,
}

const FIELD: &str = "early_stopping";

/// A whole number of `early_stopping.<name>` of at least `min`.
fn at_least(value: &Spanned<String>, name: &str, min: u32) -> Result<u32, SpecError> {
    let field = format!("{FIELD}.{name}");
    let n = whole::<u32>(value, &field)?;
    if n < min {
        return Err(SpecError::at(
            value,
            field,
            format!("must be at least {min}, got {n}"),
        ));
    }
    Ok(n)
}

/// The rule of a sweep with `repeats` trials per configuration.
pub(super) fn rule(
    file: &Spanned<EarlyStoppingFile>,
    repeats: u32,
) -> Result<EarlyStopping, SpecError> {
    let method_at = file.method.as_ref().ok_or_else(|| {
        SpecError::at(
            file,
            format!("{FIELD}.method"),
            "missing; expected median or asha",
        )
    })?;
    let method = match method_at.as_str() {
        "median" => EarlyStoppingMethod::Median,
        "asha" => EarlyStoppingMethod::Asha,
        other => {
            return Err(SpecError::at(
                method_at,
                format!("{FIELD}.method"),
                format!("unknown method {other:?}; expected median or asha"),
            ));
        }
    };
    let only_for =
        |given: &Option<Spanned<String>>, name: &str, wanted: EarlyStoppingMethod| match given {
            Some(v) if method != wanted => Err(SpecError::at(
                v,
                format!("{FIELD}.{name}"),
                format!(
                    "only method {} takes {name}",
                    if wanted == EarlyStoppingMethod::Asha {
                        "asha"
                    } else {
                        "median"
                    }
                ),
            )),
            _ => Ok(()),
        };
    only_for(
        &file.reduction_factor,
        "reduction_factor",
        EarlyStoppingMethod::Asha,
    )?;
    only_for(&file.interval, "interval", EarlyStoppingMethod::Median)?;
    only_for(
        &file.min_configurations,
        "min_configurations",
        EarlyStoppingMethod::Median,
    )?;
    let rungs = match &file.rungs {
        None => Vec::new(),
        Some(list) => {
            if let Some((v, name)) = [(&file.grace, "grace"), (&file.interval, "interval")]
                .into_iter()
                .find_map(|(v, name)| v.as_ref().map(|v| (v, name)))
            {
                return Err(SpecError::at(
                    v,
                    format!("{FIELD}.{name}"),
                    "give either rungs or grace and interval, which derive them",
                ));
            }
            if list.is_empty() {
                return Err(SpecError::at(
                    list,
                    format!("{FIELD}.rungs"),
                    "must list at least one epoch",
                ));
            }
            let mut rungs: Vec<u32> = Vec::with_capacity(list.len());
            for (i, v) in list.iter().enumerate() {
                let n = at_least(v, &format!("rungs[{i}]"), 1)?;
                if rungs.last().is_some_and(|last| *last >= n) {
                    return Err(SpecError::at(
                        v,
                        format!("{FIELD}.rungs[{i}]"),
                        "rungs must increase",
                    ));
                }
                rungs.push(n);
            }
            rungs
        }
    };
    let setting = |v: &Option<Spanned<String>>, name: &str, min: u32, default: u32| {
        v.as_ref().map_or(Ok(default), |v| at_least(v, name, min))
    };
    let min_repeats = match &file.min_repeats {
        None => 0,
        Some(v) => match at_least(v, "min_repeats", 1)? {
            n if n <= repeats => n,
            n => {
                return Err(SpecError::at(
                    v,
                    format!("{FIELD}.min_repeats"),
                    format!("is {n}, but the sweep runs {repeats} repeats per configuration"),
                ));
            }
        },
    };
    let asha = method == EarlyStoppingMethod::Asha;
    Ok(EarlyStopping {
        method: method.into(),
        rungs,
        grace: setting(&file.grace, "grace", 1, 1)?,
        reduction_factor: if asha {
            setting(&file.reduction_factor, "reduction_factor", 2, 3)?
        } else {
            0
        },
        interval: if asha {
            0
        } else {
            setting(&file.interval, "interval", 1, 1)?
        },
        min_configurations: if asha {
            0
        } else {
            setting(&file.min_configurations, "min_configurations", 1, 3)?
        },
        min_repeats,
    })
}
