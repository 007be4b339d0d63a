//! The demo's three witnesses: their configs (`deploy/local/site-*.toml`
//! plus the pair's `[[database]]` sections), their processes (the
//! `palisade` binary beside this one), and the control API they answer on.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use palisade::config::Config;
use palisade::lease_guard::GuardHandle;
use palisade_api::v1::control_client::ControlClient;
use palisade_api::v1::{StatusReply, StatusRequest};
use palisade_core::NodeId;
use palisade_testkit::bins::build_command;
use palisade_testkit::{wait_for, Attempt};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

use crate::report::Progress;

/// The shipped local configs; the demo runs exactly these.
const SITES: [(&str, &str); 3] = [
    ("a", include_str!("../../../deploy/local/site-a.toml")),
    ("b", include_str!("../../../deploy/local/site-b.toml")),
    ("c", include_str!("../../../deploy/local/site-c.toml")),
];
/// The shipped `storage.data_dir`, replaced by one inside the work dir.
const SHIPPED_DATA_DIR: &str = "data_dir = \"../../.palisade-local/{site}\"";
/// How long a witness may take to exit on SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The three witness configs as shipped, parsed for their addresses.
pub struct Configs {
    /// `(site, shipped text)` for a, b, c.
    texts: Vec<(&'static str, String)>,
    /// Every witness: id, site, raft and control address (the same in all three files).
    witnesses: Vec<(NodeId, String, String, String)>,
}

impl Configs {
    /// The configs of `deploy/local/`, validated.
    pub fn local() -> anyhow::Result<Configs> {
        let mut texts = Vec::new();
        for (site, text) in SITES {
            if !text.contains(SHIPPED_DATA_DIR) {
                bail!("deploy/local/site-{site}.toml no longer holds `{SHIPPED_DATA_DIR}`, which the demo replaces");
            }
            texts.push((
                site,
                text.replace(SHIPPED_DATA_DIR, "data_dir = \"data/{site}\""),
            ));
        }
        let first = Config::parse(Path::new("deploy/local/site-a.toml"), &texts[0].1)
            .context("the embedded deploy/local/site-a.toml is invalid")?;
        let witnesses = first
            .topology
            .witnesses
            .iter()
            .map(|(id, w)| {
                (
                    *id,
                    w.site.clone(),
                    w.raft_addr.clone(),
                    w.control_addr.clone(),
                )
            })
            .collect();
        Ok(Configs { texts, witnesses })
    }

    /// Fails, naming the port, when another process (another demo, or the
    /// local cluster started by hand) holds one of the witnesses' ports.
    pub fn check_ports_free(&self) -> anyhow::Result<()> {
        for (_, site, raft, control) in &self.witnesses {
            for addr in [raft, control, &http_addr(control)] {
                TcpListener::bind(addr.as_str()).with_context(|| {
                    format!("witness {site}'s address {addr} is in use: is another palisade demo, or the local cluster of deploy/local/, running?")
                })?;
            }
        }
        Ok(())
    }

    /// The raft ports, as `7301-7303`-style text for progress lines.
    pub fn raft_ports(&self) -> String {
        ports(self.witnesses.iter().map(|w| w.2.as_str()))
    }

    /// The control ports, as text.
    pub fn control_ports(&self) -> String {
        ports(self.witnesses.iter().map(|w| w.3.as_str()))
    }
}

/// The demo's `[http] listen` address of the witness whose control address
/// is `control`: the same host, the port plus 100 (7401 → 7501).
fn http_addr(control: &str) -> String {
    match control.rsplit_once(':') {
        Some((host, port)) => match port.parse::<u16>() {
            Ok(p) => format!("{host}:{}", p.saturating_add(100)),
            Err(_) => control.to_string(),
        },
        None => control.to_string(),
    }
}

fn ports<'a>(addrs: impl Iterator<Item = &'a str>) -> String {
    addrs
        .filter_map(|a| a.rsplit_once(':').map(|(_, p)| p))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One witness process.
struct Witness {
    id: NodeId,
    site: &'static str,
    /// The shipped config text (data under the work directory), to which
    /// [`Cluster::write_configs`] appends the demo's sections.
    shipped: String,
    config: PathBuf,
    log: PathBuf,
    /// Its control address, `HOST:PORT`.
    control: String,
    /// Its control API client (a lazily connecting channel, reused).
    client: ControlClient<Channel>,
    /// `None` while stopped (never started, or killed on purpose).
    child: Option<Child>,
}

/// The three witnesses and their work directory (configs, Raft data, logs,
/// and whatever else the demo keeps there: the apps' files, HAProxy's).
pub struct Cluster {
    dir: tempfile::TempDir,
    witnesses: Vec<Witness>,
    /// The demo cluster's CA and certificates (`<dir>/tls`, where the
    /// shipped configs' default `tls.dir` points): mutual TLS on, as in
    /// production.
    pki: palisade_testkit::pki::TestPki,
    /// Set once [`Cluster::write_configs`] has written every config.
    configured: bool,
}

impl Cluster {
    /// Creates the work directory and the witnesses' handles (their
    /// addresses come from the shipped configs). Nothing is written yet:
    /// the demo first sets up what the extra sections name, then calls
    /// [`Cluster::write_configs`].
    pub fn create(configs: &Configs) -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("palisade-demo-")
            .tempdir()
            .context("creating the demo's work directory")?;
        let mut parsed_all = Vec::new();
        for (site, text) in &configs.texts {
            let config = dir.path().join(format!("site-{site}.toml"));
            let parsed = Config::parse(&config, text)
                .with_context(|| format!("the shipped config for site {site} is invalid"))?;
            parsed_all.push((*site, text, config, parsed));
        }
        let cluster_name = parsed_all
            .first()
            .map(|(_, _, _, p)| p.cluster_name.clone())
            .context("no shipped configs")?;
        let members: Vec<(u64, &str)> = parsed_all
            .iter()
            .map(|(_, _, _, p)| (p.topology.own_id, p.topology.own().site.as_str()))
            .collect();
        let pki = palisade_testkit::pki::TestPki::create(
            &dir.path().join(palisade::config::TLS_DEFAULT_DIR),
            &cluster_name,
            &members,
        )
        .context("making the demo cluster's certificates")?;
        let mut witnesses = Vec::new();
        for (site, text, config, parsed) in parsed_all {
            let control = &parsed.topology.own().control_addr;
            let channel = pki
                .control_channel_lazy(
                    palisade_testkit::pki::OPERATOR,
                    control,
                    Duration::from_millis(500),
                    Duration::from_secs(3),
                )
                .with_context(|| format!("witness {site}'s control address {control}"))?;
            witnesses.push(Witness {
                id: parsed.topology.own_id,
                site,
                shipped: text.clone(),
                log: dir.path().join(format!("site-{site}.log")),
                control: control.clone(),
                config,
                client: ControlClient::new(channel),
                child: None,
            });
        }
        Ok(Cluster {
            dir,
            witnesses,
            pki,
            configured: false,
        })
    }

    /// Writes each witness's config: the shipped one plus `extra` (the
    /// `[failover]`, `[[database]]`, `[[app]]`, `[[elasticsearch]]`,
    /// `[[front_door]]` and `[[check]]` sections), and an `[http]` listener
    /// ([`Cluster::console_of`]). Validates each first.
    pub fn write_configs(&mut self, extra: &str) -> anyhow::Result<()> {
        for w in &self.witnesses {
            let text = format!(
                "{}\n# Added by `palisade demo`: the local PostgreSQL pair and the rest of each site's stack.\n{extra}\n[http]\nlisten = \"{}\"\n",
                w.shipped,
                http_addr(&w.control)
            );
            Config::parse(&w.config, &text)
                .with_context(|| format!("the demo's config for site {} is invalid", w.site))?;
            std::fs::write(&w.config, &text)
                .with_context(|| format!("writing {}", w.config.display()))?;
        }
        self.configured = true;
        Ok(())
    }

    /// The work directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The node id of `site`'s witness.
    pub fn id_of(&self, site: &str) -> NodeId {
        self.witnesses
            .iter()
            .find(|w| w.site == site)
            .map(|w| w.id)
            .unwrap_or_default()
    }

    /// `site`'s witness's status console (its `[http]` listener: the
    /// control port plus 100), `http://HOST:PORT/`.
    pub fn console_of(&self, site: &str) -> Option<String> {
        self.witnesses
            .iter()
            .find(|w| w.site == site)
            .map(|w| format!("http://{}/", http_addr(&w.control)))
    }

    /// `site`'s witness's control endpoint, `https://HOST:PORT`, as
    /// `palisadectl --endpoint` takes it.
    pub fn endpoint_of(&self, site: &str) -> Option<String> {
        self.witnesses
            .iter()
            .find(|w| w.site == site)
            .map(|w| format!("https://{}", w.control))
    }

    /// The demo cluster's certificates.
    pub fn pki(&self) -> &palisade_testkit::pki::TestPki {
        &self.pki
    }

    fn witness(&mut self, site: &str) -> anyhow::Result<&mut Witness> {
        self.witnesses
            .iter_mut()
            .find(|w| w.site == site)
            .with_context(|| format!("no witness at site {site}"))
    }

    /// Starts every witness.
    pub fn start_all(&mut self) -> anyhow::Result<()> {
        for site in ["a", "b", "c"] {
            self.start(site)?;
        }
        Ok(())
    }

    /// Starts (or restarts) `site`'s witness: the `palisade` binary beside
    /// this one ([`witness_binary`]), `run --config`, stderr appended to its
    /// log, in its own process group so that a terminal's Ctrl-C reaches
    /// only the demo, which stops it in order.
    pub fn start(&mut self, site: &str) -> anyhow::Result<()> {
        if !self.configured {
            bail!("the witnesses' configs are not written yet");
        }
        let exe = witness_binary()?;
        let w = self.witness(site)?;
        if w.child.is_some() {
            bail!("witness {site} is already running");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&w.log)
            .with_context(|| format!("opening {}", w.log.display()))?;
        let child = Command::new(exe)
            .arg("run")
            .arg("--config")
            .arg(&w.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting witness {site}"))?;
        w.child = Some(child);
        Ok(())
    }

    /// Sends SIGKILL to `site`'s witness; [`Cluster::reap`] waits for it.
    pub fn send_kill(&mut self, site: &str) -> anyhow::Result<()> {
        let w = self.witness(site)?;
        if let Some(child) = w.child.as_mut() {
            child
                .start_kill()
                .with_context(|| format!("SIGKILL to witness {site}"))?;
        }
        Ok(())
    }

    /// Waits for a killed witness to exit and forgets it.
    pub async fn reap(&mut self, site: &str) {
        if let Ok(w) = self.witness(site) {
            if let Some(mut child) = w.child.take() {
                let _ = child.wait().await;
            }
        }
    }

    /// Fails with the witness's log tail when a running witness exited on
    /// its own.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for w in &mut self.witnesses {
            if let Some(child) = w.child.as_mut() {
                if let Some(code) = child
                    .try_wait()
                    .with_context(|| format!("checking witness {}", w.site))?
                {
                    w.child = None;
                    bail!(
                        "witness {} exited on its own ({code}); its log ends with:\n{}",
                        w.site,
                        tail(&w.log, 15)
                    );
                }
            }
        }
        Ok(())
    }

    /// The status from the first running witness that answers with a known
    /// leader (any witness answers for the whole cluster).
    pub async fn status(&self) -> Option<StatusReply> {
        for w in self.witnesses.iter().filter(|w| w.child.is_some()) {
            let mut client = w.client.clone();
            if let Ok(reply) = client.status(StatusRequest {}).await {
                let reply = reply.into_inner();
                if reply.leader_id.is_some() {
                    return Some(reply);
                }
            }
        }
        None
    }

    /// Polls the status until `accept` returns a value; fails naming
    /// `what` after `timeout`, or at once when a witness exits on its own.
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut accept: impl FnMut(&StatusReply) -> Option<T>,
    ) -> anyhow::Result<T> {
        self.watch(what, timeout, |s| match s {
            Some(s) => match accept(s) {
                Some(v) => Attempt::Ready(v),
                None => Attempt::NotYet(format!(
                    "leader {:?}, epoch {}, primary {:?}, detector {:?}",
                    s.leader_id, s.epoch, s.primary_site, s.assessment
                )),
            },
            None => Attempt::NotYet("no witness answered with a leader".into()),
        })
        .await
    }

    /// Polls the status (`None`: no witness answered with a leader) until
    /// `look` is done with it; fails naming `what` after `timeout`, at once
    /// when `look` gives up, and at once when a witness exits on its own.
    pub async fn watch<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut look: impl FnMut(Option<&StatusReply>) -> Attempt<T>,
    ) -> anyhow::Result<T> {
        wait_for(what, timeout, async || {
            let s = self.status().await;
            match look(s.as_ref()) {
                Attempt::NotYet(last) => match self.check_alive() {
                    Ok(()) => Attempt::NotYet(last),
                    Err(e) => Attempt::GiveUp(e),
                },
                done => done,
            }
        })
        .await
    }

    /// Prints the end of every witness's log to stderr (on failure, before
    /// the work directory goes away).
    pub fn print_log_tails(&self) {
        for w in &self.witnesses {
            eprintln!(
                "===== end of witness {}'s log ({}) =====\n{}",
                w.site,
                w.log.display(),
                tail(&w.log, 20)
            );
        }
    }

    /// SIGTERM to every running witness, SIGKILL to any still running after
    /// [`STOP_GRACE`]; then removes the work directory.
    pub async fn shut_down(mut self, p: &Progress) {
        for w in &self.witnesses {
            if let Some(pid) = w.child.as_ref().and_then(|c| c.id()) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
        }
        for w in &mut self.witnesses {
            let Some(mut child) = w.child.take() else {
                continue;
            };
            if tokio::time::timeout(STOP_GRACE, child.wait())
                .await
                .is_err()
            {
                p.detail(format!(
                    "witness {} ignored SIGTERM for {STOP_GRACE:?}; killing it",
                    w.site
                ));
                let _ = child.kill().await;
            }
        }
        // The lease guards outlive their witnesses on purpose (they keep
        // enforcing a lease while a witness is away); the demo is over, so
        // stop them before their files go.
        for w in &self.witnesses {
            let order = self
                .dir
                .path()
                .join("data")
                .join(w.site)
                .join("lease-guard.order");
            if !order.exists() {
                continue;
            }
            let guard = GuardHandle::new(order, "", "", "");
            match tokio::task::spawn_blocking(move || guard.stop(STOP_GRACE)).await {
                Ok(Ok(true)) => p.detail(format!("stopped the lease guard of site {}", w.site)),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => p.detail(format!("lease guard of site {}: {e}", w.site)),
                Err(e) => p.detail(format!("stopping the lease guard of site {}: {e}", w.site)),
            }
        }
        let path = self.dir.path().to_path_buf();
        match self.dir.close() {
            Ok(()) => p.detail(format!("removed {}", path.display())),
            Err(e) => p.detail(format!("could not remove {}: {e}", path.display())),
        }
    }
}

/// The witness binary, `palisade`, from the directory of this one (cargo
/// builds both into `target/<profile>/`; an install puts them side by
/// side). Fails naming the path, and how to build it, when it is missing.
pub fn witness_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the palisade-demo binary")?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("{} has no directory", exe.display()))?;
    let witness = dir.join("palisade");
    if !witness.is_file() {
        bail!(
            "the witness binary {} is missing: the demo runs the `palisade` beside it; build both with `{}`",
            witness.display(),
            build_command(dir, &["palisade", "palisade-demo"])
        );
    }
    Ok(witness)
}

/// The last `lines` lines of a log file (empty when unreadable).
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
