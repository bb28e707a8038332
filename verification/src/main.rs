//! The verification binary: `verification [serve|migrate|healthcheck|--version]`.

fn main() -> std::process::ExitCode {
    kc_core::app::main::<verification::Verification>()
}
