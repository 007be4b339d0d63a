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
    netns::alive(pid) && kill(Pid::from_raw(pid), sig).is_ok()
}

/// The live direct children of `parent` (a postmaster's backends).
pub fn children_of(parent: i32) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 1..];
                    let mut f = rest.split_whitespace();
                    let state = f.next()?;
                    let ppid: i32 = f.next()?.parse().ok()?;
                    Some(ppid == parent && state != "Z")
                })
                .unwrap_or(false)
        })
        .collect()
}

/// The running postmaster of the cluster in `data_dir`: the PID in
/// `postmaster.pid`, if that process is alive and names `data_dir` on its
/// command line (a PID the kernel reused is never signalled).
pub fn postmaster(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    if !netns::alive(pid) {
        return None;
    }
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let d = data_dir.to_string_lossy();
    cmd.split(|b| *b == 0)
        .any(|a| String::from_utf8_lossy(a) == d)
        .then_some(pid)
}

/// The postmaster and all its children, for freezing or killing a whole
/// server at once (as a VM pause or a host crash would).
pub fn server_processes(data_dir: &Path) -> Vec<i32> {
    match postmaster(data_dir) {
        Some(pm) => std::iter::once(pm).chain(children_of(pm)).collect(),
        None => Vec::new(),
    }
}
