//! Checks with their measured figures, printed as a table and written as JSON.

use crate::load::Sample;
use std::time::Duration;

/// One figure held against its limit.
#[derive(Debug, Clone)]
pub struct Check {
    pub scenario: &'static str,
    pub what: String,
    pub measured: String,
    pub limit: String,
    /// None for a figure that is reported, not asserted.
    pub pass: Option<bool>,
}

/// Everything the suite measured.
#[derive(Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// Records a figure that must hold.
    pub fn check(
        &mut self,
        scenario: &'static str,
        what: &str,
        measured: impl ToString,
        limit: &str,
        pass: bool,
    ) {
        self.checks.push(Check {
            scenario,
            what: what.to_owned(),
            measured: measured.to_string(),
            limit: limit.to_owned(),
            pass: Some(pass),
        });
    }

    /// Records that all of `total` requests (at least one) had an expected outcome.
    pub fn all(&mut self, scenario: &'static str, what: &str, expected: usize, total: usize) {
        self.check(
            scenario,
            what,
            format!("{expected} of {total}"),
            "all",
            total > 0 && expected == total,
        );
    }

    /// Records a figure for the record only.
    pub fn note(&mut self, scenario: &'static str, what: &str, measured: impl ToString) {
        self.checks.push(Check {
            scenario,
            what: what.to_owned(),
            measured: measured.to_string(),
            limit: String::new(),
            pass: None,
        });
    }

    pub fn failed(&self) -> usize {
        self.checks.iter().filter(|c| c.pass == Some(false)).count()
    }

    /// A Markdown table.
    pub fn table(&self) -> String {
        let mut out =
            String::from("| scenario | figure | measured | limit | |\n| --- | --- | ---: | --- | --- |\n");
        for c in &self.checks {
            let verdict = match c.pass {
                Some(true) => "ok",
                Some(false) => "FAIL",
                None => "",
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                c.scenario, c.what, c.measured, c.limit, verdict
            ));
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.checks
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "scenario": c.scenario, "figure": c.what, "measured": c.measured,
                        "limit": c.limit, "pass": c.pass,
                    })
                })
                .collect(),
        )
    }
}

/// The `q` quantile (0..=1) of the latencies of `samples`, by the nearest-rank rule.
pub fn quantile<'a>(samples: impl IntoIterator<Item = &'a Sample>, q: f64) -> Option<Duration> {
    let mut took: Vec<Duration> = samples.into_iter().map(|s| s.took).collect();
    if took.is_empty() {
        return None;
    }
    took.sort_unstable();
    let rank = ((q * took.len() as f64).ceil() as usize).clamp(1, took.len());
    Some(took[rank - 1])
}

/// Milliseconds with one decimal, or "none".
pub fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "none".to_owned(),
        |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0),
    )
}

/// A count of each status, e.g. "201: 1234, 503: 56".
pub fn statuses<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for s in samples {
        *counts.entry(s.status).or_insert(0u64) += 1;
    }
    counts
        .iter()
        .map(|(status, n)| match *status {
            crate::load::TIMED_OUT => format!("timed out: {n}"),
            crate::load::FAILED => format!("connection failed: {n}"),
            s => format!("{s}: {n}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
