//! `palisade demo`: the quickstart, a whole site loss on one machine.
//!
//! The demo is a crate and a binary (`palisade-demo`) of its own, so that
//! the witness binary links no test kit and no test double: `palisade
//! demo ARGS` execs the `palisade-demo` beside it, which runs the
//! witnesses as the `palisade` beside itself. Build both with `cargo build
//! --release -p palisade -p palisade-demo`.
//!
//! 1. Finds the PostgreSQL server binaries (`PATH`, else
//!    `/usr/lib/postgresql/*/bin`); when they are missing it installs
//!    Debian's `postgresql-15` if it runs as root, or prints the command.
//! 2. Builds a primary (site a) and a streaming standby (site b) in a
//!    temporary directory, the way the HA/DR guide sets replication up. It
//!    reuses the test kit's [`PgPair`] for this (which is why
//!    `palisade-testkit` is a normal dependency of this crate, and of no
//!    production binary): the demo's pair is exactly the one the end-to-end
//!    tests fail over, handed to the witnesses as they hand it.
//! 3. Sets up the rest of each site's stack in the work directory
//!    (module `stack`): the two app servers' `threatconnect.xml` (site a's runs
//!    jobs, `monitorsEnabled=true`; both use site a's Elasticsearch), an
//!    Elasticsearch API **test double** per site (no Elasticsearch server is
//!    installed), and, when `haproxy` is installed, a real HAProxy in TCP
//!    mode in front of both PostgreSQL servers with site b's server in
//!    maintenance (module `haproxy`).
//! 4. Writes the three witness configs (`deploy/local/site-*.toml`, embedded
//!    in the binary, plus `[[database]]`, `[[app]]`, `[[elasticsearch]]`,
//!    `[[front_door]]` and `[[check]]` sections), starts the witnesses (the
//!    `palisade` binary, `run --config`), waits for a leader and a healthy detector,
//!    and prints the cluster status.
//! 5. Runs a writer (numbered rows, one `INSERT` per connection, through
//!    HAProxy when it runs, else on the current primary), and once 200 rows
//!    are acknowledged takes site a down: SIGKILL of witness a and of the
//!    primary postmaster.
//! 6. Waits for the failover (`fenced`, `promoted`, `app-flipped`,
//!    `repointed`, `verified`) and for the writer's rows on site b, then
//!    brings witness a back, whose agent switches site a's app off first
//!    thing and rebuilds its database as b's standby (`pg_rewind`, else a
//!    base backup: each `[[database]]` names its `replication_conninfo`);
//!    waits until the cluster records that rejoin.
//! 7. Prints the timeline (each step with its duration), the detection
//!    time, the RTO (kill to the first write the new primary acknowledged),
//!    the writes acknowledged and lost, the final primary, the rejoin, both
//!    apps' files as read back, the post-failover checks, and where the
//!    writes through HAProxy went.
//! 8. With `--keep`, and by default on a terminal with table output, keeps
//!    the cluster running as a playground (module `playground`): prints
//!    the exact commands to try next (`failback`, `pause`, `resume`, the
//!    DR drill of `deploy/drills/dr-test.toml`, `switchover`), each of
//!    which works against it in that order, and waits for Ctrl-C or
//!    SIGTERM.
//! 9. Cleans up on success, on error and on Ctrl-C / SIGTERM: HAProxy is
//!    killed, the Elasticsearch doubles stopped, witnesses get SIGTERM, the
//!    pair is stopped, both temporary directories are removed.
//!
//! Human output (`--output table`) prints `--- [elapsed] step` lines on
//! stdout. `--output json` sends progress to stderr and prints one JSON
//! object ([`Report`]) on stdout once the failover is reported (before the
//! playground, with `--keep`).
//!
//! With `--db mariadb` the same story runs on the HA/DR guide's other
//! setup, a MySQL master-master pair on MariaDB 10.11 (module `mariadb`,
//! docs/mariadb.md): step 1 finds `mariadbd` (else installs Debian's
//! `mariadb-server` as root, or prints the command); step 2 builds the
//! test kit's [`MariaPair`](palisade_testkit::mariadb::MariaPair) (server-id 1 at site a, the writer,
//! `read_only = OFF`; server-id 2 at site b, the other master, which its
//! agent keeps `read_only = ON`; each replicating from the other) and
//! hands it to the witnesses as `engine = "mariadb"` sections; HAProxy
//! fronts the two masters in TCP mode; the writer writes over the MySQL
//! protocol as the application's account, which `read_only` stops; step 5
//! SIGKILLs site a's `mariadbd`; in step 6 witness a's agent starts that
//! `mariadbd` again with `--read-only`, checks it for errant transactions
//! (committed there, never received by b: at times the writer's `INSERT`
//! in flight at the kill, which the demo lets replicate, see
//! `mariadb::ERRANT_POLICY`, and names in a progress line), and makes it
//! replicate from b. The report has the same fields;
//! where PostgreSQL words differ, see `report::JsonReport`'s docs.
//!
//! The witnesses listen on the fixed ports of `deploy/local/` (7301-7303 and
//! 7401-7403): one demo per machine at a time.

mod cluster;
mod haproxy;
mod mariadb;
mod pair;
mod playground;
mod postgres;
mod report;
mod resources;
mod stack;
mod writer;

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use palisade_api::v1::{FailoverSummary, StatusReply};
use palisade_testkit::pg::{PgPair, PgPairOptions};
use palisade_testkit::Attempt;
use tokio::signal::unix::{signal, Signal, SignalKind};

use cluster::Cluster;
use pair::DbPair;
pub use report::Report;
use report::{Progress, Timeline};
use resources::{cleanup, spawn_on_own_thread, Interrupted, Resources};
use stack::{Stack, REAL_RESTART};
use writer::{Route, Writer};

/// How the demo reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoOutput {
    /// `--- step` lines and a timeline for a human, on stdout.
    Table,
    /// Progress on stderr, one JSON object on stdout; no interaction.
    Json,
}

/// The database engine of the demo's pair: the HA/DR guide's two setups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Db {
    /// PostgreSQL 15: a primary (site a) and a streaming standby (site b),
    /// as the guide's PostgreSQL replication section sets them up.
    Postgresql,
    /// MariaDB: the guide's MySQL master-master pair (server-id 1 at site
    /// a, the writer; server-id 2 at site b, read-only; each replicating
    /// from the other).
    Mariadb,
}

impl Db {
    /// `postgresql` or `mariadb`, as `--db` and the config's `engine` spell
    /// it.
    pub fn as_str(self) -> &'static str {
        match self {
            Db::Postgresql => "postgresql",
            Db::Mariadb => "mariadb",
        }
    }

    /// `PostgreSQL` or `MariaDB`, for people.
    pub fn name(self) -> &'static str {
        match self {
            Db::Postgresql => "PostgreSQL",
            Db::Mariadb => "MariaDB",
        }
    }

    /// What site a's server process is called in the progress lines.
    fn primary_process(self) -> &'static str {
        match self {
            Db::Postgresql => "the primary postmaster",
            Db::Mariadb => "the writer's mariadbd",
        }
    }

    /// What the old primary's agent does when its witness is back.
    fn rejoin_story(self) -> &'static str {
        match self {
            Db::Postgresql => "rebuilds its database as b's standby (pg_rewind, else a base backup; fenced until then)",
            Db::Mariadb => "starts its mariadbd with --read-only, checks it for errant transactions (committed on a, never received by b; the demo lets them replicate, errant_transactions = \"replicate\"), and makes it replicate from b again",
        }
    }
}

/// The replication mode the demo's pair runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Replication {
    /// Asynchronous streaming, the guide's choice: a failover may lose the
    /// last writes the standby had not received.
    Async,
    /// Synchronous: a commit returns once the standby has it; a failover
    /// loses no acknowledged write. With `--db mariadb`: semi-synchronous
    /// replication.
    Sync,
}

impl Replication {
    /// `async` or `sync`, as the config file and the report spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Replication::Async => "async",
            Replication::Sync => "sync",
        }
    }
}

/// `palisade demo` arguments.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "palisade demo",
    bin_name = "palisade demo",
    version,
    about = "Fail over a whole site on this machine: a local PostgreSQL primary and streaming standby (or, with --db mariadb, the guide's MariaDB master-master pair), the two apps' threatconnect.xml, Elasticsearch test doubles, HAProxy (when installed), three witnesses (ports 7301-7303 and 7401-7403) and a writer; kills site a and prints the failover timeline, the RTO, the writes lost, the app flips and the checks. Cleans up on exit or Ctrl-C."
)]
pub struct DemoArgs {
    /// The database pair: `postgresql` (a primary and a streaming standby)
    /// or `mariadb` (the guide's MySQL master-master pair, on MariaDB).
    #[arg(long, value_enum, default_value = "postgresql")]
    pub db: Db,
    /// Replication mode of the local pair: `async` (the guide's choice) or
    /// `sync` (no acknowledged write may be lost; MariaDB: semi-sync).
    #[arg(long, value_enum, default_value = "async")]
    pub replication: Replication,
    /// `json`: run without interaction, progress on stderr, one JSON object
    /// on stdout at the end.
    #[arg(long, value_enum, default_value = "table")]
    pub output: DemoOutput,
    /// After the failover, keep the cluster running as a playground until
    /// Ctrl-C or SIGTERM, and print the commands to try on it (switchover,
    /// failback, pause, a DR drill). The default on a terminal with
    /// `--output table`; this flag also keeps it without a terminal.
    #[arg(long)]
    pub keep: bool,
}

/// Rows the writer must have acknowledged before site a is taken down.
const WRITES_BEFORE_KILL: usize = 200;
/// Rows the new primary acknowledges before the writer stops.
const WRITES_AFTER_FAILOVER: usize = 50;
/// Deadline for the cluster to settle (leader, roles, healthy primary).
const SETTLE: Duration = Duration::from_secs(60);
/// Deadline for the writer's first rows and for the failover.
const PHASE: Duration = Duration::from_secs(60);
/// How many times witness a is restarted to move Raft leadership away.
const LEADER_MOVES: u32 = 5;
/// Deadline for site a's database to rejoin as a standby once its witness
/// is back: crash recovery, `pg_rewind` (else a base backup), a start, the
/// first streamed WAL (MariaDB: crash recovery in a read-only start, the
/// errant transaction check, replication from b running); a failed attempt
/// is retried after 10 s.
const REJOIN: Duration = Duration::from_secs(120);
/// The witness whose control endpoint the playground's commands use: the
/// tie-breaker site's, which no operation touches.
const PLAYGROUND_WITNESS: &str = "c";

/// Runs the demo (see the module doc).
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let json = args.output == DemoOutput::Json;
    let progress = Progress::new(json);
    let mut interrupt = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let mut res = Resources::default();

    let outcome = tokio::select! {
        r = demo(&args, &progress, &mut res) => r,
        name = interrupted(&mut interrupt, &mut terminate) => {
            progress.step(format!("interrupted by {name}"));
            Err(Interrupted(name).into())
        }
    };
    if let Err(e) = &outcome {
        if e.downcast_ref::<Interrupted>().is_none() {
            progress.step(format!("failed: {e:#}"));
            if let Some(c) = &res.cluster {
                c.print_log_tails();
            }
        }
    }
    let keep = args.keep || (!json && std::io::stdin().is_terminal());
    let mut late_error = None;
    if let Ok(report) = &outcome {
        if json {
            // Printed now: with --keep the demo goes on until a signal.
            match serde_json::to_string_pretty(&report.json) {
                Ok(text) => println!("{text}"),
                Err(e) => late_error = Some(anyhow::Error::new(e).context("encoding the report")),
            }
        } else {
            report.print_human(&progress);
        }
        if keep {
            match report
                .check()
                .and_then(|()| show_playground(&res, &progress))
            {
                Ok(()) => {
                    let name = interrupted(&mut interrupt, &mut terminate).await;
                    progress.step(format!("{name}: stopping the playground"));
                }
                Err(e) => {
                    progress.step(format!("no playground: {e:#}"));
                    late_error.get_or_insert(e);
                }
            }
        }
    }
    progress.step(format!(
        "cleaning up: HAProxy, Elasticsearch doubles, witnesses (SIGTERM), {} pair, temporary directories",
        args.db.name()
    ));
    cleanup(res, &progress).await;
    let report = outcome?;
    report.check()?;
    match late_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Prints the playground's commands (module `playground`) for the
/// cluster in `res`.
fn show_playground(res: &Resources, p: &Progress) -> anyhow::Result<()> {
    let cluster = res
        .cluster
        .as_ref()
        .context("the witnesses are not running")?;
    let endpoint = cluster
        .endpoint_of(PLAYGROUND_WITNESS)
        .context("no witness at site c")?;
    let bin_dir = res.pg_bin_dir.clone().unwrap_or_default();
    let db = res.pair.as_ref().map(|p| p.db()).unwrap_or(Db::Postgresql);
    let (list, note) = playground::commands(&playground::Setup {
        db,
        dir: cluster.dir(),
        endpoint,
        operator: cluster.pki().operator(palisade_testkit::pki::OPERATOR),
        front_door_port: res.stack.as_ref().and_then(Stack::front_door_port),
        pg_bin_dir: &bin_dir,
    })?;
    let console = cluster.console_of(PLAYGROUND_WITNESS);
    playground::print(p, db, &list, note.as_deref(), console.as_deref());
    Ok(())
}

/// Waits for SIGINT or SIGTERM and names it.
async fn interrupted(interrupt: &mut Signal, terminate: &mut Signal) -> &'static str {
    tokio::select! {
        _ = interrupt.recv() => "SIGINT (Ctrl-C)",
        _ = terminate.recv() => "SIGTERM",
    }
}

/// Wall clock, Unix milliseconds (the witnesses stamp failover steps so).
fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The demo proper. Everything it starts goes into `res`.
async fn demo(args: &DemoArgs, p: &Progress, res: &mut Resources) -> anyhow::Result<Report> {
    let mode = args.replication;
    let configs = cluster::Configs::local()?;
    configs.check_ports_free()?;
    // Fail before building anything when the witness binary is missing.
    cluster::witness_binary()?;

    let pair = build_pair(args.db, mode, p, res).await?;
    res.pair = Some(pair.clone());

    let cluster = res.cluster.insert(Cluster::create(&configs)?);
    let stack = res.stack.insert(Stack::new(cluster.dir()));
    let route = set_up_stack(stack, &pair, p).await?;
    cluster.write_configs(&format!("{}\n{}", pair.sections(mode), stack.sections()?))?;

    p.step(format!(
        "starting witnesses a, b, c (raft {}, control {}; configs, data and logs in {})",
        configs.raft_ports(),
        configs.control_ports(),
        cluster.dir().display()
    ));
    cluster.start_all()?;
    if let Some(url) = cluster.console_of(PLAYGROUND_WITNESS) {
        p.detail(format!(
            "the status console, live in a browser: {url} (witness c's; each witness serves one, on its control port + 100)"
        ));
    }
    cluster
        .wait_for(
            "a leader, the roles recorded and site a's primary healthy",
            SETTLE,
            healthy,
        )
        .await?;
    move_leadership_off_a(cluster, p).await?;
    let status = cluster
        .wait_for(
            "every witness's view of both databases, site b's refusing writes",
            SETTLE,
            |s| (healthy(s).is_some() && all_views(s) && standby_fenced(s)).then(|| s.clone()),
        )
        .await?;
    p.step("the cluster is ready");
    report::print_status(p, &status);

    let how = match route {
        Route::FrontDoor { port } => format!("through HAProxy (127.0.0.1:{port}), one connection per row, each asking the server that took it for its port{}", match args.db {
            Db::Postgresql => "",
            Db::Mariadb => " (as the application's account, app, which read_only stops)",
        }),
        Route::Direct => "one connection per row, on the primary".to_string(),
    };
    p.step(format!(
        "starting the writer: rows 1, 2, 3, ... one INSERT at a time {how}; site a goes down once {WRITES_BEFORE_KILL} are acknowledged"
    ));
    Writer::create_table(&pair).await?;
    let writer = res.writer.insert(Writer::start(pair.clone(), route));
    writer.wait_acked("a", WRITES_BEFORE_KILL, PHASE).await?;
    let leader = cluster
        .wait_for("a leader", SETTLE, |s| s.leader_id)
        .await?;
    let leader_note = (leader == cluster.id_of("a"))
        .then(|| "witness a leads at the kill: this run also loses the Raft leader".to_string());
    if let Some(note) = &leader_note {
        p.detail(format!("note: {note}"));
    }

    p.step(format!(
        "site a goes down: SIGKILL of witness a and of {} ({} rows acknowledged so far)",
        args.db.primary_process(),
        writer.acked()
    ));
    let killed_at = Instant::now();
    let killed_wall_ms = unix_ms();
    cluster.send_kill("a")?;
    let victim = pair.clone();
    tokio::task::spawn_blocking(move || victim.kill_a())
        .await
        .context("the task killing the primary failed")?;
    cluster.reap("a").await;

    let failover = watch_failover(cluster, p, killed_wall_ms).await?;
    let first_b = writer
        .wait_first_on("b", PHASE)
        .await
        .context("waiting for the writer's first row on the new primary")?;
    p.step(format!(
        "the new primary acknowledged the writer's first row{}, {} ms after the kill",
        if route == Route::Direct {
            ""
        } else {
            " through HAProxy"
        },
        first_b.duration_since(killed_at).as_millis()
    ));
    writer.wait_acked("b", WRITES_AFTER_FAILOVER, PHASE).await?;
    let log = match res.writer.take() {
        Some(w) => w.stop().await?,
        None => bail!("the writer vanished"),
    };
    let on_b = writer::ids_on_b(&pair).await?;
    // MariaDB: what b had applied of a's binary log when promoted (its
    // replication from a stays stopped until a rejoins).
    let fork = match &*pair {
        DbPair::Maria(m) => Some(mariadb::fork_point(m).await?),
        DbPair::Pg(_) => None,
    };

    p.step(format!(
        "site a comes back: witness a restarts; its agent switches site a's app off before anything else, and {}",
        args.db.rejoin_story()
    ));
    let back_at = Instant::now();
    cluster.start("a")?;
    stack.wait_monitors("a", false, SETTLE).await?;
    let apps = stack.read_back()?;
    for a in &apps {
        p.detail(format!(
            "{}: monitorsEnabled={}",
            a.file.display(),
            a.monitors_enabled
                .map(|m| m.to_string())
                .unwrap_or_else(|| "(missing)".into())
        ));
    }
    let from = failover.from_site.clone();
    cluster
        .wait_for(
            &format!("site {from}'s database to rejoin as a standby (read-only, replicating)"),
            REJOIN,
            |s| rejoined(s, &from).then_some(()),
        )
        .await?;
    let rejoin = back_at.elapsed();
    p.step(format!(
        "site {from}'s database rejoined as a standby of {}, {}, {} ms after its witness restarted",
        failover.to_site,
        match args.db {
            Db::Postgresql => "streaming",
            Db::Mariadb => "read-only and replicating from it",
        },
        rejoin.as_millis()
    ));
    if let (DbPair::Maria(m), Some(fork)) = (&*pair, &fork) {
        match mariadb::errant_on_a(m, fork).await {
            Ok(e) if e.is_empty() => p.detail(format!(
                "errant transactions on site a: none (b had applied a's binary log up to {fork:?})"
            )),
            Ok(e) => p.detail(format!(
                "errant transactions on site a: up to {} past b's {fork:?}: committed by a's crash recovery, never acknowledged nor received by b (the writer's INSERT in flight at the kill, which it retried on b); with errant_transactions = \"{}\" they replicate to b, where that INSERT is a no-op (the default, \"refuse\", would keep a out of the pair until an operator reconciles them)",
                e.join(","),
                mariadb::ERRANT_POLICY
            )),
            Err(e) => p.detail(format!("errant transactions on site a: unknown ({e:#})")),
        }
    }
    let final_status = cluster
        .wait_for("the status after the failover", SETTLE, |s| {
            (s.primary_site == failover.to_site && all_views(s) && rejoined(s, &from))
                .then(|| s.clone())
        })
        .await?;
    p.step("the cluster after the failover");
    report::print_status(p, &final_status);

    Ok(Report::build(Timeline {
        db: args.db,
        mode,
        failover,
        status: final_status,
        killed_at,
        killed_wall_ms,
        first_write_on_new_primary: first_b,
        log,
        on_new_primary: on_b,
        leader_note,
        rejoin,
        apps,
        front_door: (route != Route::Direct).then_some("haproxy"),
    }))
}

/// Finds (or installs) the engine's server and builds the pair as the
/// guide sets it up; records the build in `res` while it runs, so that an
/// interrupt stops it.
async fn build_pair(
    db: Db,
    mode: Replication,
    p: &Progress,
    res: &mut Resources,
) -> anyhow::Result<Arc<DbPair>> {
    let build = match db {
        Db::Postgresql => {
            p.step("looking for the PostgreSQL server binaries");
            let bin_dir = postgres::ensure_binaries(p).await?;
            p.detail(format!("using {}", bin_dir.display()));
            res.pg_bin_dir = Some(bin_dir);
            p.step(format!(
                "building a PostgreSQL primary (site a) and a streaming standby (site b), {} replication, as the guide sets them up",
                mode.as_str()
            ));
            let opts = PgPairOptions {
                synchronous: mode == Replication::Sync,
            };
            spawn_on_own_thread(
                move || async move { PgPair::start_with(opts).await.map(DbPair::Pg) },
            )
        }
        Db::Mariadb => {
            p.step("looking for the MariaDB server");
            let bin = mariadb::ensure_server(p).await?;
            p.detail(format!("using {}", bin.display()));
            p.step(format!(
                "building the guide's MySQL master-master pair on MariaDB: server-id 1 (site a, the writer) and server-id 2 (site b), auto_increment_increment 2, each replicating from the other by binary log file and position, {} replication",
                match mode {
                    Replication::Async => "asynchronous",
                    Replication::Sync => "semi-synchronous",
                }
            ));
            spawn_on_own_thread(move || async move {
                mariadb::build_pair(mode).await.map(DbPair::Maria)
            })
        }
    };
    let build = res.pair_build.insert(build);
    let built = build.await;
    res.pair_build = None;
    let pair = Arc::new(
        built
            .with_context(|| format!("the {} pair's setup task failed", db.name()))?
            .with_context(|| format!("building the {} pair", db.name()))?,
    );
    match &*pair {
        DbPair::Pg(pg) => p.detail(format!(
            "pair in {}: primary 127.0.0.1:{} (site a), standby 127.0.0.1:{} (site b), streaming",
            pg.dir().display(),
            pg.primary.port(),
            pg.standby.port()
        )),
        DbPair::Maria(m) => p.detail(format!(
            "pair in {}: site a's master 127.0.0.1:{} (server-id {}, the writer), site b's master 127.0.0.1:{} (server-id {}, its agent makes it read-only), replicating both ways; the app's database `app`",
            m.dir().display(),
            m.a.port(),
            m.a.server_id(),
            m.b.port(),
            m.b.server_id()
        )),
    }
    Ok(pair)
}

/// Sets up the rest of each site's stack (see [`stack`]) and says what it
/// is; returns how the writer reaches the database.
async fn set_up_stack(stack: &mut Stack, pair: &DbPair, p: &Progress) -> anyhow::Result<Route> {
    p.step("setting up the rest of each site's stack: the app servers' configs, Elasticsearch, the front door");
    stack.start_search().await?;
    p.detail(format!(
        "Elasticsearch: TEST DOUBLES of its REST API (palisade_testkit::es_double), not Elasticsearch: no Elasticsearch server is installed here. Site a {}, site b {}; palisade's production client code probes them",
        stack.search_url("a")?,
        stack.search_url("b")?
    ));
    for line in stack.write_apps(pair)? {
        p.detail(format!("app config {line}"));
    }
    p.detail(format!(
        "app restart_command: appends a line to site-X/app-restarts.log, standing in for `{REAL_RESTART}`"
    ));
    let route = match haproxy::find_binary() {
        Some(bin) => {
            let servers = stack.start_haproxy(&bin, pair).await?;
            let port = stack
                .front_door_port()
                .context("HAProxy started without a frontend port")?;
            p.detail(format!(
                "front door: {} in TCP mode on 127.0.0.1:{port}, runtime API {}; site b's server put in maintenance through the runtime API:",
                bin.display(),
                stack.haproxy_socket().map(|s| s.display().to_string()).unwrap_or_default()
            ));
            for s in servers {
                p.detail(format!("  {s}"));
            }
            Route::FrontDoor { port }
        }
        None => {
            p.detail("front door: haproxy is not installed (apt-get install -y haproxy), so there is none; the writer connects to the servers directly");
            Route::Direct
        }
    };
    p.detail(format!(
        "extra post-failover check: {:?}, GET {}/_cluster/health, expecting 200",
        Stack::check_name(),
        stack.search_url("b")?
    ));
    Ok(route)
}

/// The cluster is led, has recorded site a as primary, and the leader's
/// detector calls it healthy.
fn healthy(s: &StatusReply) -> Option<()> {
    (s.leader_id.is_some() && s.primary_site == "a" && s.assessment.starts_with("healthy"))
        .then_some(())
}

/// Every witness sees site b's server refusing writes: a standby in
/// recovery (PostgreSQL), or a master with `read_only = ON` (MariaDB: the
/// guide leaves both masters writable, and b's agent fences it at start).
fn standby_fenced(s: &StatusReply) -> bool {
    s.nodes.iter().all(|n| {
        n.databases
            .iter()
            .any(|d| d.site == "b" && d.reachable && d.in_recovery == Some(true))
    })
}

/// The cluster records `site` as the standby, no longer due to rejoin, and
/// a witness sees it in recovery and streaming (MariaDB: `read_only = ON`
/// and its IO thread replicating from the new writer).
fn rejoined(s: &StatusReply, site: &str) -> bool {
    s.standby_site == site
        && !s.standby_needs_rejoin
        && s.nodes
            .iter()
            .flat_map(|n| &n.databases)
            .any(|d| d.site == site && d.reachable && d.in_recovery == Some(true) && d.streaming)
}

/// Every witness answers and has probed both databases.
fn all_views(s: &StatusReply) -> bool {
    s.nodes.len() == 3
        && s.nodes
            .iter()
            .all(|n| n.error.is_empty() && n.databases.len() == 2)
}

/// Makes sure witness a is not the Raft leader, so that the site loss is
/// not also a leader loss: SIGKILL and restart it until another witness
/// leads (Raft then elects among b and c). Gives up with a note after
/// [`LEADER_MOVES`] attempts.
async fn move_leadership_off_a(cluster: &mut Cluster, p: &Progress) -> anyhow::Result<()> {
    let a = cluster.id_of("a");
    for attempt in 1..=LEADER_MOVES {
        let leader = cluster
            .wait_for("a leader", SETTLE, |s| s.leader_id)
            .await?;
        if leader != a {
            return Ok(());
        }
        p.step(format!(
            "witness a leads; restarting it so that another witness leads when site a goes down (attempt {attempt} of {LEADER_MOVES})"
        ));
        cluster.send_kill("a")?;
        cluster.reap("a").await;
        cluster.start("a")?;
        cluster
            .wait_for("a leader other than witness a", SETTLE, |s| {
                s.leader_id.filter(|l| *l != a)
            })
            .await?;
        cluster
            .wait_for("witness a back and site a healthy", SETTLE, |s| {
                (healthy(s).is_some() && all_views(s)).then_some(())
            })
            .await?;
    }
    p.detail(format!(
        "note: witness a still leads after {LEADER_MOVES} restarts; the failover will also elect a new leader"
    ));
    Ok(())
}

/// Follows the failover as the witnesses commit it, printing each step as
/// it lands, until it has an outcome. An aborted failover is an error.
async fn watch_failover(
    cluster: &mut Cluster,
    p: &Progress,
    killed_wall_ms: i64,
) -> anyhow::Result<FailoverSummary> {
    let mut announced = false;
    let mut steps_seen = 0;
    cluster
        .watch("a failover to complete after the kill", PHASE, |s| {
            let Some(s) = s else {
                return Attempt::NotYet("no witness answered".into());
            };
            let current = s.failover_in_progress.clone().or_else(|| {
                s.last_failover
                    .clone()
                    .filter(|f| f.epoch == s.epoch && f.epoch > 0)
            });
            let Some(f) = current else {
                return Attempt::NotYet(format!(
                    "epoch {}, primary {}, detector {:?}",
                    s.epoch, s.primary_site, s.assessment
                ));
            };
            if !announced {
                announced = true;
                p.step(format!(
                    "failover started (epoch {}, {} -> {}), {} ms after the kill: {}",
                    f.epoch,
                    f.from_site,
                    f.to_site,
                    f.started_at_ms - killed_wall_ms,
                    f.reason
                ));
            }
            for step in f.steps.iter().skip(steps_seen) {
                p.step(format!(
                    "step {} done in {} ms: {}",
                    step.step,
                    (step.done_at_ms - step.started_at_ms).max(0),
                    step.detail
                ));
            }
            steps_seen = steps_seen.max(f.steps.len());
            if f.outcome.is_empty() {
                return Attempt::NotYet(format!("failover at {} steps", f.steps.len()));
            }
            p.step(format!("failover finished: {}", f.outcome));
            if f.outcome.starts_with("aborted") {
                return Attempt::GiveUp(anyhow::anyhow!("the failover was aborted: {}", f.outcome));
            }
            Attempt::Ready(f)
        })
        .await
}
