//! `palisade demo`: the quickstart. Starts the three witnesses of
//! `deploy/local/` (embedded in the binary) as child processes with their
//! data in a temporary directory, waits until they agree on a leader, shows
//! the cluster, and stops them (SIGTERM) and removes the directory on
//! Ctrl-C, or at once with `--output json`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use palisade_api::v1::control_client::ControlClient;
use palisade_api::v1::{Role, StatusReply, StatusRequest};
use serde::Serialize;
use tokio::process::{Child, Command};

/// The shipped local configs; the demo runs exactly these.
const SITES: [(&str, &str); 3] = [
    ("a", include_str!("../../../deploy/local/site-a.toml")),
    ("b", include_str!("../../../deploy/local/site-b.toml")),
    ("c", include_str!("../../../deploy/local/site-c.toml")),
];
const CONTROL: &str = "http://127.0.0.1:7401";
const LEADER_DEADLINE: Duration = Duration::from_secs(30);

struct Witness {
    site: &'static str,
    log: PathBuf,
    child: Child,
}

/// The demo's JSON summary.
#[derive(Serialize)]
struct Summary {
    cluster_name: String,
    leader_id: Option<u64>,
    term: u64,
    seconds_to_leader: f64,
    nodes: Vec<NodeSummary>,
}

#[derive(Serialize)]
struct NodeSummary {
    id: u64,
    site: String,
    role: String,
    control_addr: String,
}

fn role_name(role: i32) -> String {
    Role::try_from(role)
        .map(|r| r.as_str_name().trim_start_matches("ROLE_").to_lowercase())
        .unwrap_or_else(|_| "unknown".into())
}

/// Runs the demo. `json`: no interaction, a JSON summary on stdout.
pub async fn run(json: bool) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the palisade binary")?;
    let dir = tempfile::Builder::new()
        .prefix("palisade-demo-")
        .tempdir()
        .context("creating a temporary directory")?;
    let say = |s: String| {
        if !json {
            println!("{s}");
        }
    };
    say(format!(
        "--- starting witnesses for sites a, b, c (data and logs in {})",
        dir.path().display()
    ));
    let mut witnesses = Vec::new();
    for (site, text) in SITES {
        let config = dir.path().join(format!("site-{site}.toml"));
        let text = text.replace(
            "data_dir = \"../../.palisade-local/{site}\"",
            "data_dir = \"data/{site}\"",
        );
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        let log = dir.path().join(format!("site-{site}.log"));
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(&exe)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the witness of site {site}"))?;
        witnesses.push(Witness { site, log, child });
    }

    let started = Instant::now();
    let result = wait_for_leader(&mut witnesses).await;
    let outcome = match result {
        Ok(status) => {
            let summary = summarize(&status, started.elapsed());
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print_table(&summary);
                println!();
                println!("The cluster is running. In another terminal:");
                println!(
                    "  palisadectl status                 # or: cargo run -p palisadectl -- status"
                );
                println!("  palisadectl --endpoint http://127.0.0.1:7402 status --output json");
                println!("Press Ctrl-C to stop it.");
                tokio::signal::ctrl_c()
                    .await
                    .context("waiting for Ctrl-C")?;
                println!();
            }
            Ok(())
        }
        Err(e) => Err(e),
    };
    say("--- stopping the witnesses".into());
    stop(&mut witnesses).await;
    outcome
}

async fn wait_for_leader(witnesses: &mut [Witness]) -> anyhow::Result<StatusReply> {
    let deadline = Instant::now() + LEADER_DEADLINE;
    let mut last;
    loop {
        for w in witnesses.iter_mut() {
            if let Some(code) = w.child.try_wait().context("checking a witness")? {
                bail!(
                    "the witness of site {} exited ({code}); its log:\n{}",
                    w.site,
                    tail(&w.log)
                );
            }
        }
        match status_once().await {
            Ok(s) => {
                let agreed = s.leader_id.is_some()
                    && s.nodes.len() == 3
                    && s.nodes
                        .iter()
                        .all(|n| n.leader_id == s.leader_id && n.role != Role::Unreachable as i32);
                if agreed {
                    return Ok(s);
                }
                last = format!(
                    "leader {:?}, {} witnesses answering",
                    s.leader_id,
                    s.nodes
                        .iter()
                        .filter(|n| n.role != Role::Unreachable as i32)
                        .count()
                );
            }
            Err(e) => last = e.to_string(),
        }
        if Instant::now() > deadline {
            bail!(
                "no leader agreed by all three witnesses within {LEADER_DEADLINE:?} (last: {last})"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status_once() -> anyhow::Result<StatusReply> {
    let channel = tonic::transport::Endpoint::from_static(CONTROL)
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await?;
    Ok(ControlClient::new(channel)
        .status(StatusRequest {})
        .await?
        .into_inner())
}

fn summarize(s: &StatusReply, took: Duration) -> Summary {
    Summary {
        cluster_name: s.cluster_name.clone(),
        leader_id: s.leader_id,
        term: s.term,
        seconds_to_leader: (took.as_secs_f64() * 1000.0).round() / 1000.0,
        nodes: s
            .nodes
            .iter()
            .map(|n| NodeSummary {
                id: n.id,
                site: n.site.clone(),
                role: role_name(n.role),
                control_addr: n.control_addr.clone(),
            })
            .collect(),
    }
}

fn print_table(s: &Summary) {
    println!(
        "--- cluster {}: leader {} elected in term {} ({:.2} s after start)",
        s.cluster_name,
        s.leader_id
            .map(|l| l.to_string())
            .unwrap_or_else(|| "unknown".into()),
        s.term,
        s.seconds_to_leader
    );
    println!("{:<4} {:<5} {:<10} CONTROL", "ID", "SITE", "ROLE");
    for n in &s.nodes {
        println!(
            "{:<4} {:<5} {:<10} http://{}",
            n.id, n.site, n.role, n.control_addr
        );
    }
}

/// SIGTERM every witness, wait for it to exit, SIGKILL what does not.
async fn stop(witnesses: &mut [Witness]) {
    for w in witnesses.iter() {
        if let Some(pid) = w.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
    for w in witnesses.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(10), w.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!(
                    "palisade demo: witness of site {} ignored SIGTERM for 10 s; killing it",
                    w.site
                );
                let _ = w.child.kill().await;
            }
        }
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
