//! `palisade`: the witness daemon, its offline tools and the local demo.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use palisade::config::{Config, LogFormat};
use tokio_util::sync::CancellationToken;

mod gen_assets;
mod store_tool;

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
        /// Log lines as text, or one JSON object per line for log
        /// shippers; overrides `log.format` (docs/operations.md, "Logs").
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Validate a config file and exit: 0 when valid, 1 with the reason when not.
    CheckConfig {
        /// The config file to check.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print what a stopped witness's data directory holds (vote, log, state).
    /// Read only: it takes the store's lock, so stop the witness first.
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
    /// Cleans up on exit or Ctrl-C. Runs the `palisade-demo` binary beside
    /// this one (`palisade demo --help` lists its options).
    #[command(disable_help_flag = true)]
    Demo {
        /// Passed on to `palisade-demo`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Enforce a database's lease from a process of its own (the witness
    /// starts it): freeze the server when the lease runs out, thaw it when
    /// the lease comes back, kill it on a committed failover. Runs until
    /// SIGTERM, and keeps enforcing while the witness is dead.
    #[command(hide = true)]
    LeaseGuard(palisade::lease_guard::GuardArgs),
    /// Write palisade's man pages and shell completions into DIR (`man/`,
    /// `completions/`), for the Debian package.
    #[command(hide = true)]
    GenerateAssets {
        /// Where to write them.
        dir: PathBuf,
    },
    /// Certificates for mutual TLS: a cluster CA, and certificates for
    /// witnesses and operators (docs/security.md).
    Cert {
        #[command(subcommand)]
        command: CertCmd,
    },
    /// Back up, restore or rebuild a stopped witness's Raft store.
    ///
    /// Back it up, restore this witness's own backup, or rebuild it empty
    /// from its peers (docs/store.md, "Backups, restores and rebuilds").
    /// Restore and rebuild ask the other witnesses first and set the vote
    /// that keeps the witness from voting twice; they refuse, changing
    /// nothing, unless the others follow one leader.
    Store {
        #[command(subcommand)]
        command: store_tool::StoreCmd,
    },
}

#[derive(Subcommand)]
enum CertCmd {
    /// Creates the cluster CA: `ca.crt` and `ca.key` (owner-only) in DIR.
    /// Keep `ca.key` offline; give `ca.crt` to every witness and operator.
    Init {
        /// Where to write the CA.
        #[arg(long)]
        dir: PathBuf,
        /// The cluster's name (`cluster.name` in every witness's config).
        #[arg(long)]
        cluster: String,
        /// How long the CA is valid.
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// Replace an existing CA (every certificate it issued stops
        /// being trusted once the witnesses reload).
        #[arg(long)]
        force: bool,
    },
    /// Issues a certificate signed by the CA in `--ca-dir`: for witness N
    /// (`--witness N --site S`) or for an operator (`--operator NAME
    /// --role viewer|operator`). Writes `<name>.crt`, `<name>.key` and a
    /// copy of `ca.crt` into `--out` (default: the CA's directory).
    Issue {
        /// The CA's directory (`palisade cert init --dir`).
        #[arg(long)]
        ca_dir: PathBuf,
        /// Where to write the certificate and key.
        #[arg(long)]
        out: Option<PathBuf>,
        /// A witness's node id (`node_id` in its config).
        #[arg(long, conflicts_with_all = ["operator", "role"], requires = "site")]
        witness: Option<u64>,
        /// The witness's site (its `[[witness]] site`).
        #[arg(long, requires = "witness")]
        site: Option<String>,
        /// An operator's name, recorded in the history for what they do.
        #[arg(long, requires = "role")]
        operator: Option<String>,
        /// What the operator may do: `viewer` (status, history, watch,
        /// journal) or `operator` (everything).
        #[arg(long, value_parser = ["viewer", "operator"])]
        role: Option<String>,
        /// How long the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Shows a certificate's identity and validity.
    Show {
        /// The certificate (PEM).
        cert: PathBuf,
    },
}

/// Logs to stderr: `RUST_LOG` when set, else `level` with openraft capped
/// at `warn`; repeated identical warnings and errors held back with a
/// count (`palisade::logging`).
fn init_logging(format: LogFormat, level: &str) -> anyhow::Result<palisade::logging::LogHandle> {
    let filter = palisade::logging::filter_for(level);
    palisade::logging::init(matches!(format, LogFormat::Json), &filter)
}

/// Cancels the token on SIGTERM or SIGINT. With a `bound` (the witness),
/// also makes sure the process exits within it from then on: a watchdog
/// thread exits it (status 1, after flushing `log`) if the orderly stop
/// has not, and a second signal exits at once.
fn cancel_on_signals(
    token: CancellationToken,
    bound: Option<std::time::Duration>,
    log: Option<std::sync::Arc<palisade::logging::LogHandle>>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        token.cancel();
        let Some(bound) = bound else { return };
        {
            let log = log.clone();
            let watchdog = std::thread::Builder::new()
                .name("shutdown-watchdog".into())
                .spawn(move || {
                    std::thread::sleep(bound);
                    tracing::error!(
                        bound_ms = bound.as_millis() as u64,
                        "the shutdown overran its bound: exiting now"
                    );
                    if let Some(log) = log {
                        log.flush();
                    }
                    std::process::exit(1);
                });
            if let Err(e) = watchdog {
                tracing::warn!(error = %e, "cannot start the shutdown watchdog");
            }
        }
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!("second signal while stopping: exiting now");
        if let Some(log) = log {
            log.flush();
        }
        std::process::exit(1);
    });
    Ok(())
}

async fn real_main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Run { config, log_format } => {
            let config = Config::load(&config)?;
            let format = log_format.unwrap_or(config.log_format);
            let log = std::sync::Arc::new(init_logging(format, &config.log_level)?);
            let token = CancellationToken::new();
            cancel_on_signals(
                token.clone(),
                Some(palisade::daemon::SHUTDOWN_BOUND),
                Some(log.clone()),
            )?;
            let result = palisade::daemon::run(config, token).await;
            log.flush();
            result
        }
        Cmd::CheckConfig { config } => {
            let c = Config::load(&config)?;
            // The certificates too: a witness that cannot load them does
            // not start.
            let tls = palisade::tls::setup(
                &c,
                &palisade_raft::members::Members::new(c.topology.clone()),
            )?;
            let own = c.topology.own();
            println!(
                "{}: ok: node {} (site {}), {} witnesses, data dir {}; transport: {}",
                config.display(),
                c.topology.own_id,
                own.site,
                c.topology.witnesses.len(),
                c.data_dir.display(),
                palisade::tls::describe(tls.store.as_deref())
            );
            Ok(())
        }
        Cmd::Cert { command } => cert(command),
        Cmd::Store { command } => store_tool::run(command).await,
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
        Cmd::Demo { args } => Err(exec_demo(args)),
        Cmd::LeaseGuard(args) => {
            let _log = init_logging(LogFormat::Text, "info")?;
            let token = CancellationToken::new();
            cancel_on_signals(token.clone(), None, None)?;
            // `systemctl kill -s HUP` (or a reload sent to the unit's whole
            // control group) reaches the guard too: SIGHUP's default action
            // would end it, and with it the lease's enforcement.
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("installing the SIGHUP handler")?;
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP ignored: the lease guard reloads the witness's certificate by itself; only SIGTERM or SIGINT stops it");
                }
            });
            Ok(palisade::lease_guard::run(args, token).await?)
        }
        Cmd::GenerateAssets { dir } => {
            // The package ships no `palisade-demo`, so no page for `demo`.
            let cmd = Cli::command().mut_subcommand("demo", |demo| demo.hide(true));
            gen_assets::generate(cmd, &dir).map_err(anyhow::Error::msg)
        }
    }
}

/// `palisade cert ...`.
fn cert(command: CertCmd) -> anyhow::Result<()> {
    use palisade_tls::Validity;
    match command {
        CertCmd::Init {
            dir,
            cluster,
            days,
            force,
        } => {
            let files = palisade_tls::init_ca(&dir, &cluster, Validity::days(days), force)?;
            println!(
                "CA of cluster {cluster}: {} (key {}, owner-only: keep it offline)",
                files.cert.display(),
                files.key.display()
            );
        }
        CertCmd::Issue {
            ca_dir,
            out,
            witness,
            site,
            operator,
            role,
            days,
        } => {
            let out = out.unwrap_or_else(|| ca_dir.clone());
            let validity = Validity::days(days);
            let files = match (witness, site, operator, role) {
                (Some(node), Some(site), None, None) => {
                    palisade_tls::issue_witness(&ca_dir, &out, node, &site, validity)?
                }
                (None, None, Some(name), Some(role)) => {
                    let role: palisade_tls::Role = role
                        .parse()
                        .map_err(|e| anyhow::anyhow!("--role: {e}"))?;
                    palisade_tls::issue_operator(&ca_dir, &out, &name, role, validity)?
                }
                _ => anyhow::bail!(
                    "say whom the certificate is for: --witness N --site S, or --operator NAME --role viewer|operator"
                ),
            };
            let ca = ca_dir.join(palisade_tls::CA_CERT_FILE);
            let ca_copy = out.join(palisade_tls::CA_CERT_FILE);
            if ca != ca_copy {
                std::fs::copy(&ca, &ca_copy).with_context(|| {
                    format!("copying {} to {}", ca.display(), ca_copy.display())
                })?;
            }
            println!(
                "{} (key {}, owner-only), with {}",
                files.cert.display(),
                files.key.display(),
                ca_copy.display()
            );
        }
        CertCmd::Show { cert } => {
            let pem =
                std::fs::read(&cert).with_context(|| format!("reading {}", cert.display()))?;
            let der = rustls_pki_types::pem::PemObject::from_pem_slice(&pem)
                .map(|c: rustls_pki_types::CertificateDer<'static>| c)
                .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate: {e}", cert.display()))?;
            let identity = palisade_tls::identity_of(&der)
                .with_context(|| format!("{}: no palisade identity", cert.display()))?;
            println!("{}: {}", cert.display(), identity.uri());
        }
    }
    Ok(())
}

/// Replaces this process with the `palisade-demo` binary beside this one,
/// passing `args` on: the demo is a crate of its own, so that the witness
/// links no test kit. Returns only when that fails, with why.
fn exec_demo(args: Vec<std::ffi::OsString>) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let demo = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name("palisade-demo"),
        Err(e) => return anyhow::Error::new(e).context("locating the palisade binary"),
    };
    if !demo.is_file() {
        let release = if demo
            .parent()
            .and_then(|d| d.file_name())
            .is_some_and(|n| n == "release")
        {
            " --release"
        } else {
            ""
        };
        return anyhow::anyhow!(
            "the demo binary {} is missing: `palisade demo` runs it from beside `palisade`; build both with `cargo build{release} -p palisade -p palisade-demo`",
            demo.display()
        );
    }
    let e = std::process::Command::new(&demo)
        .arg0("palisade demo")
        .args(args)
        .exec();
    anyhow::Error::new(e).context(format!("running {}", demo.display()))
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
