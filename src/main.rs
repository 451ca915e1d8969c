//! The `imgbuild` binary: parse flags, run, map the result to an exit code.

mod cli;
mod commands;

use clap::Parser;
use imgbuild::ExitCode;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let code = match commands::run(cli) {
        Ok(()) => ExitCode::Success,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    };
    std::process::ExitCode::from(code as u8)
}
