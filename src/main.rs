//! The `passerelle` binary: parses the command line and hands over to the library.
//! It holds no logic of its own, so that everything it does can be reached by tests.

use std::process::ExitCode;

/// The allocator of the gateway process (see `Cargo.toml`): the memory ceiling
/// (`limits.process_memory_mb`) is watched on the resident size, which it keeps close to what
/// is in use.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    passerelle::cli::run()
}
