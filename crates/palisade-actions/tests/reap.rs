//! A site agent that adopted its servers (`adopt_orphaned_servers`) is the
//! parent of the postmaster it starts, and reaps it once killed: the
//! restart in place does not wait for init, and works under an init that
//! never reaps. Its own test binary, because becoming a subreaper changes
//! the whole process.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use palisade_actions::postgres::{adopt_orphaned_servers, DatabaseControl, PgSite, StartOutcome};
use palisade_testkit::pg::PgPair;

/// `(state, ppid)` of `pid`, from `/proc`.
fn state_and_parent(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
    let state = rest.next()?.chars().next()?;
    Some((state, rest.next()?.parse().ok()?))
}

#[tokio::test]
async fn a_killed_postmaster_of_an_adopter_is_reaped_and_restarts_in_place() -> Result<()> {
    adopt_orphaned_servers().context("becoming a child subreaper")?;
    let me = std::process::id() as i32;
    let pair = PgPair::start().await?;
    let server = &pair.primary;
    let db = PgSite {
        bin_dir: server.bin_dir().to_path_buf(),
        data_dir: server.data_dir().to_path_buf(),
        os_user: server.os_user().map(str::to_owned),
        admin_dsn: server.dsn(),
        admin_password: None,
        timeout: Duration::from_secs(10),
        transfer_timeout: Duration::from_secs(120),
        log_file: Some(server.log_file().to_path_buf()),
    };

    eprintln!("--- restarted by this process, the postmaster is its child");
    db.fence(1).await?;
    ensure!(matches!(db.start(1).await?, StartOutcome::Started { .. }));
    let postmaster = server.postmaster_pid().context("a postmaster")?;
    ensure!(
        state_and_parent(postmaster).map(|(_, p)| p) == Some(me),
        "the postmaster {postmaster} was adopted: {:?}",
        state_and_parent(postmaster)
    );

    eprintln!("--- killed, it is a zombie of ours: nobody else will reap it");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(postmaster),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    // Its backends too (they outlive a killed postmaster for a moment).
    db.fence(2).await?;
    ensure!(
        state_and_parent(postmaster) == Some(('Z', me)),
        "{:?}",
        state_and_parent(postmaster)
    );

    eprintln!("--- the restart reaps it and starts");
    ensure!(matches!(db.start(2).await?, StartOutcome::Started { .. }));
    ensure!(
        state_and_parent(postmaster).is_none(),
        "the old postmaster {postmaster} was reaped"
    );
    ensure!(server.query_i64("SELECT 1::bigint").await? == 1);
    Ok(())
}
