//! The fault suite: the release binaries under open-loop load while a private
//! PostgreSQL of the suite's own (never the machine's shared server) is stopped,
//! frozen with SIGSTOP (while clients retry their 503s with an Idempotency-Key,
//! `retry.rs`), overloaded (by everyone, or by one client while another
//! sends a little), or fed poison values, and clients hold unfinished request
//! heads (`heads.rs`); every figure of docs/RELIABILITY.md is
//! measured here and held against its limit. The tasks check API keys, as in
//! production; each scenario makes the clients it needs.
//!
//! ```text
//! cargo build --release --bin issuance --bin verification
//! cargo run --release -p kc-faults -- [down] [frozen] [overload] [fairness] [poison] [heads]   # all by default
//! ```
//!
//! Prints a table, writes `target/faults/report.json` and `report.md` (and each
//! task's log), and exits 1 when a figure misses its limit. `FAULTS_BIN_DIR`
//! (default `target/release`) is where the service binaries are.
//! `FAULTS_POOLER=pgbouncer` runs the frozen scenario's task through a PgBouncer
//! in transaction mode (`DB_POOLER=transaction`; Debian's `pgbouncer` package).

mod clients;
mod heads;
mod load;
mod report;
mod retry;
mod scenarios;
mod task;

use report::Report;
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the suite finds binaries and writes its output.
pub struct Suite {
    bin_dir: PathBuf,
    out: PathBuf,
    report: Report,
}

impl Suite {
    fn bin(&self, service: &str) -> PathBuf {
        self.bin_dir.join(service)
    }

    fn log(&self, name: &str) -> PathBuf {
        self.out.join(format!("{name}.log"))
    }
}

const SCENARIOS: [&str; 6] = ["down", "frozen", "overload", "fairness", "poison", "heads"];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let mut chosen: Vec<String> = std::env::args().skip(1).collect();
    if chosen.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "usage: fault-suite [{}]...  (all by default)",
            SCENARIOS.join("|")
        );
        return ExitCode::SUCCESS;
    }
    if let Some(unknown) = chosen.iter().find(|a| !SCENARIOS.contains(&a.as_str())) {
        eprintln!(
            "fault-suite: unknown scenario {unknown:?}; known: {}",
            SCENARIOS.join(", ")
        );
        return ExitCode::from(2);
    }
    if chosen.is_empty() {
        chosen = SCENARIOS.iter().map(|s| s.to_string()).collect();
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().map_or_else(|| manifest.clone(), PathBuf::from);
    let mut suite = Suite {
        bin_dir: std::env::var_os("FAULTS_BIN_DIR")
            .map_or_else(|| root.join("target/release"), PathBuf::from),
        out: root.join("target/faults"),
        report: Report::default(),
    };
    if let Err(e) = std::fs::create_dir_all(&suite.out) {
        eprintln!("fault-suite: {}: {e}", suite.out.display());
        return ExitCode::FAILURE;
    }
    for scenario in &chosen {
        eprintln!("[faults] {scenario}");
        match scenario.as_str() {
            "down" => scenarios::down(&mut suite).await,
            "frozen" => scenarios::frozen(&mut suite).await,
            "overload" => scenarios::overload(&mut suite).await,
            "fairness" => scenarios::fairness(&mut suite).await,
            "heads" => heads::heads(&mut suite).await,
            _ => scenarios::poison(&mut suite).await,
        }
    }
    let table = suite.report.table();
    println!("\n{table}");
    let written = std::fs::write(suite.out.join("report.md"), &table).and_then(|()| {
        std::fs::write(
            suite.out.join("report.json"),
            serde_json::to_string_pretty(&suite.report.json()).unwrap_or_default(),
        )
    });
    if let Err(e) = written {
        eprintln!("fault-suite: cannot write the report: {e}");
    }
    let failed = suite.report.failed();
    println!(
        "fault suite: {} figures checked, {failed} missed their limit (report: {})",
        suite.report.checks.iter().filter(|c| c.pass.is_some()).count(),
        suite.out.join("report.md").display()
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
