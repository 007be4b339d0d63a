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
mod gen_assets;
mod history;
mod identity;
mod json;
mod members;
mod operations;
mod output;
mod prompt;
mod request_id;
mod rfc3339;
mod table;
mod wait_ready;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use palisade_api::v1::control_client::ControlClient;
use palisade_api::v1::{AnnotateRequest, HistoryRequest, JournalRequest, StatusRequest};
use tonic::transport::Channel;

use crate::client::{Failure, Target};
use crate::drill::plan::{self, PlanJson};
use crate::durations::duration_arg;
use crate::operations::{Operation, Sent};
use crate::output::{emit, Out};
use crate::request_id::{new_request_id, request_id_arg, shell_quote};

/// Shown by `--help` (not `-h`): the exit codes are part of the interface.
const LONG_ABOUT: &str = "\
Operator CLI for palisade: asks one witness over the palisade.v1.Control gRPC API.
Any witness answers; requests that change the cluster are forwarded to the leader
by the witness.

Exit codes:
  0  success (for status: a leader with a quorum is known; for drill run: the drill passed)
  1  the output (or a drill report) could not be written
  2  usage error: bad flag, bad --endpoint (or a witness's Raft peer port), invalid
     drill plan, an operation or member change without --yes and without a terminal
     to confirm it
  3  endpoint unreachable, or a read failed in transport (refused, timeout, DNS);
     for watch: the stream ended or the witness stopped answering; for a member
     change: no leader (Unavailable), retry once one is known
  4  status answered but no leader is known (the status is still printed)
  5  the server rejected the request (its message is printed); nothing changed
  6  the operation finished but did not succeed (aborted, or completed with failed
     checks); for drill run: a phase failed
  7  waiting for the operation timed out (it may still be running)
  8  status answered, but the leader has no quorum: it has not heard from a majority
     of the witnesses within the election timeout (the status is still printed)
  9  a request that changes the cluster got no answer after it was sent: it may still
     take effect; check with `palisadectl history --request ID`, retry with
     --request-id ID (safe: it takes effect at most once); for a member change:
     check with `palisadectl member list`, running it again is safe
  10 the operation was not confirmed at the prompt; nothing was sent

Errors are one line on stderr, prefixed \"palisadectl: \".
JSON output (--output json, -o json) has a stable schema; see docs/palisadectl.md.";

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "palisadectl", version, about, long_about = LONG_ABOUT)]
struct Cli {
    /// Control endpoint of any witness: https://HOST:PORT (mutual TLS,
    /// with --cert, --key and --ca), or http://HOST:PORT for a witness
    /// configured `tls.insecure = true`.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "PALISADE_ENDPOINT",
        default_value = "https://127.0.0.1:7401"
    )]
    endpoint: String,

    /// Your operator certificate (PEM), from `palisade cert issue
    /// --operator NAME --role viewer|operator`. Its name is what the
    /// witnesses record for what you do.
    #[arg(long, global = true, value_name = "FILE", env = "PALISADE_CERT")]
    cert: Option<std::path::PathBuf>,

    /// The key of --cert (PEM, readable by you only).
    #[arg(long, global = true, value_name = "FILE", env = "PALISADE_KEY")]
    key: Option<std::path::PathBuf>,

    /// The cluster CA certificate (PEM) that the witnesses' certificates
    /// must chain to.
    #[arg(long, global = true, value_name = "FILE", env = "PALISADE_CA")]
    ca: Option<std::path::PathBuf>,

    /// Connect timeout, per-request timeout (a member change waits for
    /// its answer up to its --wait-timeout instead), and for watch the
    /// longest silence of the witness (e.g. 500ms, 3s, 1m).
    #[arg(
        long = "timeout",
        global = true,
        value_name = "DURATION",
        env = "PALISADE_TIMEOUT",
        default_value = "3s",
        value_parser = duration_arg
    )]
    timeout: Duration,

    /// Output format: aligned tables for people, or JSON with a stable schema.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
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

/// The request id of a request that changes the cluster.
#[derive(Debug, Args)]
struct RequestArgs {
    /// Retry an earlier request: send it again under the id palisadectl
    /// printed for it. The cluster applies each id at most once, so this is
    /// safe whether or not the first one took effect. Default: a new id.
    #[arg(long, value_name = "ID", value_parser = request_id_arg)]
    request_id: Option<String>,
}

impl RequestArgs {
    fn id(&self) -> String {
        self.request_id.clone().unwrap_or_else(new_request_id)
    }
}

/// Confirming an operation.
#[derive(Debug, Args)]
struct ConfirmArgs {
    /// Do not ask for confirmation (needed when stdin is not a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
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
        #[command(flatten)]
        request: RequestArgs,
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
        #[command(flatten)]
        confirm: ConfirmArgs,
        #[command(flatten)]
        request: RequestArgs,
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
        #[command(flatten)]
        confirm: ConfirmArgs,
        #[command(flatten)]
        request: RequestArgs,
    },
    /// Switch back to the configured primary site once it has rejoined, then wait.
    Failback {
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        confirm: ConfirmArgs,
        #[command(flatten)]
        request: RequestArgs,
    },
    /// Maintenance mode: no automatic failover until resume (or --for has passed).
    Pause {
        /// End on its own after this long (e.g. 30s, 15m, 2h, 1h30m).
        #[arg(long = "for", value_name = "DURATION", value_parser = duration_arg)]
        for_: Option<Duration>,
        /// Why, for the history and for other operators.
        #[arg(long, value_name = "TEXT", default_value = "")]
        reason: String,
        /// Replace a pause already in force (else refused, naming who paused).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        request: RequestArgs,
    },
    /// End maintenance mode: automatic failover on again.
    Resume {
        #[command(flatten)]
        request: RequestArgs,
    },
    /// Finished operations, the one in progress, drills, pauses, resumes and
    /// notes; or what one request did (--request).
    History {
        /// Show each operation's steps and each drill's phases below it.
        #[arg(long)]
        steps: bool,
        /// Show only what the request with this id did (exit 9 when the
        /// answering witness has no record of it).
        #[arg(long = "request", value_name = "ID", value_parser = request_id_arg, conflicts_with = "steps")]
        request: Option<String>,
    },
    /// Print cluster events as they happen, until Ctrl-C.
    Watch,
    /// Wait until a leader is known and a quorum of witnesses answers it
    /// (e.g. right after starting the witnesses). On giving up, exits 3, 4
    /// or 8 for what it saw last.
    WaitReady {
        /// How long to wait before giving up (e.g. 30s, 2m).
        #[arg(
            long,
            value_name = "DURATION",
            default_value = "60s",
            value_parser = duration_arg
        )]
        wait_timeout: Duration,
    },
    /// DR tests.
    Drill {
        #[command(subcommand)]
        command: DrillCommand,
    },
    /// The witnesses (voters and learners), and changes to who they are.
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// Write palisadectl's man pages and shell completions into DIR
    /// (`man/`, `completions/`), for the Debian package; contacts nothing.
    #[command(hide = true)]
    GenerateAssets {
        /// Where to write them.
        dir: PathBuf,
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

/// A membership change's confirmation and wait.
#[derive(Debug, Args)]
struct MemberChangeArgs {
    #[command(flatten)]
    confirm: ConfirmArgs,
    /// How long to wait for the leader's answer (it may wait for a new
    /// witness to catch up); exit 9 after that: the change may still take
    /// effect.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = members::DEFAULT_WAIT,
        value_parser = duration_arg
    )]
    wait_timeout: Duration,
}

/// The new witness of `member add` and `member replace`.
#[derive(Debug, Args)]
struct NewWitnessArgs {
    /// Its node id: a positive integer no witness has had.
    #[arg(long, value_name = "N", value_parser = members::id_arg)]
    id: u64,
    /// Its Raft peer address, IP:PORT (its `raft_addr`).
    #[arg(long, value_name = "IP:PORT", value_parser = members::addr_arg)]
    raft_addr: std::net::SocketAddr,
    /// Its control address, IP:PORT (its `control_addr`).
    #[arg(long, value_name = "IP:PORT", value_parser = members::addr_arg)]
    control_addr: std::net::SocketAddr,
}

impl NewWitnessArgs {
    fn at(self, site: Option<String>) -> members::NewWitness {
        members::NewWitness {
            id: self.id,
            site,
            raft_addr: self.raft_addr,
            control_addr: self.control_addr,
        }
    }
}

/// `member` subcommands.
#[derive(Debug, Subcommand)]
enum MemberCommand {
    /// The witnesses as the answering witness's Raft log has them: id,
    /// site, voter or learner, addresses.
    List,
    /// Add a witness at a site that has none: it joins as a learner, catches
    /// up, then votes. It must already run, with `raft.join = true`.
    Add {
        #[command(flatten)]
        new: NewWitnessArgs,
        /// Its site (letters, digits, '-', '_'); one witness per site.
        #[arg(long, value_name = "SITE", value_parser = members::site_arg)]
        site: String,
        #[command(flatten)]
        change: MemberChangeArgs,
    },
    /// Remove witness ID (at least three voters stay; never a database
    /// site's witness: replace that one).
    Remove {
        /// The witness that goes.
        #[arg(value_name = "ID", value_parser = members::id_arg)]
        id: u64,
        #[command(flatten)]
        change: MemberChangeArgs,
    },
    /// Replace witness OLD_ID (its host or disk is gone) by a new witness,
    /// with a new id, at the same site, in one joint change. The new one
    /// must already run, with `raft.join = true`.
    Replace {
        /// The witness that goes.
        #[arg(value_name = "OLD_ID", value_parser = members::id_arg)]
        old_id: u64,
        #[command(flatten)]
        new: NewWitnessArgs,
        /// The site, if given: must be OLD_ID's. Default: OLD_ID's.
        #[arg(long, value_name = "SITE", value_parser = members::site_arg)]
        site: Option<String>,
        #[command(flatten)]
        change: MemberChangeArgs,
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

/// The command line as the operator typed it, without `--request-id`,
/// for the message that tells how to retry a request safely.
fn retry_command_line() -> String {
    let mut words = vec!["palisadectl".to_owned()];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--request-id" {
            args.next();
            continue;
        }
        if a.starts_with("--request-id=") {
            continue;
        }
        words.push(shell_quote(&a));
    }
    words.join(" ")
}

/// Asks the operator to confirm `op` on the terminal, unless `yes`.
/// Without a terminal on stdin it cannot ask: a usage error naming
/// `--yes`. Anything but `y` or `yes` is a no (exit 10).
async fn confirm(
    target: &Target,
    client: &mut ControlClient<Channel>,
    op: &Operation,
    yes: bool,
) -> Result<(), Failure> {
    if yes {
        return Ok(());
    }
    let name = op.rpc();
    prompt::need_terminal(name)?;
    // The current picture, so the operator confirms what will really move.
    let now = match client.status(StatusRequest {}).await {
        Ok(r) => {
            let r = r.into_inner();
            format!(
                "cluster {} (via {}): primary {}, standby {}{}\n",
                r.cluster_name,
                target.shown(),
                table::text_or_none(&r.primary_site),
                table::text_or_none(&r.standby_site),
                if r.standby_needs_rejoin {
                    " (must rejoin)"
                } else {
                    ""
                }
            )
        }
        Err(s) => format!(
            "(could not ask {} for the current roles: {})\n",
            target.shown(),
            target.rpc_failure("status", &s).message()
        ),
    };
    prompt::ask(name, &format!("{now}about to {}.\n", op.describe())).await
}

async fn run(cli: Cli) -> Result<(), Failure> {
    if std::env::var_os("PALISADE_TIMEOUT_MS").is_some()
        && std::env::var_os("PALISADE_TIMEOUT").is_none()
    {
        return Err(Failure::Usage(
            "PALISADE_TIMEOUT_MS is no longer read: set PALISADE_TIMEOUT to a duration such as 3s \
             or 500ms instead"
                .to_owned(),
        ));
    }
    let mut target = Target::new(&cli.endpoint, cli.timeout)?;
    let mut cli = cli;
    match (&cli.cert, &cli.key, &cli.ca) {
        (None, None, None) => {}
        (Some(cert), Some(key), Some(ca)) => {
            let store = palisade_tls::CertStore::load(
                palisade_tls::TlsPaths {
                    ca_cert: ca.clone(),
                    cert: cert.clone(),
                    key: key.clone(),
                },
                palisade_tls::ExpectOwn::Operator { cluster: None },
            )
            .map_err(|e| Failure::Usage(format!("--cert/--key/--ca: {e}")))?;
            if target.is_tls() {
                // The witnesses record the certificate's name; reports and
                // messages here say the same.
                let name = match store.identity() {
                    palisade_tls::Identity::Operator { name, .. } => name,
                    other => other.uri(),
                };
                if cli.who.is_some() {
                    eprintln!(
                        "note: --who (or PALISADE_WHO) is not used over TLS: the witnesses record the name in your certificate ({name})"
                    );
                }
                cli.who = Some(name);
            }
            target = target.with_certificate(store);
        }
        _ => {
            return Err(Failure::Usage(
                "--cert, --key and --ca go together (or PALISADE_CERT, PALISADE_KEY, PALISADE_CA): give all three".to_owned(),
            ))
        }
    }
    match run_command(cli, &target).await {
        Err(Failure::Usage(m)) if m.contains("does not serve the palisade control API") => {
            Err(Failure::Usage(target.peer_port_hint().await.unwrap_or(m)))
        }
        other => other,
    }
}

async fn run_command(cli: Cli, target: &Target) -> Result<(), Failure> {
    let target = target.clone();
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
        Command::GenerateAssets { dir } => {
            gen_assets::generate(Cli::command(), &dir).map_err(Failure::Output)
        }
        Command::Status => status(&target, &mut target.connect().await?, cli.output).await,
        Command::Annotate {
            text,
            author,
            request,
        } => {
            // An explicit --author wins; a blank one is no name.
            let author = match author.filter(|a| !a.trim().is_empty()) {
                Some(author) => author,
                None => who()?,
            };
            let mut client = target.connect().await?;
            let (id, retry) = (request.id(), retry_command_line());
            annotate(&target, &mut client, cli.output, text, author, &id, &retry).await
        }
        Command::Journal => journal(&target, &mut target.connect().await?, cli.output).await,
        Command::Switchover {
            to,
            wait,
            confirm: c,
            request,
        } => {
            let op = Operation::Switchover { to };
            operation(&target, &out, &who()?, &op, wait.timeout(), c.yes, &request).await
        }
        Command::Failover {
            to,
            force,
            yes_i_accept_data_loss,
            wait,
            confirm: c,
            request,
        } => {
            // clap enforces that the two flags come together.
            debug_assert_eq!(force, yes_i_accept_data_loss);
            let op = Operation::Failover { to, force };
            operation(&target, &out, &who()?, &op, wait.timeout(), c.yes, &request).await
        }
        Command::Failback {
            wait,
            confirm: c,
            request,
        } => {
            let op = Operation::Failback;
            operation(&target, &out, &who()?, &op, wait.timeout(), c.yes, &request).await
        }
        Command::Pause {
            for_,
            reason,
            force,
            request,
        } => {
            let who = who()?;
            let mut client = target.connect().await?;
            let (id, retry) = (request.id(), retry_command_line());
            let sent = Sent {
                who: &who,
                request_id: &id,
                retry: &retry,
            };
            let reply =
                operations::pause(&target, &mut client, &sent, for_, &reason, force).await?;
            operations::print_maintenance(&out, &reply)
        }
        Command::Resume { request } => {
            let who = who()?;
            let mut client = target.connect().await?;
            let (id, retry) = (request.id(), retry_command_line());
            let sent = Sent {
                who: &who,
                request_id: &id,
                retry: &retry,
            };
            let reply = operations::resume(&target, &mut client, &sent).await?;
            operations::print_maintenance(&out, &reply)
        }
        Command::History { steps, request } => {
            let mut client = target.connect().await?;
            match request {
                Some(id) => history::request(&target, &mut client, &out, &id).await,
                None => history(&target, &mut client, cli.output, steps).await,
            }
        }
        Command::Watch => watch::watch(&target, &out).await,
        Command::WaitReady { wait_timeout } => {
            wait_ready::wait_ready(&target, &out, wait_timeout).await
        }
        Command::Member { command } => {
            let (change, args) = match command {
                MemberCommand::List => return members::list(&target, &out).await,
                MemberCommand::Add { new, site, change } => {
                    (members::Change::Add(new.at(Some(site))), change)
                }
                MemberCommand::Remove { id, change } => (members::Change::Remove { id }, change),
                MemberCommand::Replace {
                    old_id,
                    new,
                    site,
                    change,
                } => (
                    members::Change::Replace {
                        old: old_id,
                        new: new.at(site),
                    },
                    change,
                ),
            };
            let author = who()?;
            let mut retry = retry_command_line();
            if !args.confirm.yes {
                retry.push_str(" --yes");
            }
            let opts = members::ChangeOptions {
                author: &author,
                yes: args.confirm.yes,
                wait: args.wait_timeout,
                retry: &retry,
            };
            members::change(&target, &out, &change, &opts).await
        }
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
    // exactly when there is no leader, or a leader without a quorum.
    match reply.leader_id {
        Some(leader) if reply.quorum == "lost" => Err(Failure::NoQuorum(format!(
            "no quorum: leader {leader} has heard from {} of {} witnesses (itself included; {} \
             needed) within the {} ms election timeout, as node {} at {} sees it; it cannot commit \
             anything (no failover, pause or note) until a majority is back",
            reply.quorum_acked,
            reply.nodes.len(),
            reply.quorum_needed,
            reply.quorum_timeout_ms,
            reply.node_id,
            target.shown()
        ))),
        Some(_) => Ok(()),
        None => Err(Failure::NoLeader(format!(
            "no leader known: node {} at {} sees none in term {}",
            reply.node_id,
            target.shown(),
            reply.term
        ))),
    }
}

/// `switchover`, `failover`, `failback`: confirm, send, wait.
async fn operation(
    target: &Target,
    out: &Out,
    who: &str,
    op: &Operation,
    timeout: Option<Duration>,
    yes: bool,
    request: &RequestArgs,
) -> Result<(), Failure> {
    let mut client = target.connect().await?;
    confirm(target, &mut client, op, yes).await?;
    let id = request.id();
    let mut retry = retry_command_line();
    if !yes {
        retry.push_str(" --yes");
    }
    let sent = Sent {
        who,
        request_id: &id,
        retry: &retry,
    };
    operations::command(target, &mut client, out, &sent, op, timeout).await
}

async fn annotate(
    target: &Target,
    client: &mut ControlClient<Channel>,
    format: Format,
    text: String,
    author: String,
    request_id: &str,
    retry: &str,
) -> Result<(), Failure> {
    let reply = client
        .annotate(AnnotateRequest {
            text,
            author,
            request_id: request_id.to_owned(),
        })
        .await
        .map_err(|s| target.request_failure("annotate", &s, request_id, retry))?
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
        let err = Cli::try_parse_from(["palisadectl", "--timeout", "0s", "status"])
            .expect_err("0 ms is no timeout");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn every_time_flag_takes_one_duration_syntax() {
        let cli =
            Cli::try_parse_from(["palisadectl", "--timeout", "500ms", "status"]).expect("500ms");
        assert_eq!(cli.timeout, Duration::from_millis(500));
        let cli = Cli::try_parse_from(["palisadectl", "status", "--timeout", "2s"]).expect("2s");
        assert_eq!(cli.timeout, Duration::from_secs(2));
        // A bare number has no unit: refused, naming the flag.
        let err = Cli::try_parse_from(["palisadectl", "--timeout", "3000", "status"])
            .expect_err("no unit");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--timeout"), "{err}");
    }

    #[test]
    fn dash_o_is_output() {
        let cli = Cli::try_parse_from(["palisadectl", "status", "-o", "json"]).expect("-o json");
        assert_eq!(cli.output, Format::Json);
    }

    #[test]
    fn request_ids_are_checked_and_history_takes_one() {
        let cli = Cli::try_parse_from([
            "palisadectl",
            "pause",
            "--request-id",
            "20231114T221320.123Z-9f86d081884c7d65",
        ])
        .expect("valid id");
        assert!(matches!(
            cli.command,
            Command::Pause {
                request: RequestArgs {
                    request_id: Some(_)
                },
                ..
            }
        ));
        let err = Cli::try_parse_from(["palisadectl", "resume", "--request-id", "x"])
            .expect_err("bad id");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--request-id"), "{err}");
        let cli = Cli::try_parse_from([
            "palisadectl",
            "history",
            "--request",
            "20231114T221320.123Z-9f86d081884c7d65",
        ])
        .expect("history --request");
        assert!(matches!(
            cli.command,
            Command::History {
                request: Some(_),
                ..
            }
        ));
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
    fn member_commands_take_ids_addresses_and_a_wait() {
        let cli = Cli::try_parse_from([
            "palisadectl",
            "member",
            "replace",
            "3",
            "--id",
            "4",
            "--raft-addr",
            "127.0.0.1:7304",
            "--control-addr",
            "[::1]:7404",
            "-y",
            "-o",
            "json",
        ])
        .expect("replace");
        assert_eq!(cli.output, Format::Json);
        let Command::Member {
            command:
                MemberCommand::Replace {
                    old_id,
                    new,
                    site,
                    change,
                },
        } = cli.command
        else {
            panic!("not member replace: {:?}", cli.command);
        };
        assert_eq!((old_id, new.id, site), (3, 4, None));
        assert_eq!(new.control_addr.to_string(), "[::1]:7404");
        assert!(change.confirm.yes);
        assert_eq!(change.wait_timeout, Duration::from_secs(60));
        let cli = Cli::try_parse_from([
            "palisadectl",
            "member",
            "remove",
            "5",
            "--wait-timeout",
            "2m",
        ])
        .expect("remove");
        assert!(matches!(
            cli.command,
            Command::Member {
                command: MemberCommand::Remove { id: 5, change }
            } if change.wait_timeout == Duration::from_secs(120) && !change.confirm.yes
        ));
        for args in [
            &["palisadectl", "member", "remove"][..],
            &["palisadectl", "member", "remove", "0"][..],
            &[
                "palisadectl",
                "member",
                "add",
                "--id",
                "4",
                "--site",
                "d",
                "--raft-addr",
                "127.0.0.1:1",
            ][..],
            &[
                "palisadectl",
                "member",
                "replace",
                "3",
                "--id",
                "4",
                "--raft-addr",
                "h:1",
                "--control-addr",
                "127.0.0.1:2",
            ][..],
        ] {
            let err = Cli::try_parse_from(args).expect_err("refused");
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
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
            "8  status answered, but the leader has no quorum",
            "9  a request that changes the cluster got no answer",
            "10 the operation was not confirmed",
        ] {
            assert!(help.contains(code), "{code} missing from --help");
        }
    }
}
