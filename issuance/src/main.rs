//! The issuance binary: `issuance [serve|migrate|healthcheck|--version]`.

fn main() -> std::process::ExitCode {
    kc_core::app::main::<issuance::Issuance>()
}
