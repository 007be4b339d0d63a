//! The demo's MariaDB side (`--db mariadb`): finding (or installing) the
//! server, building the HA/DR guide's MySQL master-master pair on it, and
//! describing that pair to the witnesses as `[[database]]` sections
//! (`engine = "mariadb"`, docs/mariadb.md).
//!
//! The pair is the test kit's [`MariaPair`], exactly the one the daemon's
//! end-to-end tests fail over (`crates/palisade/tests/mariadb.rs`): two
//! `mariadbd` in a temporary directory (`palisade-maria-*`), server-id 1
//! (site a) and 2 (site b), `auto_increment_increment = 2` with offsets 1
//! and 2, binary logs, each replicating from the other by file and
//! position as the guide's `CHANGE MASTER TO` says. Site a's master is the
//! writer (`role = "primary"`); site b's is the other master (`role =
//! "standby"`), which its agent keeps `read_only = ON`.
//!
//! The application connects as the test kit's `app` user (no `SUPER`, no
//! `READ_ONLY ADMIN`: `read_only` stops its writes) to its `app` database.

use std::path::PathBuf;

use anyhow::{bail, Context};
use palisade_testkit::mariadb::{mariadbd_path, MariaPair, MariaPairOptions};

use crate::postgres::apt_install;
use crate::report::Progress;
use crate::Replication;

/// The Debian package the demo needs, and the command that installs it.
const INSTALL: &str = "apt-get install -y mariadb-server";

/// Where Debian's `mariadb-server` puts the server.
const DEBIAN_MARIADBD: &str = "/usr/sbin/mariadbd";

/// The `mariadbd` binary (`PATH`, else `/usr/sbin`). When it is missing:
/// as root, installs Debian's `mariadb-server` (after an `apt-get update`
/// if the first try fails); otherwise fails with the command to run.
///
/// The package's own server (on port 3306, when the install starts it)
/// is left alone: the demo's two servers run on free loopback ports of
/// their own, from their own directories.
pub async fn ensure_server(p: &Progress) -> anyhow::Result<PathBuf> {
    if let Some(bin) = mariadbd_path() {
        return Ok(bin);
    }
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the MariaDB server (mariadbd, mariadb-install-db) is neither on PATH nor at {DEBIAN_MARIADBD}; install it with `sudo {INSTALL}` and run the demo again"
        );
    }
    p.step(format!(
        "MariaDB is not installed; running `{INSTALL}` (as root)"
    ));
    apt_install(p, "mariadb-server").await?;
    mariadbd_path().context(
        "mariadb-server is installed, yet no mariadbd was found on PATH or at /usr/sbin/mariadbd",
    )
}

/// The guide's pair (see the module doc). `sync` turns on
/// semi-synchronous replication in both directions, the MariaDB form of
/// palisade's `sync` mode: the witnesses' agent then keeps
/// `rpl_semi_sync_master_enabled` on at the writer.
pub async fn build_pair(mode: Replication) -> anyhow::Result<MariaPair> {
    MariaPair::start_with(MariaPairOptions {
        semi_sync: mode == Replication::Sync,
        ..MariaPairOptions::default()
    })
    .await
}

/// The `[failover]` and `[[database]]` TOML for `pair`: site a's master is
/// the writer (`role = "primary"`), site b's the other master (`role =
/// "standby"`), each with its option file, pid file, `mariadbd`, log and,
/// as root, `os_user = "mysql"` (the test kit's
/// `maria_database_sections`, as the daemon's end-to-end tests hand a
/// pair to their witnesses).
///
/// `[failover]` sets the replication mode and, unlike a default install,
/// `errant_transactions = "replicate"` ([`ERRANT_POLICY`]); everything
/// else keeps the documented defaults (`rejoin = "automatic"` among them).
/// When site a comes back, its agent starts its `mariadbd` with
/// `--read-only`, compares what it committed in its own name with what b
/// had applied when it was promoted (errant transactions), and makes it
/// replicate from b again.
pub fn database_sections(pair: &MariaPair, mode: Replication) -> String {
    format!(
        "[failover]\nreplication = \"{}\"\nerrant_transactions = \"{ERRANT_POLICY}\"\n\n{}",
        mode.as_str(),
        palisade_testkit::cluster::maria_database_sections(pair)
    )
}

/// The demo's `errant_transactions`. The default, `refuse`, keeps an old
/// writer that committed transactions the new writer never received out
/// of the pair until an operator reconciles them. Killed under the
/// writer's load, site a's `mariadbd` sometimes has one (1 run in 7 here):
/// the `INSERT` in flight at the kill, in its binary log (so its crash
/// recovery commits it) but never acknowledged nor sent to b. The writer then
/// retried that id on b, and its `INSERT ... ON DUPLICATE KEY UPDATE id =
/// id` makes replaying a's copy on b a no-op, so the demo lets it
/// replicate and shows the story to the end; [`errant_on_a`] says what
/// there was.
pub const ERRANT_POLICY: &str = "replicate";

/// What the new writer (site b) had applied of site a's binary log when it
/// was promoted: its `@@gtid_slave_pos` (`D-S-N` per domain), read after
/// the failover, before site a returns. Its replication from a stays
/// stopped until a rejoins, so this is the fork point.
pub async fn fork_point(pair: &MariaPair) -> anyhow::Result<String> {
    Ok(pair
        .b
        .query_text("SELECT @@global.gtid_slave_pos")
        .await
        .context("reading site b's gtid_slave_pos after the failover")?
        .unwrap_or_default())
}

/// Site a's own transactions past `fork` ([`fork_point`]): for each
/// replication domain, the last GTID a's binary log holds in its own
/// server id (`@@gtid_binlog_state`) when its sequence number is past the
/// fork's in that domain. Empty: none. Before the kill only a took writes,
/// so its own sequence numbers past the fork are consecutive: `0-1-214`
/// past `0-1-212` means two.
pub async fn errant_on_a(pair: &MariaPair, fork: &str) -> anyhow::Result<Vec<String>> {
    let state = pair
        .a
        .query_text("SELECT @@global.gtid_binlog_state")
        .await
        .context("reading site a's gtid_binlog_state")?
        .unwrap_or_default();
    Ok(errant(&state, fork, pair.a.server_id()))
}

/// The GTIDs of `state` in `server_id`'s name past `fork` (see
/// [`errant_on_a`]).
fn errant(state: &str, fork: &str, server_id: u32) -> Vec<String> {
    let parse = |gtid: &str| -> Option<(u32, u32, u64)> {
        let mut it = gtid.trim().splitn(3, '-');
        Some((
            it.next()?.parse().ok()?,
            it.next()?.parse().ok()?,
            it.next()?.parse().ok()?,
        ))
    };
    let forked: Vec<(u32, u32, u64)> = fork.split(',').filter_map(parse).collect();
    state
        .split(',')
        .filter_map(|g| parse(g).map(|p| (g.trim().to_owned(), p)))
        .filter(|(_, (domain, server, seq))| {
            *server == server_id
                && forked
                    .iter()
                    .filter(|(d, _, _)| d == domain)
                    .all(|(_, _, at)| seq > at)
        })
        .map(|(g, _)| g)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errant_transactions_are_the_old_writers_own_past_the_fork() {
        // a wrote 0-1-214; b had applied up to 0-1-213 and wrote 0-2-217.
        assert_eq!(errant("0-2-216,0-1-214", "0-1-213", 1), ["0-1-214"]);
        // Everything a wrote reached b.
        assert!(errant("0-2-216,0-1-213", "0-1-213", 1).is_empty());
        // Another domain b never saw counts whole.
        assert_eq!(errant("0-1-5,1-1-3", "0-1-5", 1), ["1-1-3"]);
        assert!(errant("", "0-1-5", 1).is_empty());
    }
}
