//! `palisade`: the witness daemon, its offline tools and the local demo.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use palisade::config::{Config, LogFormat};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "palisade",
    version,
    about = "Quorum-safe failover coordinator: the witness daemon"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one witness (one per site) until SIGTERM or Ctrl-C.
    Run {
        /// The site's config file (docs/configuration.md).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file and exit: 0 when valid, 1 with the reason when not.
    CheckConfig {
        /// The config file to check.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print what a stopped witness's data directory holds (vote, log, state).
    Inspect {
        /// The witness's `storage.data_dir`.
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Fail over a whole site on this machine: a local PostgreSQL primary and
    /// streaming standby, the two apps' threatconnect.xml, Elasticsearch test
    /// doubles, HAProxy (when installed), three witnesses (ports 7301-7303
    /// and 7401-7403) and a writer; kills site a and prints the failover
    /// timeline, the RTO, the writes lost, the app flips and the checks.
    /// Cleans up on exit or Ctrl-C.
    Demo(palisade::demo::DemoArgs),
    /// Enforce a database's lease from a process of its own (the witness
    /// starts it): freeze the server when the lease runs out, thaw it when
    /// the lease comes back, kill it on a committed failover. Runs until
    /// SIGTERM, and keeps enforcing while the witness is dead.
    #[command(hide = true)]
    LeaseGuard(palisade::lease_guard::GuardArgs),
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Cancels the token on SIGTERM or SIGINT.
fn cancel_on_signals(token: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        token.cancel();
    });
    Ok(())
}

async fn real_main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Run { config } => {
            let config = Config::load(&config)?;
            init_logging(config.log_format, &config.log_level);
            let token = CancellationToken::new();
            cancel_on_signals(token.clone())?;
            palisade::daemon::run(config, token).await
        }
        Cmd::CheckConfig { config } => {
            let c = Config::load(&config)?;
            let own = c.topology.own();
            println!(
                "{}: ok: node {} (site {}), {} witnesses, data dir {}",
                config.display(),
                c.topology.own_id,
                own.site,
                c.topology.witnesses.len(),
                c.data_dir.display()
            );
            Ok(())
        }
        Cmd::Inspect { data_dir, output } => {
            let report = palisade::inspect::inspect(&data_dir).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Output::Table => {
                    println!(
                        "vote:          term {} for {:?} (committed: {})",
                        report.vote_term, report.voted_for, report.vote_committed
                    );
                    println!(
                        "last log:      {:?} (purged up to {:?})",
                        report.last_log_index, report.last_purged_index
                    );
                    println!("committed:     {:?}", report.committed_index);
                    println!("last applied:  {:?}", report.last_applied_index);
                    println!("voters:        {:?}", report.voters);
                    println!("journal:       {} entries", report.journal_entries);
                }
            }
            Ok(())
        }
        Cmd::Demo(args) => {
            init_logging(LogFormat::Text, "warn");
            palisade::demo::run(args).await
        }
        Cmd::LeaseGuard(args) => {
            init_logging(LogFormat::Text, "info");
            let token = CancellationToken::new();
            cancel_on_signals(token.clone())?;
            Ok(palisade::lease_guard::run(args, token).await?)
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, for operators and scripts.
            eprintln!("palisade: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
