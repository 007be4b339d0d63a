//! Processes inside a site's namespace, and signals to them.
//!
//! `ip netns exec NS PROG` enters the namespace and execs PROG without a
//! fork, so the child's PID is the program's own: signals reach it directly.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::netns;

/// Starts `prog ARGS` inside `site`'s namespace, stdout and stderr appended
/// to `log`.
pub fn spawn_in(
    site: &str,
    prog: &Path,
    args: &[&str],
    env: &[(String, String)],
    log: &Path,
) -> Result<Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone().context("cloning the log handle")?;
    Command::new("ip")
        .args(["netns", "exec", &netns::ns(site)])
        .arg(prog)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {} in site {site}", prog.display()))
}

/// Sends `sig` to `pid` if it is alive; returns whether it was.
pub fn signal(pid: i32, sig: Signal) -> bool {
    palisade_testkit::procs::alive(pid) && kill(Pid::from_raw(pid), sig).is_ok()
}

/// The running postmaster of the cluster in `data_dir`: the PID in
/// `postmaster.pid`, if that process is alive and names `data_dir` on its
/// command line (a PID the kernel reused is never signalled).
pub fn postmaster(data_dir: &Path) -> Option<i32> {
    palisade_testkit::procs::postmaster(data_dir).map(|p| p.pid)
}

/// The postmaster and all its children, for freezing or killing a whole
/// server at once (as a VM pause or a host crash would).
pub fn server_processes(data_dir: &Path) -> Vec<i32> {
    let procs = palisade_testkit::procs::server_processes(data_dir);
    procs.into_iter().map(|p| p.pid).collect()
}

/// `pid` and every process descended from it (from `/proc/*/stat`'s
/// parent PIDs), parents before children: what a pause of the whole host
/// would stop (a witness and the lease guard it started, say).
pub fn tree(pid: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // Fields after the command (which may hold spaces): state, ppid.
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
                .and_then(|f| f.parse::<i32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((p, ppid));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out
}
