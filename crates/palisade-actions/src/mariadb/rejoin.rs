//! An old writer coming back as the new writer's replica: started or
//! kept read-only, its errant transactions found against what the new
//! writer applied of it, then replicating.

use std::collections::BTreeMap;
use std::time::Instant;

use palisade_core::master_master::gtid::{self, Gtid, GtidPos, GtidState};
use sqlx::mysql::MySqlConnection;
use tracing::{info, warn};

use super::error::{errant_ranges, first_errant, MariaError};
use super::sql;
use super::{ErrantPolicy, MariaSite, PeerAccess, RejoinOutcome, StartOutcome};

/// What the new writer says of this server's history.
struct PeerView {
    /// `@@gtid_slave_pos`: the last GTID it applied in each domain.
    slave_pos: String,
    /// `@@gtid_binlog_state`.
    binlog_state: String,
}

impl MariaSite {
    /// See [`MariaSite::rejoin`].
    pub(super) async fn rejoin_inner(
        &self,
        peer: &PeerAccess,
        policy: ErrantPolicy,
    ) -> Result<RejoinOutcome, MariaError> {
        let began = Instant::now();
        let started = matches!(self.start_inner().await?, StartOutcome::Started { .. });
        // Started: `start` confirmed read_only ON. Running: it may be an
        // old writer that was never killed. The fence kills every client
        // session, so it runs before we open ours.
        let fenced = if !started && !self.is_write_fenced().await? {
            let fence = self.fence_writes_inner().await?;
            warn!(
                ?fence,
                "the old writer was running writable: soft-fenced it"
            );
            true
        } else {
            false
        };
        let mut conn = self.connect().await?;
        let result = self
            .rejoin_on(&mut conn, peer, policy, started, fenced, began)
            .await;
        self.close(conn).await;
        result
    }

    async fn rejoin_on(
        &self,
        conn: &mut MySqlConnection,
        peer: &PeerAccess,
        policy: ErrantPolicy,
        started: bool,
        fenced: bool,
        began: Instant,
    ) -> Result<RejoinOutcome, MariaError> {
        let server_id = self.required(conn, sql::SERVER_ID).await?;
        let server_id: u32 = server_id
            .trim()
            .parse()
            .map_err(|_| self.unexpected(sql::SERVER_ID, server_id))?;
        let own_text = self.required(conn, sql::GTID_BINLOG_STATE).await?;
        let own = GtidState::parse(&own_text)
            .map_err(|e| self.unexpected(sql::GTID_BINLOG_STATE, e.to_string()))?;

        let peer_site = self.peer_site(peer);
        let view = peer_site.peer_view().await?;
        let fork = fork_point(&view.slave_pos, &view.binlog_state, server_id)
            .map_err(|e| peer_site.unexpected("the new writer's GTID positions", e.to_string()))?;
        let errant = gtid::errant(&own, server_id, &fork);
        if let (Some(first), Some(last)) = (errant.first(), errant.last()) {
            let count = errant.iter().map(|e| e.at_most).sum();
            match policy {
                ErrantPolicy::Refuse => {
                    return Err(MariaError::Errant {
                        server: self.server(),
                        count,
                        first: first_errant(first),
                        last: last.last,
                        fork: fork.to_string(),
                        errant,
                    })
                }
                ErrantPolicy::Replicate => warn!(
                    count,
                    ranges = %errant_ranges(&errant),
                    fork = %fork,
                    "errant transactions allowed (errant_transactions = \"replicate\"): \
                     the new writer will apply them when it replicates from here"
                ),
            }
        }

        let replication_started = self.start_replication_on(conn).await?;
        let status = self.wait_replicating(conn).await?;
        // Nothing above makes it writable; confirm all the same.
        if !self.read_only(conn).await? {
            return Err(MariaError::FenceNotConfirmed {
                server: self.server(),
                detail: "read_only reads OFF after rejoining".into(),
                retryable: true,
            });
        }
        info!(
            started,
            replication_started,
            io = %status.io_running,
            sql = %status.sql_running,
            "replicating from the new writer"
        );
        Ok(RejoinOutcome {
            started,
            fenced,
            server_id,
            gtid_binlog_state: own_text,
            fork: fork.to_string(),
            errant,
            replication_started,
            elapsed: began.elapsed(),
        })
    }

    /// This site's settings with the peer's address and account: its
    /// errors then name the peer.
    fn peer_site(&self, peer: &PeerAccess) -> MariaSite {
        MariaSite {
            admin_dsn: peer.dsn.clone(),
            admin_password: peer.password.clone(),
            ..self.clone()
        }
    }

    /// Reads the peer's positions (called on [`MariaSite::peer_site`]).
    async fn peer_view(&self) -> Result<PeerView, MariaError> {
        let mut conn = self.connect().await.map_err(|e| match e {
            MariaError::InvalidInput { server, detail, .. } => MariaError::InvalidInput {
                server,
                what: "peer dsn",
                detail,
            },
            e => e,
        })?;
        let result = async {
            Ok(PeerView {
                slave_pos: self
                    .scalar(&mut conn, sql::GTID_SLAVE_POS)
                    .await?
                    .unwrap_or_default(),
                binlog_state: self
                    .scalar(&mut conn, sql::GTID_BINLOG_STATE)
                    .await?
                    .unwrap_or_default(),
            })
        }
        .await;
        self.close(conn).await;
        result
    }
}

/// The new writer's fork point of the old writer (`old_server`): per
/// domain, the further of its `gtid_slave_pos` (what its SQL thread
/// applied) and the old writer's last GTID its own binary log holds (with
/// `log_slave_updates`; it survives a `RESET SLAVE`).
fn fork_point(
    slave_pos: &str,
    binlog_state: &str,
    old_server: u32,
) -> Result<GtidPos, gtid::GtidError> {
    let mut fork: BTreeMap<u32, Gtid> = GtidPos::parse(slave_pos)?
        .iter()
        .map(|g| (g.domain, g))
        .collect();
    for g in GtidState::parse(binlog_state)?.written_by(old_server) {
        let entry = fork.entry(g.domain).or_insert(g);
        if g.seq > entry.seq {
            *entry = g;
        }
    }
    let text: Vec<String> = fork.values().map(Gtid::to_string).collect();
    GtidPos::parse(&text.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fork_is_what_the_new_writer_applied_of_the_old_one() {
        // File/position replication, no log_slave_updates: its own writes
        // only in its binlog state.
        assert_eq!(
            fork_point("0-1-100", "0-2-104", 1).unwrap().to_string(),
            "0-1-100"
        );
        // With log_slave_updates, the old writer's GTIDs in its binlog
        // count, also after its slave position was reset.
        assert_eq!(
            fork_point("", "0-1-100,0-2-104", 1).unwrap().to_string(),
            "0-1-100"
        );
        assert_eq!(
            fork_point("0-1-90,1-1-5", "0-1-100", 1)
                .unwrap()
                .to_string(),
            "0-1-100,1-1-5"
        );
        assert!(fork_point("", "", 1).unwrap().is_empty());
        assert!(fork_point("garbage", "", 1).is_err());
    }

    #[test]
    fn errant_transactions_are_summed_and_named_by_range() {
        let own = GtidState::parse("0-2-100,0-1-103,1-1-7").unwrap();
        let fork = fork_point("0-1-100,1-1-6", "", 1).unwrap();
        let found = gtid::errant(&own, 1, &fork);
        assert_eq!(found.iter().map(|e| e.at_most).sum::<u64>(), 4);
        assert_eq!(first_errant(&found[0]).to_string(), "0-1-101");
        assert_eq!(errant_ranges(&found), "0-1-101..0-1-103, 1-1-7");
        // Everything reached the new writer: nothing errant.
        let fork = fork_point("0-1-103,1-1-7", "", 1).unwrap();
        assert!(gtid::errant(&own, 1, &fork).is_empty());
    }
}
