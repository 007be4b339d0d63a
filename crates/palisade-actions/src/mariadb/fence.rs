//! The soft fence: `read_only` on, every client session killed, and the
//! confirmation that no session able to write through `read_only` is
//! left (see the module doc of [`super`] for what it cannot cover).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use sqlx::mysql::MySqlConnection;
use tracing::{info, warn};

use super::conn::ER_LOCK_WAIT_TIMEOUT;
use super::error::MariaError;
use super::sql;
use super::{BypassingAccount, FenceWritesOutcome, MariaSite, POLL};

/// A client session, as `information_schema.PROCESSLIST` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ClientSession {
    pub id: u64,
    pub user: String,
    pub host: String,
    pub command: String,
}

/// The sessions a fence killed.
#[derive(Debug, Default)]
struct Killed {
    count: u32,
    users: BTreeSet<String>,
}

impl MariaSite {
    /// See [`MariaSite::fence_writes`].
    pub(super) async fn fence_writes_inner(&self) -> Result<FenceWritesOutcome, MariaError> {
        let started = Instant::now();
        let mut conn = self.connect().await?;
        let result = self.fence_writes_on(&mut conn, started).await;
        self.close(conn).await;
        result
    }

    async fn fence_writes_on(
        &self,
        conn: &mut MySqlConnection,
        started: Instant,
    ) -> Result<FenceWritesOutcome, MariaError> {
        let was_read_only = self.read_only(conn).await?;
        // SET GLOBAL read_only waits for in-flight commits and explicit
        // table locks for up to lock_wait_timeout (a day by default): half
        // our timeout, and the statement itself gets that plus our
        // timeout, so the server's lock-wait error comes before ours.
        let lock_wait = Duration::from_secs((self.timeout.as_secs() / 2).max(1));
        let set_bound = lock_wait + self.timeout;
        self.exec(
            conn,
            &format!("{}{}", sql::SET_LOCK_WAIT_TIMEOUT, lock_wait.as_secs()),
        )
        .await?;
        let mut killed = Killed::default();
        if !was_read_only {
            match self
                .exec_within(set_bound, conn, sql::SET_READ_ONLY_ON)
                .await
            {
                Ok(()) => {}
                Err(e) if e.server_error_number() == Some(ER_LOCK_WAIT_TIMEOUT) => {
                    // A session holds a table lock or is stuck committing:
                    // end it, then take the lock. Clients may reconnect in
                    // between and write; the kill below ends them too, and
                    // nothing was promoted yet.
                    warn!(error = %e, "read_only waited for locks; killing client sessions first");
                    self.kill_sessions(conn, &mut killed, |_| true).await?;
                    self.exec_within(set_bound, conn, sql::SET_READ_ONLY_ON)
                        .await?;
                }
                Err(e) => return Err(e),
            }
        }
        // Read-only from here on for every session without READ_ONLY
        // ADMIN; sessions opened before keep their open transactions
        // (which can no longer commit) until killed.
        self.kill_sessions(conn, &mut killed, |_| true).await?;

        if !self.read_only(conn).await? {
            return Err(MariaError::FenceNotConfirmed {
                server: self.server(),
                detail: "read_only reads back OFF after SET GLOBAL read_only = ON \
                         (someone turned it off again)"
                    .into(),
                retryable: true,
            });
        }

        // Sessions of accounts that write through read_only must be gone:
        // killed above, unless they connected since. Kill those again
        // until none is left.
        let bypass = self.bypass_grantees(conn).await?;
        let bypass_users: BTreeSet<String> =
            bypass.keys().filter_map(|g| grantee_user(g)).collect();
        let deadline = Instant::now() + self.timeout;
        loop {
            let live: Vec<ClientSession> = self
                .client_sessions(conn)
                .await?
                .into_iter()
                .filter(|s| bypass_users.contains(&s.user))
                .collect();
            if live.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(MariaError::FenceNotConfirmed {
                    server: self.server(),
                    detail: format!(
                        "sessions of accounts that write through read_only keep connecting: {}",
                        live.iter()
                            .map(|s| format!("{} ({}@{})", s.id, s.user, s.host))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    retryable: true,
                });
            }
            let ids: BTreeSet<u64> = live.iter().map(|s| s.id).collect();
            self.kill_sessions(conn, &mut killed, |s| ids.contains(&s.id))
                .await?;
            tokio::time::sleep(POLL).await;
        }

        // The warning list: accounts that could write through the fence,
        // other than palisade's admin user's (at any host) and the
        // replication user's.
        let current = self.required(conn, sql::CURRENT_USER).await?;
        let mut expected = self.replication_users(conn).await?;
        expected.insert(current_user_name(&current).to_owned());
        let bypassing_accounts: Vec<BypassingAccount> = bypass
            .into_iter()
            .filter(|(grantee, _)| !grantee_user(grantee).is_some_and(|u| expected.contains(&u)))
            .map(|(grantee, privileges)| BypassingAccount {
                grantee,
                privileges,
            })
            .collect();
        if !bypassing_accounts.is_empty() {
            warn!(
                accounts = ?bypassing_accounts,
                "accounts that can write through read_only exist; only the hard fence stops them"
            );
        }
        let outcome = FenceWritesOutcome {
            was_read_only,
            sessions_killed: killed.count,
            killed_users: killed.users.into_iter().collect(),
            bypassing_accounts,
            elapsed: started.elapsed(),
        };
        info!(?outcome, "writes fenced");
        Ok(outcome)
    }

    /// Every client session but ours, replication's and the server's own.
    pub(super) async fn client_sessions(
        &self,
        conn: &mut MySqlConnection,
    ) -> Result<Vec<ClientSession>, MariaError> {
        self.rows(conn, sql::CLIENT_SESSIONS)
            .await?
            .into_iter()
            .map(|row| {
                let id = row
                    .get("ID")
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| self.unexpected("PROCESSLIST.ID", format!("{row:?}")))?;
                Ok(ClientSession {
                    id,
                    user: row.get("USER").unwrap_or_default().to_owned(),
                    host: row.get("HOST").unwrap_or_default().to_owned(),
                    command: row.get("COMMAND").unwrap_or_default().to_owned(),
                })
            })
            .collect()
    }

    /// Kills the client sessions that `which` selects, counting those that
    /// were still there.
    async fn kill_sessions(
        &self,
        conn: &mut MySqlConnection,
        killed: &mut Killed,
        which: impl Fn(&ClientSession) -> bool,
    ) -> Result<(), MariaError> {
        for session in self.client_sessions(conn).await? {
            if which(&session) && self.kill(conn, session.id).await? {
                info!(
                    id = session.id,
                    user = %session.user,
                    host = %session.host,
                    command = %session.command,
                    "killed client session"
                );
                killed.count += 1;
                killed.users.insert(session.user);
            }
        }
        Ok(())
    }

    /// Grantees (accounts and roles, as `'user'@'host'`) holding a
    /// privilege that bypasses `read_only` on this server's version, with
    /// those privileges.
    pub(super) async fn bypass_grantees(
        &self,
        conn: &mut MySqlConnection,
    ) -> Result<BTreeMap<String, Vec<String>>, MariaError> {
        let version = self.required(conn, sql::VERSION).await?;
        let counts = bypass_privileges(&version);
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for row in self.rows(conn, sql::BYPASS_GRANTEES).await? {
            let (Some(grantee), Some(privilege)) = (row.get("GRANTEE"), row.get("PRIVILEGE_TYPE"))
            else {
                continue;
            };
            if counts.contains(&privilege) {
                out.entry(grantee.to_owned())
                    .or_default()
                    .push(privilege.to_owned());
            }
        }
        Ok(out)
    }

    /// The replication users: whom this server replicates as
    /// (`Master_User`), and who replicates from it (its binlog senders'
    /// users).
    async fn replication_users(
        &self,
        conn: &mut MySqlConnection,
    ) -> Result<BTreeSet<String>, MariaError> {
        let mut users = BTreeSet::new();
        for row in self.rows(conn, sql::SLAVE_STATUS).await? {
            if let Some(u) = row.get("Master_User").filter(|u| !u.is_empty()) {
                users.insert(u.to_owned());
            }
        }
        for row in self.rows(conn, sql::DUMP_THREAD_USERS).await? {
            if let Some(u) = row.at(0).filter(|u| !u.is_empty()) {
                users.insert(u.to_owned());
            }
        }
        Ok(users)
    }
}

/// The privileges that let a session write through `read_only` on a
/// server reporting `@@version`: MariaDB 10.11 and later only `READ_ONLY
/// ADMIN` (MDEV-29596 took it out of `SUPER`); MariaDB 10.5.2–10.10 also
/// `SUPER`, which implied it; older MariaDB and MySQL `SUPER`.
pub(super) fn bypass_privileges(version: &str) -> &'static [&'static str] {
    let mut numbers = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let major = numbers.next().unwrap_or(0);
    let minor = numbers.next().unwrap_or(0);
    if version.contains("MariaDB") && (major, minor) >= (10, 11) {
        &["READ_ONLY ADMIN"]
    } else {
        &["SUPER", "READ_ONLY ADMIN"]
    }
}

/// The user name of a grantee `'user'@'host'`.
pub(super) fn grantee_user(grantee: &str) -> Option<String> {
    let inner = grantee.strip_prefix('\'')?;
    let end = inner.rfind("'@'")?;
    Some(inner[..end].replace("''", "'"))
}

/// The user name of `CURRENT_USER()` (`user@host`).
pub(super) fn current_user_name(current: &str) -> &str {
    current.rsplit_once('@').map_or(current, |(user, _)| user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn super_stops_bypassing_read_only_in_mariadb_10_11() {
        assert_eq!(
            bypass_privileges("10.11.19-MariaDB-0+deb12u1-log"),
            ["READ_ONLY ADMIN"]
        );
        assert_eq!(bypass_privileges("11.4.2-MariaDB"), ["READ_ONLY ADMIN"]);
        assert_eq!(
            bypass_privileges("10.6.18-MariaDB-log"),
            ["SUPER", "READ_ONLY ADMIN"]
        );
        assert_eq!(bypass_privileges("8.0.36"), ["SUPER", "READ_ONLY ADMIN"]);
    }

    #[test]
    fn reads_grantees() {
        assert_eq!(grantee_user("'app'@'%'").as_deref(), Some("app"));
        assert_eq!(
            grantee_user("'o''neil'@'10.0.0.1'").as_deref(),
            Some("o'neil")
        );
        assert_eq!(grantee_user("app"), None);
        assert_eq!(current_user_name("palisade@127.0.0.1"), "palisade");
        assert_eq!(current_user_name("a@b@localhost"), "a@b");
    }
}
