//! The `passerelle` binary: parses the command line and hands over to the library.
//! It holds no logic of its own, so that everything it does can be reached by tests.

use std::process::ExitCode;

fn main() -> ExitCode {
    passerelle::cli::run()
}
