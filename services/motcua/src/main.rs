//! The `motcua` binary: parse, run, and on failure print one line and exit 1.

use std::process::ExitCode;

use clap::Parser as _;
use motcua::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("motcua: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(motcua::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` puts the causes on the same line: "a: b: c".
            let line = format!("{e:#}");
            eprintln!(
                "motcua: {}",
                line.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            ExitCode::FAILURE
        }
    }
}
