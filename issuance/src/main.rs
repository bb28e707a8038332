//! The issuance binary: `issuance [serve|migrate|healthcheck|--version]`.

// mimalloc: fewer CPU cycles per request than glibc's malloc, and far fewer than
// musl's, which the static scratch image would otherwise use.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    kc_core::app::main::<issuance::Issuance>()
}
