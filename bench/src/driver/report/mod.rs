//! The report: Markdown tables ([`markdown`]), raw JSON ([`json`]) and SVG
//! plots ([`plots`]) from the records, and the helpers they share: medians
//! and ranges over repetitions, ratios against the reference servers.

mod json;
mod markdown;
mod plots;
mod scaling;

pub use json::json;
pub use markdown::markdown;
pub use plots::plots;

use super::stats::median;
use super::{Case, Plan, Record};
use crate::servers::Impl;

/// The references every ratio is taken against.
const REFS: [Impl; 2] = [Impl::Mio, Impl::TokioMt];

/// A number with a sensible number of digits.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "–".into()
    } else if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The median over repetitions of figure `key` of `case` on `imp`.
fn med(records: &[Record], case: &Case, imp: Impl, key: &str) -> Option<f64> {
    let values: Vec<f64> = records
        .iter()
        .filter(|r| r.case == *case && r.imp == imp)
        .filter_map(|r| r.result.as_ref().ok())
        .filter_map(|m| m.iter().find(|(k, _)| *k == key).map(|(_, v)| *v))
        .collect();
    median(&values)
}

/// `v ÷ reference` with two decimals, or a dash when either is missing.
fn ratio(v: Option<f64>, reference: Option<f64>) -> String {
    match (v, reference) {
        (Some(v), Some(r)) if r != 0.0 => format!("{:.2}", v / r),
        _ => "–".into(),
    }
}

/// The smallest and largest value of figure `key` over the repetitions.
fn range(records: &[Record], case: &Case, imp: Impl, key: &str) -> Option<(f64, f64)> {
    records
        .iter()
        .filter(|r| r.case == *case && r.imp == imp)
        .filter_map(|r| r.result.as_ref().ok())
        .filter_map(|m| m.iter().find(|(k, _)| *k == key).map(|(_, v)| *v))
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((f64::min(lo, v), f64::max(hi, v))),
        })
}

/// Whether the plan has a case of `scenario`.
fn has(plan: &Plan, scenario: &str) -> bool {
    plan.cases.iter().any(|c| c.scenario() == scenario)
}
