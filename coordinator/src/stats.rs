//! Summary statistics and Welch's t-test, equal to numpy and to
//! `scipy.stats.ttest_ind(a, b, equal_var=False, alternative=...)`,
//! including scipy's edge cases: NaN in, NaN out; a 0/0 Welch-Satterthwaite
//! df (both variances zero, or n = 1) reported as df = 1.

use statrs::distribution::{ContinuousCDF, StudentsT};

/// Mean, sample standard deviation (ddof 1) and count; NaN where undefined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// How many values.
    pub n: usize,
    /// Their mean (NaN without values).
    pub mean: f64,
    /// Their sample standard deviation, ddof 1 (NaN below two values).
    pub std: f64,
}

/// n, mean and sample std of `values`, NaN included as given.
pub fn summarize(values: &[f64]) -> Summary {
    let n = values.len();
    let mean = if n == 0 {
        f64::NAN
    } else {
        values.iter().sum::<f64>() / n as f64
    };
    Summary {
        n,
        mean,
        std: variance(values, mean).sqrt(),
    }
}

/// The summary of the values that are not NaN, and how many were NaN.
pub fn summarize_present(values: &[f64]) -> (Summary, usize) {
    let present: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    (summarize(&present), values.len() - present.len())
}

/// Sample variance with ddof 1 (NaN for fewer than 2 values).
fn variance(values: &[f64], mean: f64) -> f64 {
    let n = values.len();
    if n < 2 {
        return f64::NAN;
    }
    values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
}

/// The alternative hypothesis about mean(a) - mean(b).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alternative {
    /// The mean of a is less than the mean of b.
    Less,
    /// The mean of a is greater than the mean of b.
    Greater,
    /// The means differ.
    TwoSided,
}

impl std::str::FromStr for Alternative {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "less" => Ok(Self::Less),
            "greater" => Ok(Self::Greater),
            "two-sided" => Ok(Self::TwoSided),
            other => Err(format!(
                "unknown alternative {other:?}; expected less, greater or two-sided"
            )),
        }
    }
}

/// A Welch t-test result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Welch {
    /// The t statistic.
    pub statistic: f64,
    /// Welch-Satterthwaite degrees of freedom.
    pub df: f64,
    /// The p-value under the alternative.
    pub pvalue: f64,
}

/// Welch's unequal-variance t-test of `a` against `b`.
pub fn welch(a: &[f64], b: &[f64], alternative: Alternative) -> Welch {
    if a.iter().chain(b).any(|v| v.is_nan()) {
        return Welch {
            statistic: f64::NAN,
            df: f64::NAN,
            pvalue: f64::NAN,
        };
    }
    let (sa, sb) = (summarize(a), summarize(b));
    let (va, vb) = (sa.std.powi(2) / sa.n as f64, sb.std.powi(2) / sb.n as f64);
    let se2 = va + vb;
    let statistic = (sa.mean - sb.mean) / se2.sqrt();
    let df = se2.powi(2) / (va.powi(2) / (sa.n as f64 - 1.0) + vb.powi(2) / (sb.n as f64 - 1.0));
    let df = if df.is_nan() { 1.0 } else { df };
    let pvalue = if statistic.is_nan() {
        f64::NAN
    } else {
        let t = StudentsT::new(0.0, 1.0, df).expect("a positive df");
        match alternative {
            Alternative::Less => t.cdf(statistic),
            Alternative::Greater => t.sf(statistic),
            Alternative::TwoSided => 2.0 * t.sf(statistic.abs()),
        }
    };
    Welch {
        statistic,
        df,
        pvalue,
    }
}
