//! `palisadectl`: the operator CLI for palisade, a client of the
//! `palisade.v1.Control` gRPC API that every witness serves.
//!
//! Commands, flags, exit codes and the JSON schema are documented in
//! `docs/palisadectl.md`; keep the two in step.

mod client;
#[cfg(test)]
mod fixtures;
mod json;
mod rfc3339;
mod table;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use palisade_api::v1::control_client::ControlClient;
use palisade_api::v1::{AnnotateRequest, JournalRequest, StatusRequest};
use tonic::transport::Channel;

use crate::client::{Failure, Target};

/// Shown by `--help` (not `-h`): the exit codes are part of the interface.
const LONG_ABOUT: &str = "\
Operator CLI for palisade: asks one witness over the palisade.v1.Control gRPC API.
Any witness answers; annotate is forwarded to the leader by the witness.

Exit codes:
  0  success (for status: a leader is known)
  1  the output could not be written
  2  usage error: bad flag or bad --endpoint
  3  endpoint unreachable, or the request failed in transport (refused, timeout, DNS)
  4  status answered but no leader is known (the status is still printed)
  5  the server rejected the request (its message is printed)

Errors are one line on stderr, prefixed \"palisadectl: \".
JSON output (--output json) has a stable schema; see docs/palisadectl.md.";

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "palisadectl", version, about, long_about = LONG_ABOUT)]
struct Cli {
    /// Control endpoint of any witness, http://HOST:PORT.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "PALISADE_ENDPOINT",
        default_value = "http://127.0.0.1:7401"
    )]
    endpoint: String,

    /// Connect timeout and per-request timeout, in milliseconds.
    #[arg(
        long = "timeout",
        global = true,
        value_name = "DURATION_MS",
        env = "PALISADE_TIMEOUT_MS",
        default_value_t = 3000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    timeout_ms: u64,

    /// Output format: aligned tables for people, or JSON with a stable schema.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,

    #[command(subcommand)]
    command: Command,
}

/// How replies are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Aligned columns for people.
    Table,
    /// Pretty-printed JSON with a stable schema, for scripts.
    Json,
}

/// What to do.
#[derive(Debug, Subcommand)]
enum Command {
    /// The cluster as the answering witness sees it. Exits 4 if it knows no leader.
    Status,
    /// Append an operator note to the replicated journal.
    Annotate {
        /// The note, e.g. "DR drill: checkpoint taken".
        text: String,
        /// Who is writing.
        #[arg(long, value_name = "NAME", env = "USER", default_value = "unknown")]
        author: String,
    },
    /// List the replicated journal, oldest first.
    Journal,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // clap prints its own usage errors and exits 2 (0 for --help/--version).
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("palisadectl: {}", failure.message());
            ExitCode::from(failure.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let target = Target::new(&cli.endpoint, Duration::from_millis(cli.timeout_ms))?;
    let mut client = target.connect().await?;
    match cli.command {
        Command::Status => status(&target, &mut client, cli.output).await,
        Command::Annotate { text, author } => {
            annotate(&target, &mut client, cli.output, text, author).await
        }
        Command::Journal => journal(&target, &mut client, cli.output).await,
    }
}

async fn status(
    target: &Target,
    client: &mut ControlClient<Channel>,
    format: Format,
) -> Result<(), Failure> {
    let reply = client
        .status(StatusRequest {})
        .await
        .map_err(|s| target.rpc_failure("status", &s))?
        .into_inner();
    emit(&match format {
        Format::Table => table::status_table(&reply),
        Format::Json => json::to_json(&json::StatusJson::from(&reply)),
    })?;
    // Printed first and failed after: the operator needs the picture most
    // exactly when there is no leader.
    match reply.leader_id {
        Some(_) => Ok(()),
        None => Err(Failure::NoLeader(format!(
            "no leader known: node {} at {} sees none in term {}",
            reply.node_id,
            target.shown(),
            reply.term
        ))),
    }
}

async fn annotate(
    target: &Target,
    client: &mut ControlClient<Channel>,
    format: Format,
    text: String,
    author: String,
) -> Result<(), Failure> {
    // An empty USER is no name; the server would refuse it.
    let author = if author.is_empty() {
        "unknown".to_owned()
    } else {
        author
    };
    let reply = client
        .annotate(AnnotateRequest { text, author })
        .await
        .map_err(|s| target.rpc_failure("annotate", &s))?
        .into_inner();
    emit(&match format {
        Format::Table => table::annotate_text(&reply),
        Format::Json => json::to_json(&json::AnnotateJson::from(&reply)),
    })
}

async fn journal(
    target: &Target,
    client: &mut ControlClient<Channel>,
    format: Format,
) -> Result<(), Failure> {
    let reply = client
        .journal(JournalRequest {})
        .await
        .map_err(|s| target.rpc_failure("journal", &s))?
        .into_inner();
    emit(&match format {
        Format::Table => table::journal_table(&reply),
        Format::Json => json::to_json(&json::JournalJson::from(&reply)),
    })
}

/// Writes to stdout, turning a closed or full stdout into a failure instead
/// of the panic `print!` would give.
fn emit(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Output(format!("cannot write output: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn output_flag_is_accepted_after_the_subcommand() {
        let cli = Cli::try_parse_from(["palisadectl", "journal", "--output", "json"])
            .expect("global --output");
        assert_eq!(cli.output, Format::Json);
    }

    #[test]
    fn zero_timeout_is_a_usage_error() {
        let err = Cli::try_parse_from(["palisadectl", "--timeout", "0", "status"])
            .expect_err("0 ms is no timeout");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn long_help_lists_every_exit_code() {
        let help = Cli::command().render_long_help().to_string();
        for code in [
            "0  success",
            "2  usage",
            "3  endpoint",
            "4  status",
            "5  the server",
        ] {
            assert!(help.contains(code), "{code} missing from --help");
        }
    }
}
