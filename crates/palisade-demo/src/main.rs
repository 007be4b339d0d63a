//! `palisade-demo`: what `palisade demo` runs (the witness binary execs
//! this one, passing its arguments on). See the library's doc.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use palisade_demo::DemoArgs;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let args = DemoArgs::parse();
    // The witnesses log to their own files; the demo itself only warns.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match palisade_demo::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, as `palisade` prints them.
            eprintln!("palisade demo: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
