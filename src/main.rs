//! The `imgbuild` binary: parse flags, run, map the result to an exit code.

mod cli;
mod commands;
mod output;

use clap::Parser;
use imgbuild::ExitCode;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let code = match commands::run(cli) {
        Ok(()) => ExitCode::Success,
        Err(e) => {
            // A difference found by verify/diff is a result, not an error: its
            // explanation is on stdout already, and its message may be empty.
            if !e.message().is_empty() {
                // Never eprintln!: it panics when stderr is closed.
                use std::io::Write;
                let _ = writeln!(std::io::stderr().lock(), "{e}");
            }
            e.exit_code()
        }
    };
    std::process::ExitCode::from(code as u8)
}
