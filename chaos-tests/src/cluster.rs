//! One world: three sites in namespaces; a witness in each; PostgreSQL 15
//! primary in site a and streaming standby in site b (the test kit's
//! [`PgPair`], placed in the sites' namespaces: run as OS user `postgres`,
//! built with initdb + pg_basebackup -R as the guide does); the two apps'
//! `threatconnect.xml`; HAProxy on the host side of the bridge as the front
//! door (the test kit's config and runner). Dropping a [`World`] tears all
//! of it down, also on panic.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;
use palisade_testkit::app::threatconnect_xml;
use palisade_testkit::haproxy::{self, Haproxy, HaproxyConfig};
use palisade_testkit::pg::{Namespaces, NetnsSite, PgPair, PgPairOptions, PgServer};
use palisade_testkit::{wait_for, Attempt, Patience};
use serde_json::Value;

use crate::faults::{FaultLog, Net};
use crate::netns::{self, SITES};
use crate::procs;
use crate::step;

/// Superuser of the test clusters (password auth over TCP, trust on the
/// unix socket the harness's own clients use), and its password.
pub use palisade_testkit::pg::{SUPERUSER, SUPERUSER_PASSWORD as PASSWORD};
/// Port of PostgreSQL in each data site, and of the front door on the host.
pub const PG_PORT: u16 = 5432;
/// The servers' `wal_sender_timeout` / `wal_receiver_timeout`: a cut or
/// frozen peer is noticed in about two seconds.
const WAL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a world may take to become ready, or to settle after a heal.
pub const SETTLE: Duration = Duration::from_secs(60);
/// `[failover] sync_degrade_after_ms` of every world: shorter than the
/// servers' 2 s `wal_sender_timeout` / `wal_receiver_timeout` (equal on
/// both sides, as docs/operations.md asks), so a cut standby is degraded on
/// evidence, not by the disconnect.
pub const SYNC_DEGRADE_AFTER_MS: u64 = 1000;

/// The databases of a world.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// PostgreSQL 15: primary in site a, streaming standby in site b.
    #[default]
    Postgres,
    /// MariaDB 10.11: the guide's master-master pair, the writer
    /// (`read_only = OFF`) in site a and the other master in site b
    /// ([`crate::maria`]).
    MariaDb,
}

/// The settings a world's witnesses run with (docs/chaos.md explains the
/// choice).
#[derive(Clone, Debug)]
pub struct Settings {
    /// The databases.
    pub engine: Engine,
    /// `[probe] interval_ms`.
    pub probe_interval_ms: u64,
    /// `[failover] down_after_ms`.
    pub down_after_ms: u64,
    /// `[lease] ttl_ms`.
    pub lease_ttl_ms: u64,
    /// `[failover] on_primary_crash`: `restart` or `failover`.
    pub on_primary_crash: &'static str,
    /// `[failover] restart_budget_ms`.
    pub restart_budget_ms: u64,
    /// `[failover] replication`: `sync` or `async`.
    pub replication: &'static str,
    /// `PALISADE_FAILPOINTS` for every witness's first start (debug builds).
    pub failpoints: Option<String>,
    /// A timing profile: `[raft]`, `[probe]`, `[lease]` and `[failover]`
    /// sections written into every witness's config verbatim, *instead of*
    /// the sections built from the fields above (then only `replication`
    /// of them is used: it must name the mode the profile leaves in force,
    /// which readiness checks). `Some("")` runs the daemon's own defaults;
    /// `deploy/profiles/fast.toml` is another. `None`: the fields above.
    pub profile: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            engine: Engine::Postgres,
            probe_interval_ms: 200,
            down_after_ms: 1000,
            lease_ttl_ms: 1500,
            on_primary_crash: "restart",
            restart_budget_ms: 5000,
            replication: "sync",
            failpoints: None,
            profile: None,
        }
    }
}

/// One witness process.
pub struct Witness {
    /// Its site.
    pub site: &'static str,
    /// Its Raft id (a=1, b=2, c=3).
    pub id: u64,
    config: PathBuf,
    /// Its stderr.
    pub log: PathBuf,
    child: Option<Child>,
}

/// One PostgreSQL server (of the world's [`PgPair`]).
pub struct Db {
    /// Its site.
    pub site: &'static str,
    /// `PGDATA` (MariaDB: `datadir`).
    pub data_dir: PathBuf,
    /// `unix_socket_directories`: how the harness's own clients reach it,
    /// whatever the network cuts (as an app on the same host would).
    /// MariaDB: the socket itself.
    pub sock_dir: PathBuf,
    /// `pg_ctl -l` (MariaDB: `log-error`).
    pub log: PathBuf,
}

/// One world. See the module doc.
pub struct World {
    /// `/tmp/pal-chaos-*`: every file of the world.
    pub dir: PathBuf,
    /// The settings its witnesses run with.
    pub settings: Settings,
    /// The fault log.
    pub log: FaultLog,
    /// The network cuts in force.
    pub net: Option<Net>,
    /// Witnesses a, b, c.
    pub witnesses: Vec<Witness>,
    /// Databases a (primary at start) and b (standby at start).
    pub dbs: Vec<Db>,
    /// The servers of [`World::dbs`]; stopped at teardown.
    pair: Option<PgPair>,
    /// The MariaDB pair of a MariaDB world; killed at teardown.
    maria: Option<crate::maria::MariaPair>,
    /// The apps' `threatconnect.xml`, by site.
    pub apps: Vec<(&'static str, PathBuf)>,
    /// HAProxy's runtime API socket.
    pub haproxy_sock: PathBuf,
    haproxy: Option<Haproxy>,
    palisade: PathBuf,
    palisadectl: PathBuf,
    /// The world's certificates (made with the witnesses' configs).
    pki: Option<palisade_testkit::pki::TestPki>,
    /// Where to keep the logs when the run failed (set by the runner).
    pub keep_logs_in: Option<PathBuf>,
    /// Held while the world exists: see [`machine_lock`]. Declared before
    /// `_serial` and released after teardown (Drop runs before fields drop).
    _machine: fs::File,
    _serial: MutexGuard<'static, ()>,
}

/// Where worlds of different processes (a test run, the `chaos` binary)
/// take turns: they share names and addresses, and a world that starts
/// removes whatever another left behind, so two at once would destroy
/// each other.
pub const MACHINE_LOCK: &str = "/run/palisade-chaos.lock";

/// Takes the machine-wide lock, waiting (and saying so) while another
/// process holds it.
fn machine_lock() -> Result<fs::File> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(MACHINE_LOCK)
        .with_context(|| format!("opening {MACHINE_LOCK}"))?;
    match f.try_lock() {
        Ok(()) => return Ok(f),
        Err(fs::TryLockError::WouldBlock) => {
            eprintln!(
                "chaos: another process runs a world ({MACHINE_LOCK} is locked); waiting for it"
            );
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {MACHINE_LOCK}"))
        }
    }
    f.lock()
        .with_context(|| format!("locking {MACHINE_LOCK}"))?;
    Ok(f)
}

/// One world at a time in a process: they share names and addresses.
static SERIAL: Mutex<()> = Mutex::new(());

/// On SIGINT / SIGTERM, tear everything down before exiting, so an
/// interrupted run leaves nothing behind.
fn install_signal_cleanup() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        std::thread::spawn(|| {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("chaos: no signal handler ({e}); an interrupted run leaves leftovers that the next run cleans");
                    return;
                }
            };
            rt.block_on(async {
                use tokio::signal::unix::{signal, SignalKind};
                let (Ok(mut int), Ok(mut term)) = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) else {
                    return;
                };
                let name = tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                };
                eprintln!("chaos: {name}: tearing down every world before exiting");
                for p in netns::cleanup_all() {
                    eprintln!("chaos: cleanup: {p}");
                }
                std::process::exit(130);
            });
        });
    });
}

/// `monitorsEnabled` as the file says it: the value of the one uncommented
/// `<property ... name="monitorsEnabled" .../>` element.
pub fn read_monitors(file: &Path) -> Result<bool> {
    let text = fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut rest = text.as_str();
    let mut values = Vec::new();
    while let Some(start) = rest.find("<!--") {
        let (before, after) = rest.split_at(start);
        values.extend(monitors_in(before));
        rest = after.find("-->").map(|e| &after[e + 3..]).unwrap_or("");
    }
    values.extend(monitors_in(rest));
    match values.as_slice() {
        [v] => Ok(*v),
        other => bail!(
            "{}: expected one monitorsEnabled property, found {} ({other:?})",
            file.display(),
            other.len()
        ),
    }
}

fn monitors_in(text: &str) -> Vec<bool> {
    text.split("<property")
        .skip(1)
        .filter_map(|el| {
            let el = &el[..el.find("/>")?];
            if !el.contains("name=\"monitorsEnabled\"") {
                return None;
            }
            let v = el.split("value=\"").nth(1)?.split('"').next()?;
            Some(v == "true")
        })
        .collect()
}

impl World {
    /// Builds and starts a world, and waits until it is ready: a leader
    /// all witnesses agree on, roles recorded, the detector healthy, the
    /// standby streaming (and, in sync mode, synchronous replication on).
    /// Refuses to start, after cleaning them, if an earlier run left
    /// anything behind.
    pub async fn start(settings: Settings) -> Result<World> {
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let machine = machine_lock()?;
        install_signal_cleanup();
        let left = netns::leftovers();
        if !left.is_empty() {
            let problems = netns::cleanup_all();
            bail!(
                "leftovers of an earlier chaos run were found (an interrupted or killed run):\n  {}\nthey have been cleaned up{}; refusing to start this run on a machine that was not clean: run it again",
                left.join("\n  "),
                if problems.is_empty() {
                    String::new()
                } else {
                    format!(", except: {}", problems.join("; "))
                }
            );
        }
        let (palisade, palisadectl) = crate::binaries()?;
        let dir = PathBuf::from(format!(
            "/tmp/{}{}-{}",
            netns::WORLD_DIR_PREFIX,
            std::process::id(),
            crate::now_ms()
        ));
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
        let log = FaultLog::new(dir.join("faults.log"));
        let mut w = World {
            haproxy_sock: dir.join("haproxy.sock"),
            dir,
            settings,
            log,
            net: None,
            witnesses: Vec::new(),
            dbs: Vec::new(),
            pair: None,
            maria: None,
            apps: Vec::new(),
            haproxy: None,
            palisade,
            palisadectl,
            pki: None,
            keep_logs_in: None,
            _machine: machine,
            _serial: serial,
        };
        step("create the sites: namespaces pal-a/b/c on bridge pal-br0 (198.18.0.0/24)");
        netns::create()?;
        w.net = Some(Net::new(w.log.clone())?);
        match w.settings.engine {
            Engine::Postgres => {
                step(
                    "PostgreSQL: primary in site a (initdb), standby in site b (pg_basebackup -R)",
                );
                w.start_databases().await?;
            }
            Engine::MariaDb => {
                step("MariaDB: the guide's master-master pair, writer in site a, the other master (read-only) in site b");
                w.start_maria().await?;
            }
        }
        step("apps, HAProxy front door, witnesses");
        for (site, on) in [("a", true), ("b", false)] {
            let d = w.dir.join(format!("app-{site}"));
            fs::create_dir(&d)?;
            let f = d.join("threatconnect.xml");
            fs::write(&f, threatconnect_xml(on, ""))?;
            w.apps.push((site, f));
        }
        w.start_haproxy().await?;
        w.write_witness_configs()?;
        let fp = w.settings.failpoints.clone();
        for site in SITES {
            let env: Vec<(String, String)> = fp
                .iter()
                .map(|f| ("PALISADE_FAILPOINTS".to_string(), f.clone()))
                .collect();
            w.start_witness_env(site, &env)?;
        }
        w.wait_ready("the world is ready").await?;
        Ok(w)
    }

    fn db(&self, site: &str) -> &Db {
        self.dbs
            .iter()
            .find(|d| d.site == site)
            .unwrap_or_else(|| panic!("site {site} has no database (a and b do)"))
    }

    async fn start_databases(&mut self) -> Result<()> {
        let site = |s: &str| -> Result<NetnsSite> {
            Ok(NetnsSite {
                name: format!("site_{s}"),
                netns: netns::ns(s),
                addr: netns::addr(s).parse().context("a site's address")?,
            })
        };
        let ns = Namespaces {
            primary: site("a")?,
            standby: site("b")?,
            port: PG_PORT,
            clients: "198.18.0.0/24".into(),
            parent_dir: self.dir.clone(),
            wal_timeout: WAL_TIMEOUT,
        };
        let pair = PgPair::start_in_namespaces(PgPairOptions::default(), ns).await?;
        pair.primary
            .exec("CREATE TABLE chaos_writes (id bigint PRIMARY KEY, via text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())")
            .await?;
        let db = |site: &'static str, s: &PgServer| Db {
            site,
            data_dir: s.data_dir().to_path_buf(),
            sock_dir: s.socket_dir().to_path_buf(),
            log: s.log_file().to_path_buf(),
        };
        self.dbs = vec![db("a", &pair.primary), db("b", &pair.standby)];
        self.pair = Some(pair);
        Ok(())
    }

    async fn start_maria(&mut self) -> Result<()> {
        let pair = crate::maria::MariaPair::start(&self.dir).await?;
        let db = |m: &crate::maria::Master| Db {
            site: m.site,
            data_dir: m.data_dir.clone(),
            sock_dir: m.socket.clone(),
            log: m.log_file.clone(),
        };
        self.dbs = vec![db(&pair.a), db(&pair.b)];
        self.maria = Some(pair);
        Ok(())
    }

    fn maria(&self) -> Result<&crate::maria::MariaPair> {
        self.maria
            .as_ref()
            .context("the world's MariaDB pair is not started")
    }

    /// The writers and the sampler of this world's engine.
    pub fn workload(&self) -> Result<crate::workload::Workload> {
        use crate::workload::Workload;
        Ok(match self.settings.engine {
            Engine::Postgres => Workload::start(
                self.db_sock("a"),
                self.db_sock("b"),
                self.haproxy_sock.clone(),
            ),
            Engine::MariaDb => {
                let pair = self.maria()?;
                Workload::start_maria(
                    crate::maria_workload::Local::of(&pair.a),
                    crate::maria_workload::Local::of(&pair.b),
                    self.haproxy_sock.clone(),
                )
            }
        })
    }

    /// The ids of the writers' rows stored on `site`'s database, read over
    /// its unix socket.
    pub async fn stored_ids(&self, site: &str) -> Result<Vec<i64>> {
        match self.settings.engine {
            Engine::Postgres => crate::workload::stored_ids(&self.db_sock(site)).await,
            Engine::MariaDb => crate::maria_workload::stored_ids(&self.db_sock(site)).await,
        }
    }

    /// The server of `site`'s database.
    fn server(&self, site: &str) -> Result<&PgServer> {
        let pair = self
            .pair
            .as_ref()
            .context("the world's databases are not started")?;
        match site {
            "a" => Ok(&pair.primary),
            "b" => Ok(&pair.standby),
            other => bail!("site {other} has no database (a and b do)"),
        }
    }

    async fn start_haproxy(&mut self) -> Result<()> {
        let bin = haproxy::find_binary()
            .context("haproxy is not installed; apt-get install -y haproxy")?;
        let addr = |site: &str| -> Result<SocketAddr> {
            let ip: Ipv4Addr = netns::addr(site).parse().context("a site's address")?;
            Ok(SocketAddr::from((ip, PG_PORT)))
        };
        let config = match self.settings.engine {
            Engine::Postgres => HaproxyConfig::new(
                self.haproxy_sock.clone(),
                addr("host")?,
                vec![("pg_a".into(), addr("a")?), ("pg_b".into(), addr("b")?)],
            ),
            // TCP mode, MySQL servers on 3306; routed, as PostgreSQL's, by
            // the runtime API's maintenance state (the backend keeps the
            // test kit's name).
            Engine::MariaDb => {
                let port = crate::maria::MARIA_PORT;
                let at = |site: &str| -> Result<SocketAddr> {
                    Ok(SocketAddr::new(addr(site)?.ip(), port))
                };
                HaproxyConfig::new(
                    self.haproxy_sock.clone(),
                    at("host")?,
                    vec![("maria_a".into(), at("a")?), ("maria_b".into(), at("b")?)],
                )
            }
        };
        self.haproxy = Some(Haproxy::start(&bin, &self.dir, &config).await?);
        // The standby's server goes to maintenance through the runtime API,
        // as an operator does (a `disabled` in the config could never be
        // cleared at runtime by HAProxy 2.6).
        let b = match self.settings.engine {
            Engine::Postgres => "pg_b",
            Engine::MariaDb => "maria_b",
        };
        self.haproxy_cmd(&format!("set server postgres/{b} state maint"))?;
        Ok(())
    }

    /// Sends one runtime API command to HAProxy and returns its answer.
    pub fn haproxy_cmd(&self, cmd: &str) -> Result<String> {
        let mut s = UnixStream::connect(&self.haproxy_sock)
            .with_context(|| format!("connecting to {}", self.haproxy_sock.display()))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(format!("{cmd}\n").as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)
            .with_context(|| format!("reading haproxy's answer to {cmd:?}"))?;
        Ok(out)
    }

    fn write_witness_configs(&mut self) -> Result<()> {
        let s = &self.settings;
        let databases = match s.engine {
            Engine::Postgres => palisade_testkit::cluster::database_sections(
                self.pair
                    .as_ref()
                    .context("the world's databases are not started")?,
                false,
            ),
            Engine::MariaDb => self.maria()?.database_sections(),
        };
        // Mutual TLS, as in production: a CA and every witness's and the
        // test operators' certificates, made once per world.
        let pki = palisade_testkit::pki::TestPki::create(
            &self.dir.join("tls"),
            "chaos",
            &[(1, "a"), (2, "b"), (3, "c")],
        )?;
        let mut common = format!(
            "[cluster]\nname = \"chaos\"\n\n[storage]\ndata_dir = \"{dir}/witness-{{site}}\"\n{tls}\n",
            dir = self.dir.display(),
            tls = pki.config_section(),
        );
        self.pki = Some(pki);
        match &s.profile {
            Some(profile) => {
                common.push_str(profile);
                common.push_str("\n\n");
            }
            None => common.push_str(&format!(
                "[probe]\ninterval_ms = {}\n\n[lease]\nttl_ms = {}\n\n[failover]\ndown_after_ms = {}\non_primary_crash = \"{}\"\nrestart_budget_ms = {}\nreplication = \"{}\"\nsync_degrade_after_ms = {SYNC_DEGRADE_AFTER_MS}\n\n",
                s.probe_interval_ms,
                s.lease_ttl_ms,
                s.down_after_ms,
                s.on_primary_crash,
                s.restart_budget_ms,
                s.replication,
            )),
        }
        common.push_str(&databases);
        common.push('\n');
        for (site, f) in &self.apps {
            common.push_str(&format!(
                "[[app]]\nsite = \"{site}\"\nconfig_file = \"{}\"\n\n",
                f.display()
            ));
        }
        let (a, b) = match s.engine {
            Engine::Postgres => ("pg_a", "pg_b"),
            Engine::MariaDb => ("maria_a", "maria_b"),
        };
        common.push_str(&format!(
            "[[front_door]]\nkind = \"haproxy\"\nruntime_api = \"{}\"\nbackend = \"postgres\"\nservers = {{ a = \"{a}\", b = \"{b}\" }}\n\n",
            self.haproxy_sock.display()
        ));
        for (i, site) in SITES.iter().enumerate() {
            common.push_str(&format!(
                "[[witness]]\nid = {}\nsite = \"{site}\"\nraft_addr = \"{a}:7301\"\ncontrol_addr = \"{a}:7401\"\n\n",
                i + 1,
                a = netns::addr(site)
            ));
        }
        for (i, site) in SITES.iter().enumerate() {
            let config = self.dir.join(format!("site-{site}.toml"));
            fs::write(&config, format!("node_id = {}\n\n{common}", i + 1))?;
            self.witnesses.push(Witness {
                site,
                id: i as u64 + 1,
                config,
                log: self.dir.join(format!("witness-{site}.log")),
                child: None,
            });
        }
        Ok(())
    }

    fn witness(&mut self, site: &str) -> &mut Witness {
        self.witnesses
            .iter_mut()
            .find(|w| w.site == site)
            .unwrap_or_else(|| panic!("no witness at site {site:?}"))
    }

    /// Starts `site`'s witness with extra environment (failpoints).
    pub fn start_witness_env(&mut self, site: &str, env: &[(String, String)]) -> Result<()> {
        let bin = self.palisade.clone();
        let w = self.witness(site);
        if let Some(c) = &mut w.child {
            if c.try_wait()?.is_none() {
                bail!("witness {site} is already running");
            }
        }
        let mut env = env.to_vec();
        env.push(("RUST_LOG".into(), "info,openraft=warn".into()));
        let config = w.config.display().to_string();
        w.child = Some(procs::spawn_in(
            site,
            &bin,
            &["run", "--config", &config],
            &env,
            &w.log,
        )?);
        Ok(())
    }

    /// Starts `site`'s witness again (same config, no failpoints).
    pub fn start_witness(&mut self, site: &str) -> Result<i64> {
        self.start_witness_env(site, &[])?;
        Ok(self.log.record(format!("start witness {site}")))
    }

    /// The PID of `site`'s witness, if it runs.
    pub fn witness_pid(&mut self, site: &str) -> Option<i32> {
        let w = self.witness(site);
        let c = w.child.as_mut()?;
        match c.try_wait() {
            Ok(None) => Some(c.id() as i32),
            _ => None,
        }
    }

    /// Sends `sig` to `site`'s witness (logged); a SIGKILL also reaps it.
    pub fn signal_witness(&mut self, site: &str, sig: Signal) -> Result<i64> {
        let pid = self
            .witness_pid(site)
            .with_context(|| format!("witness {site} is not running, cannot send {sig}"))?;
        procs::signal(pid, sig);
        let at = self.log.record(format!("{sig} witness {site} (pid {pid})"));
        if sig == Signal::SIGKILL || sig == Signal::SIGTERM {
            let w = self.witness(site);
            if let Some(mut c) = w.child.take() {
                let _ = c.wait();
            }
        }
        Ok(at)
    }

    /// Waits for `site`'s witness to exit on its own; returns its code.
    pub async fn wait_witness_exit(
        &mut self,
        site: &str,
        timeout: Duration,
    ) -> Result<Option<i32>> {
        let w = self.witness(site);
        let what = format!("witness {site} to exit");
        wait_for(&what, timeout, async || {
            let Some(c) = w.child.as_mut() else {
                return Attempt::GiveUp(anyhow!("witness {site} not running"));
            };
            match c.try_wait() {
                Ok(Some(st)) => {
                    w.child = None;
                    Attempt::Ready(st.code())
                }
                Ok(None) => Attempt::NotYet(String::new()),
                Err(e) => Attempt::GiveUp(e.into()),
            }
        })
        .await
    }

    /// Which witness exited on its own (a failpoint), if any.
    pub fn exited_witness(&mut self) -> Option<(&'static str, Option<i32>)> {
        for w in &mut self.witnesses {
            if let Some(c) = &mut w.child {
                if let Ok(Some(st)) = c.try_wait() {
                    w.child = None;
                    return Some((w.site, st.code()));
                }
            }
        }
        None
    }

    /// Sends `sig` to every process of `site`'s database server (logged);
    /// returns the PIDs, so a freeze can be thawed exactly.
    pub fn signal_db(&mut self, site: &str, sig: Signal) -> Result<Vec<i32>> {
        if self.settings.engine == Engine::MariaDb {
            let m = self
                .maria
                .as_mut()
                .context("the world's MariaDB pair is not started")?
                .master_mut(site)?;
            let pid = m
                .signal(sig)
                .with_context(|| format!("database {site} is not running, cannot send {sig}"))?;
            self.log
                .record(format!("{sig} database {site} (mariadbd {pid})"));
            return Ok(vec![pid]);
        }
        let pids = procs::server_processes(&self.db(site).data_dir);
        if pids.is_empty() {
            bail!("database {site} is not running, cannot send {sig}");
        }
        for p in &pids {
            procs::signal(*p, sig);
        }
        self.log.record(format!(
            "{sig} database {site} (postmaster {} + {} children)",
            pids[0],
            pids.len() - 1
        ));
        Ok(pids)
    }

    /// Thaws processes frozen by [`World::signal_db`] (logged).
    pub fn thaw(&mut self, what: &str, pids: &[i32]) {
        for p in pids {
            procs::signal(*p, Signal::SIGCONT);
        }
        self.log.record(format!("SIGCONT {what}"));
    }

    /// Starts `site`'s database with `pg_ctl` inside its namespace, as the
    /// host's service manager would restart a crashed server (the site
    /// agent restarts only a primary; a standby is the OS's to restart).
    pub fn start_db(&mut self, site: &str) -> Result<i64> {
        if self.settings.engine == Engine::MariaDb {
            bail!("starting MariaDB {site} by hand is not supported: its site agent starts it (crash restart, rejoin)");
        }
        let server = self.server(site)?;
        // The backends of a killed postmaster take a moment to notice and
        // exit, and PID 1 here reaps slowly; until then pg_ctl refuses
        // ("another server might be running"). Retry a few times.
        let mut tries = 0;
        while let Err(e) = server.start() {
            tries += 1;
            if tries >= 5 {
                return Err(e);
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        Ok(self.log.record(format!(
            "start database {site} (pg_ctl, as a service manager would)"
        )))
    }

    /// Whether `site`'s database has a live postmaster.
    pub fn db_running(&self, site: &str) -> bool {
        if self.settings.engine == Engine::MariaDb {
            return self
                .maria()
                .and_then(|p| p.master(site))
                .is_ok_and(|m| m.pid().is_some());
        }
        procs::postmaster(&self.db(site).data_dir).is_some()
    }

    /// Unix socket directory of `site`'s database.
    pub fn db_sock(&self, site: &str) -> PathBuf {
        self.db(site).sock_dir.clone()
    }

    /// The network (cuts and heals).
    pub fn net(&mut self) -> &mut Net {
        self.net
            .as_mut()
            .expect("the world's network exists once started")
    }

    /// `palisadectl status --output json` asked of `site`'s witness from
    /// inside its own namespace (so a cut between the host and the site does
    /// not hide the answer); `None` if it did not answer.
    pub async fn status(&self, site: &str) -> Option<Value> {
        let out = tokio::time::timeout(
            Duration::from_secs(6),
            tokio::process::Command::new("ip")
                .args(["netns", "exec", &netns::ns(site)])
                .arg(&self.palisadectl)
                .envs(
                    self.pki
                        .as_ref()
                        .map(|p| p.ctl_env(palisade_testkit::pki::VIEWER))
                        .unwrap_or_default(),
                )
                .args([
                    "--endpoint",
                    &format!("https://{}:7401", netns::addr(site)),
                    "status",
                    "--output",
                    "json",
                ])
                .kill_on_drop(true)
                .output(),
        )
        .await
        .ok()?
        .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Status of every running witness's own view, by site.
    pub async fn statuses(&mut self) -> Vec<(&'static str, Option<Value>)> {
        let mut out = Vec::new();
        for site in SITES {
            let v = if self.witness_pid(site).is_some() {
                self.status(site).await
            } else {
                None
            };
            out.push((site, v));
        }
        out
    }

    /// Waits until every witness answers with the same known leader and
    /// term, no failover is in progress, every witness has applied the same
    /// log index, the detector is healthy (or blocked on the standby's
    /// rejoin after a failover), and, without a failover, the standby
    /// streams again with the configured replication mode in force.
    pub async fn wait_ready(&mut self, what: &str) -> Result<Value> {
        // Each look runs `palisadectl` in three namespaces: at most four
        // looks a second, so the harness does not load the machine whose
        // outages the checker measures.
        let patience = Patience::new(SETTLE).pause_up_to(Duration::from_millis(250));
        wait_for(what, patience, async || self.ready_once().await).await
    }

    async fn ready_once(&mut self) -> Result<Value> {
        let all = self.statuses().await;
        let mut seen: Option<(u64, u64)> = None;
        let mut applied = Vec::new();
        let mut any = None;
        for (site, s) in &all {
            let s = s
                .as_ref()
                .with_context(|| format!("witness {site} does not answer"))?;
            let view = (
                s["leader_id"]
                    .as_u64()
                    .with_context(|| format!("witness {site} knows no leader"))?,
                s["term"].as_u64().unwrap_or(0),
            );
            if seen.is_some_and(|v| v != view) {
                bail!("witnesses disagree on (leader, term): {seen:?} vs {view:?} at {site}");
            }
            seen = Some(view);
            if !s["failover_in_progress"].is_null() {
                bail!("a failover is in progress");
            }
            let me = s["nodes"]
                .as_array()
                .and_then(|n| n.iter().find(|n| n["site"] == *site))
                .and_then(|n| n["last_applied_index"].as_u64());
            applied.push((site, me));
            any = Some(s.clone());
        }
        if applied.windows(2).any(|w| w[0].1 != w[1].1) {
            bail!("witnesses have applied different log indexes: {applied:?}");
        }
        let s = any.context("no witness")?;
        let assessment = s["assessment"].as_str().unwrap_or("");
        let failed_over = s["epoch"].as_u64().unwrap_or(0) > 0;
        if !failed_over {
            if !assessment.starts_with("healthy") {
                bail!("detector: {assessment}");
            }
            if s["primary_site"] != "a" {
                bail!("primary is {} without a failover", s["primary_site"]);
            }
            let streaming = s["nodes"].as_array().is_some_and(|ns| {
                ns.iter().all(|n| {
                    n["databases"].as_array().is_some_and(|d| {
                        d.iter().any(|d| d["site"] == "b" && d["streaming"] == true)
                    })
                })
            });
            if !streaming {
                bail!("not every witness sees the standby streaming");
            }
            // MariaDB's agent reports what is in force: `semi-sync (…)`
            // for `sync`.
            let mode = s["replication_mode"].as_str().unwrap_or("");
            let in_force = match (self.settings.engine, self.settings.replication) {
                (Engine::MariaDb, "sync") => mode.starts_with("semi-sync"),
                (_, configured) => mode == configured,
            };
            if !in_force {
                bail!("replication in force: {}", s["replication_mode"]);
            }
        } else if !(assessment.starts_with("healthy") || assessment.starts_with("blocked")) {
            bail!("detector after the failover: {assessment}");
        }
        // Each site's agent keeps its own app's monitorsEnabled equal to
        // the cluster's intent; one that was unreachable during the flip
        // does it when it is back. Settled means every app was read back.
        let primary = s["primary_site"].as_str().unwrap_or("");
        let on: Vec<&str> = self
            .apps
            .iter()
            .map(|(site, _)| *site)
            .filter(|site| s["monitors_enabled"][site] == true)
            .collect();
        let reported = self
            .apps
            .iter()
            .all(|(site, _)| s["monitors_enabled"][site].is_boolean());
        if !reported || on != [primary] {
            bail!(
                "the apps' monitorsEnabled as the witnesses read them back: {} (primary {primary})",
                s["monitors_enabled"]
            );
        }
        Ok(s)
    }

    /// Tears the world down now (also what dropping it does).
    pub fn teardown(&mut self) {
        if let Some(dest) = &self.keep_logs_in {
            let _ = fs::create_dir_all(dest);
            for (f, name) in ["faults.log", "haproxy.log", "site-a.toml"]
                .iter()
                .map(|f| (self.dir.join(f), f.to_string()))
                .chain(self.witnesses.iter().filter_map(|w| {
                    let name = w.log.file_name()?.to_string_lossy().into_owned();
                    Some((w.log.clone(), name))
                }))
                .chain(
                    self.dbs
                        .iter()
                        .map(|d| (d.log.clone(), format!("db-{}-server.log", d.site))),
                )
            {
                let _ = fs::copy(&f, dest.join(name));
            }
            eprintln!("chaos: logs of the failed run kept in {}", dest.display());
        }
        for w in &mut self.witnesses {
            if let Some(mut c) = w.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // Every run's palisade logs, failed or not, for CI's secret grep
        // (`.ci/check-secrets`). PostgreSQL's own server logs are not ours
        // to vouch for and stay out.
        palisade_testkit::logs::keep(
            &palisade_testkit::logs::run_dir("chaos"),
            ["faults.log", "haproxy.log"]
                .iter()
                .map(|f| (self.dir.join(f), f.to_string()))
                .chain(self.witnesses.iter().filter_map(|w| {
                    let name = w.log.file_name()?.to_string_lossy().into_owned();
                    Some((w.log.clone(), name))
                })),
        );
        // Dropping them kills HAProxy and stops both servers.
        self.haproxy = None;
        self.pair = None;
        self.maria = None;
        for p in netns::cleanup_all() {
            eprintln!("chaos: cleanup: {p}");
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.teardown();
    }
}
