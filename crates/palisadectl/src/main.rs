//! `palisadectl`: the operator CLI for palisade, a client of the
//! `palisade.v1.Control` gRPC API that every witness serves.
//!
//! Commands, flags, exit codes and the JSON schema are documented in
//! `docs/palisadectl.md`; keep the two in step.

mod client;
mod drill;
mod durations;
#[cfg(test)]
mod fixtures;
mod history;
mod identity;
mod json;
mod operations;
mod output;
mod rfc3339;
mod table;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use palisade_api::v1::control_client::ControlClient;
use palisade_api::v1::{AnnotateRequest, HistoryRequest, JournalRequest, StatusRequest};
use tonic::transport::Channel;

use crate::client::{Failure, Target};
use crate::drill::plan::{self, PlanJson};
use crate::durations::duration_arg;
use crate::operations::Operation;
use crate::output::{emit, Out};

/// Shown by `--help` (not `-h`): the exit codes are part of the interface.
const LONG_ABOUT: &str = "\
Operator CLI for palisade: asks one witness over the palisade.v1.Control gRPC API.
Any witness answers; requests that change the cluster are forwarded to the leader
by the witness.

Exit codes:
  0  success (for status: a leader is known; for drill run: the drill passed)
  1  the output (or a drill report) could not be written
  2  usage error: bad flag, bad --endpoint, invalid drill plan
  3  endpoint unreachable, or the request failed in transport (refused, timeout, DNS);
     for watch: the stream ended
  4  status answered but no leader is known (the status is still printed)
  5  the server rejected the request (its message is printed)
  6  the operation finished but did not succeed (aborted, or completed with failed
     checks); for drill run: a phase failed
  7  waiting for the operation timed out (it may still be running)

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

    /// Who you are, recorded with every change you make (1-128 bytes).
    /// Default: USER@HOST, from $USER and the host name.
    #[arg(long, global = true, value_name = "NAME", env = "PALISADE_WHO")]
    who: Option<String>,

    #[command(subcommand)]
    command: Command,
}

/// How replies are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// Pretty-printed JSON with a stable schema, for scripts.
    Json,
}

/// Waiting for an operation.
#[derive(Debug, Args)]
struct WaitArgs {
    /// Return once the operation is committed instead of waiting for it to
    /// finish.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for the operation to finish (e.g. 90s, 5m); exit 7
    /// after that.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "120s",
        value_parser = duration_arg,
        conflicts_with = "no_wait"
    )]
    wait_timeout: Duration,
}

impl WaitArgs {
    fn timeout(&self) -> Option<Duration> {
        (!self.no_wait).then_some(self.wait_timeout)
    }
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
        /// Who is writing; default: --who.
        #[arg(long, value_name = "NAME")]
        author: Option<String>,
    },
    /// List the replicated journal, oldest first.
    Journal,
    /// Planned handover to the standby SITE without data loss, then wait for it.
    Switchover {
        /// The site to promote (the current standby).
        #[arg(long, value_name = "SITE")]
        to: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Fail over to SITE now (the old primary is fenced), then wait for it.
    Failover {
        /// The site to promote.
        #[arg(long, value_name = "SITE")]
        to: String,
        /// Override the guard that refuses a lagging target. Needs
        /// --yes-i-accept-data-loss.
        #[arg(long, requires = "yes_i_accept_data_loss")]
        force: bool,
        /// Confirm that a forced failover may lose committed data. Needs --force.
        #[arg(long, requires = "force")]
        yes_i_accept_data_loss: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Switch back to the configured primary site once it has rejoined, then wait.
    Failback {
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Maintenance mode: no automatic failover until resume (or --for has passed).
    Pause {
        /// End on its own after this long (e.g. 30s, 15m, 2h, 1h30m).
        #[arg(long = "for", value_name = "DURATION", value_parser = duration_arg)]
        for_: Option<Duration>,
        /// Why, for the history and for other operators.
        #[arg(long, value_name = "TEXT", default_value = "")]
        reason: String,
    },
    /// End maintenance mode: automatic failover on again.
    Resume,
    /// Finished operations, the one in progress, and recorded drills.
    History {
        /// Show each operation's steps and each drill's phases below it.
        #[arg(long)]
        steps: bool,
    },
    /// Print cluster events as they happen, until Ctrl-C.
    Watch,
    /// DR tests.
    Drill {
        #[command(subcommand)]
        command: DrillCommand,
    },
}

/// `drill` subcommands.
#[derive(Debug, Subcommand)]
enum DrillCommand {
    /// Run a DR-test plan phase by phase and write a report.
    Run {
        /// The plan, a TOML file (see docs/palisadectl.md).
        plan: PathBuf,
        /// Ask for Enter before each phase after the first.
        #[arg(long, conflicts_with = "yes")]
        pause_between: bool,
        /// Print the plan and exit; contacts nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not wait for Enter at manual steps (unattended runs).
        #[arg(long)]
        yes: bool,
        /// Where to write the .md and .json reports.
        #[arg(long, value_name = "DIR", default_value = ".")]
        report_dir: PathBuf,
        /// How long an operation step waits unless the plan says `timeout`.
        #[arg(
            long,
            value_name = "DURATION",
            default_value = "120s",
            value_parser = duration_arg
        )]
        wait_timeout: Duration,
    },
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
    // Checked only by the commands that send it, so that a bad
    // PALISADE_WHO does not break `status`.
    let raw_who = cli.who.unwrap_or_else(identity::default_who);
    let who = || {
        identity::check_who(&raw_who).map_err(|why| {
            Failure::Usage(format!(
                "invalid --who {raw_who:?} (or PALISADE_WHO): {why}"
            ))
        })
    };
    let out = Out { format: cli.output };
    match cli.command {
        Command::Status => status(&target, &mut target.connect().await?, cli.output).await,
        Command::Annotate { text, author } => {
            // An explicit --author wins; a blank one is no name.
            let author = match author.filter(|a| !a.trim().is_empty()) {
                Some(author) => author,
                None => who()?,
            };
            let mut client = target.connect().await?;
            annotate(&target, &mut client, cli.output, text, author).await
        }
        Command::Journal => journal(&target, &mut target.connect().await?, cli.output).await,
        Command::Switchover { to, wait } => {
            let (who, op) = (who()?, Operation::Switchover { to });
            let mut client = target.connect().await?;
            operations::command(&target, &mut client, &out, &who, &op, wait.timeout()).await
        }
        Command::Failover {
            to,
            force,
            yes_i_accept_data_loss,
            wait,
        } => {
            // clap enforces that the two flags come together.
            debug_assert_eq!(force, yes_i_accept_data_loss);
            let (who, op) = (who()?, Operation::Failover { to, force });
            let mut client = target.connect().await?;
            operations::command(&target, &mut client, &out, &who, &op, wait.timeout()).await
        }
        Command::Failback { wait } => {
            let (who, op) = (who()?, Operation::Failback);
            let mut client = target.connect().await?;
            operations::command(&target, &mut client, &out, &who, &op, wait.timeout()).await
        }
        Command::Pause { for_, reason } => {
            let who = who()?;
            let mut client = target.connect().await?;
            let reply = operations::pause(&target, &mut client, &who, for_, &reason).await?;
            operations::print_maintenance(&out, &reply)
        }
        Command::Resume => {
            let who = who()?;
            let mut client = target.connect().await?;
            let reply = operations::resume(&target, &mut client, &who).await?;
            operations::print_maintenance(&out, &reply)
        }
        Command::History { steps } => {
            history(&target, &mut target.connect().await?, cli.output, steps).await
        }
        Command::Watch => watch::watch(&target, &out).await,
        Command::Drill {
            command:
                DrillCommand::Run {
                    plan: path,
                    pause_between,
                    dry_run,
                    yes,
                    report_dir,
                    wait_timeout,
                },
        } => {
            let plan = plan::load(&path).map_err(|e| Failure::Usage(e.to_string()))?;
            let file = path.display().to_string();
            if dry_run {
                return out.emit(&if out.json() {
                    json::to_json(&PlanJson::from(&plan))
                } else {
                    plan::describe(&plan, &file)
                });
            }
            let who = who()?;
            let opts = drill::run::RunOptions {
                plan_file: file,
                yes,
                pause_between,
                report_dir,
                wait_timeout,
            };
            drill::run::run(&plan, &target, &out, &who, &opts).await
        }
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

async fn history(
    target: &Target,
    client: &mut ControlClient<Channel>,
    format: Format,
    steps: bool,
) -> Result<(), Failure> {
    let reply = client
        .history(HistoryRequest {})
        .await
        .map_err(|s| target.rpc_failure("history", &s))?
        .into_inner();
    emit(&match format {
        Format::Table => history::history_table(&reply, steps),
        Format::Json => json::to_json(&json::HistoryJson::from(&reply)),
    })
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
    fn force_and_the_data_loss_confirmation_need_each_other() {
        for args in [
            &["palisadectl", "failover", "--to", "b", "--force"][..],
            &[
                "palisadectl",
                "failover",
                "--to",
                "b",
                "--yes-i-accept-data-loss",
            ][..],
        ] {
            let err = Cli::try_parse_from(args).expect_err("one without the other");
            assert_eq!(err.exit_code(), 2);
            let missing = if args.contains(&"--force") {
                "--yes-i-accept-data-loss"
            } else {
                "--force"
            };
            assert!(err.to_string().contains(missing), "{err}");
        }
        let cli = Cli::try_parse_from([
            "palisadectl",
            "failover",
            "--to",
            "b",
            "--force",
            "--yes-i-accept-data-loss",
        ])
        .expect("both");
        assert!(matches!(cli.command, Command::Failover { force: true, .. }));
    }

    #[test]
    fn durations_are_parsed_by_clap_naming_the_flag() {
        let cli = Cli::try_parse_from(["palisadectl", "pause", "--for", "1h30m"]).expect("valid");
        assert!(matches!(
            cli.command,
            Command::Pause { for_: Some(d), .. } if d == Duration::from_secs(5400)
        ));
        let err =
            Cli::try_parse_from(["palisadectl", "pause", "--for", "90"]).expect_err("no unit");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--for"), "{err}");
        let err = Cli::try_parse_from([
            "palisadectl",
            "switchover",
            "--to",
            "b",
            "--no-wait",
            "--wait-timeout",
            "5s",
        ])
        .expect_err("conflict");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn pause_between_and_yes_conflict() {
        let err = Cli::try_parse_from([
            "palisadectl",
            "drill",
            "run",
            "p.toml",
            "--yes",
            "--pause-between",
        ])
        .expect_err("conflict");
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
            "6  the operation finished but did not succeed",
            "7  waiting for the operation timed out",
        ] {
            assert!(help.contains(code), "{code} missing from --help");
        }
    }
}
