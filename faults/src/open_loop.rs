//! `open-loop`: one task under requests due at a constant rate, with the fault
//! suite's lean HTTP/1.1 client (load.rs), for load/limit.sh. k6 took about a
//! core at 5,000 requests/s on the two-core machine it shares with the task and
//! PostgreSQL, so its latencies were its own; this client takes a fraction.
//!
//! ```text
//! open-loop ADDR verify|issue RATE SECONDS [WARMUP_SECONDS [IDS_FILE]]
//! ```
//!
//! Requests are due at RATE per second for WARMUP_SECONDS (default 2, left out
//! of the figures: every connection opens then) plus SECONDS; latency counts
//! from when a request was due, so a stalled task cannot hide its stall. Prints
//! one line for the measured part, `due answered p50_ms p99_ms max_ms
//! unexpected`: requests due and answered, latencies, and how many answers were
//! not the expected status (200 for verify, 201 for issue) or failed.
//!
//! Tasks check API keys by default (`AUTH_MODE=required`): verify sends
//! `VERIFIER_KEY`, issue `ISSUER_KEY`, from the environment, when it is set.

// The client also serves the fault suite, which uses more of it.
#[allow(dead_code)]
mod load;

use load::{Sample, Shape, Stream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn usage() -> ExitCode {
    eprintln!("usage: open-loop ADDR verify|issue RATE SECONDS [WARMUP_SECONDS [IDS_FILE]]");
    ExitCode::from(2)
}

/// `stream`, sending the key in the environment variable `var` if it is set.
fn keyed(stream: Stream, var: &str) -> Stream {
    match std::env::var(var) {
        Ok(key) if !key.is_empty() => stream.with_key(&key),
        _ => stream,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        return usage();
    }
    let (Ok(addr), Ok(rate), Ok(seconds)) = (args[0].parse(), args[2].parse::<f64>(), args[3].parse::<f64>())
    else {
        return usage();
    };
    let warmup: f64 = args.get(4).and_then(|w| w.parse().ok()).unwrap_or(2.0);
    let shape = Shape::Open { per_second: rate };
    let (stream, expected) = match args[1].as_str() {
        "verify" => {
            let Some(ids) = args.get(5).and_then(|f| std::fs::read_to_string(f).ok()) else {
                eprintln!("open-loop: verify needs a file of credential ids");
                return usage();
            };
            let ids: Vec<String> = ids.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect();
            if ids.is_empty() {
                eprintln!("open-loop: the ids file is empty");
                return ExitCode::from(2);
            }
            let body = move |seq: u64| {
                format!(
                    r#"{{"id":"{}"}}"#,
                    ids[(seq.wrapping_mul(2_654_435_761) % ids.len() as u64) as usize]
                )
            };
            (
                keyed(
                    Stream::post(addr, "/verification/credentials", shape, body),
                    "VERIFIER_KEY",
                ),
                200,
            )
        }
        "issue" => {
            let run = std::process::id();
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let body = move |seq: u64| {
                format!(
                    r#"{{"name":"open-loop {run}-{stamp}-{seq}","email":"ol{seq}@example.com","credentialType":"open-loop","metadata":{{"run":"{run}-{stamp}"}}}}"#
                )
            };
            (
                keyed(
                    Stream::post(addr, "/issuance/credentials", shape, body),
                    "ISSUER_KEY",
                ),
                201,
            )
        }
        _ => return usage(),
    };
    let duration = Duration::from_secs_f64(warmup + seconds);
    let samples = load::run(vec![stream], Instant::now(), duration, Duration::from_secs(5)).await;
    let skip = Duration::from_secs_f64(warmup);
    let measured: Vec<&Sample> = samples.iter().filter(|s| s.sent >= skip).collect();
    let mut took: Vec<Duration> = measured.iter().map(|s| s.took).collect();
    took.sort();
    let pick = |q: f64| {
        took.get(((q * took.len() as f64) as usize).min(took.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let unexpected = measured.iter().filter(|s| s.status != expected).count();
    println!(
        "{} {} {:.2} {:.2} {:.2} {}",
        (rate * seconds).round() as u64,
        measured.len(),
        pick(0.50),
        pick(0.99),
        took.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        unexpected
    );
    ExitCode::SUCCESS
}
