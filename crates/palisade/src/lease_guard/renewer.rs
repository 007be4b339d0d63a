//! The guard's own renewals: while the server runs, the guard renews the
//! primary's quorum lease with the witnesses itself, alongside the agent and
//! exactly as it does, so that when the witness goes silent (dead,
//! SIGSTOPped, restarting for an upgrade) the lease is already held:
//! losing the witness *process* costs the database nothing. Losing the *site's network*
//! still ends the lease: the guard then reaches no majority either, and
//! freezes the server at the deadline.
//!
//! Safe for the same reason as the agent's renewals (RFC 0002): every grant
//! comes from a witness's applied state, is recorded in its grant book, and
//! is counted from when the guard *sent* the renewal; a leader proves an
//! expiry only from a majority of those books. A refusal (a witness applied
//! a failover away from this site) turns the order hard: the server is
//! killed, a committed failover always ends in a hard fence.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::lease::{majority, Grant, LeaseConfig, QuorumLease, Voters};
use palisade_core::{NodeId, SiteId};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::monotonic_ms;
use crate::peers::Peers;

/// What the guard needs to renew by itself, written by the witness into
/// every order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RenewSpec {
    /// The site whose lease it is.
    pub site: String,
    /// Every witness of the cluster (this site's too): id and the address
    /// of its peer port (`raft_addr`).
    pub witnesses: Vec<(NodeId, String)>,
    /// `[lease]` of the config.
    pub lease: LeaseConfig,
    /// `[lease] renew_interval_ms`.
    pub renew_interval_ms: u64,
    /// How long before the lease's end the server must be unable to write
    /// (the agent's `ttl / 4`).
    pub margin_ms: u64,
    /// The witness's certificates, which the guard presents as its own
    /// witness (the witnesses grant a site's lease to that site's witness
    /// only); `None`: the cluster is insecure (plaintext).
    #[serde(default)]
    pub tls: Option<GuardTls>,
}

/// Channels to the witnesses, with the addresses and certificates they
/// were made for (made again when the witness's orders change those).
type Channels = (Vec<(NodeId, String)>, Option<GuardTls>, Peers);

/// The TLS material of the witness whose lease guard this is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardTls {
    /// `cluster.name`.
    pub cluster: String,
    /// The witness's node id.
    pub node: NodeId,
    /// The CA certificate(s) file.
    pub ca: std::path::PathBuf,
    /// The witness's certificate file.
    pub cert: std::path::PathBuf,
    /// The witness's key file.
    pub key: std::path::PathBuf,
}

/// How often the guard looks whether the witness's certificate file
/// changed (a rotation), to present the new one from its next handshake.
const CERT_CHECK_MS: u64 = 5_000;

/// The certificate store the guard's channels present, and what it last
/// knew of the certificate file.
struct LoadedCert {
    store: std::sync::Arc<palisade_tls::CertStore>,
    cert: std::path::PathBuf,
    modified: Option<std::time::SystemTime>,
    checked_ms: u64,
}

impl LoadedCert {
    fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
        std::fs::metadata(path).and_then(|m| m.modified()).ok()
    }

    /// Reloads the store when the certificate file changed since the last
    /// look (at most every [`CERT_CHECK_MS`]). The resolvers of the guard's
    /// channels read the store at each handshake, so the new certificate
    /// is presented from the next connection on. A file that does not load
    /// (half written, wrong key) leaves the current one in use.
    fn refresh(&mut self, now_ms: u64) {
        if now_ms.saturating_sub(self.checked_ms) < CERT_CHECK_MS {
            return;
        }
        self.checked_ms = now_ms;
        let modified = Self::modified(&self.cert);
        if modified == self.modified {
            return;
        }
        match self.store.reload() {
            Ok(m) => {
                self.modified = modified;
                tracing::info!(
                    cert = %self.cert.display(),
                    serial = %m.serial_hex(),
                    not_after = %m.not_after(),
                    "lease guard: reloaded the witness's certificate"
                );
            }
            Err(e) => {
                // Retried at the next look; the file may be half written.
                tracing::error!(error = %e, "lease guard: the witness's certificate changed but does not load; keeping the current one");
            }
        }
    }
}

impl GuardTls {
    /// The transport this guard renews over, and the store it presents.
    fn transport(
        &self,
        site: &str,
    ) -> Result<
        (
            palisade_raft::transport::Transport,
            std::sync::Arc<palisade_tls::CertStore>,
        ),
        String,
    > {
        let store = palisade_tls::CertStore::load(
            palisade_tls::TlsPaths {
                ca_cert: self.ca.clone(),
                cert: self.cert.clone(),
                key: self.key.clone(),
            },
            palisade_tls::ExpectOwn::Witness {
                cluster: self.cluster.clone(),
                node: self.node,
                site: site.to_string(),
            },
        )
        .map_err(|e| e.to_string())?;
        let transport = palisade_raft::transport::Transport::witness(store.clone(), &self.cluster)
            .map_err(|e| e.to_string())?;
        Ok((transport, store))
    }
}

/// The witness's latest order as the renewer sees it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The order's epoch.
    pub epoch: u64,
    /// A hard order: nothing to renew.
    pub hard: bool,
    /// `CLOCK_MONOTONIC` ms when the witness wrote it.
    pub written_ms: u64,
    /// How to renew; `None`: the witness did not say (nothing to do).
    pub spec: Option<RenewSpec>,
    /// Whether any process of the server exists: a server that is not
    /// running needs no lease, and renewing one for it would only delay
    /// the failover of a site whose witness and database are both gone.
    pub server_up: bool,
}

struct Inner {
    seen: Option<Seen>,
    lease: QuorumLease,
    /// The epoch the guard's grants are for.
    epoch: Option<u64>,
    /// A witness refused this epoch: the order is hard from now on.
    refused: Option<(u64, String)>,
    /// Channels to the witnesses of the spec they were made for.
    peers: Option<Channels>,
    /// The certificate those channels present (`None`: plaintext).
    cert: Option<LoadedCert>,
    /// Whether the guard is renewing now (to log the change once).
    renewing: bool,
    /// Whether the witness has written no order for two renewal intervals.
    silent: bool,
}

/// The guard's renewals and the lease they hold.
pub struct Renewer {
    inner: Mutex<Inner>,
}

impl Default for Renewer {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                seen: None,
                lease: QuorumLease::new(1),
                epoch: None,
                refused: None,
                peers: None,
                cert: None,
                renewing: false,
                silent: false,
            }),
        }
    }
}

impl Renewer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .expect("renewer lock poisoned: a panic while holding it")
    }

    /// The witness's latest order (each poll).
    pub fn observe(&self, seen: Option<Seen>) {
        let mut inner = self.lock();
        if let Some(s) = &seen {
            if inner.epoch != Some(s.epoch) {
                let quorum = s.spec.as_ref().map_or(1, |sp| majority(sp.witnesses.len()));
                inner.lease = QuorumLease::new(quorum);
                inner.epoch = Some(s.epoch);
            }
        }
        inner.seen = seen;
    }

    /// The order to enforce: the witness's, its deadline pushed out to the
    /// guard's own lease when that runs longer, and hard once a witness
    /// refused the epoch.
    pub fn effective(
        &self,
        mut order: palisade_core::lease_guard::GuardOrder,
    ) -> palisade_core::lease_guard::GuardOrder {
        let inner = self.lock();
        if inner
            .refused
            .as_ref()
            .is_some_and(|(e, _)| *e == order.epoch)
        {
            order.hard = true;
            return order;
        }
        let spec = inner.seen.as_ref().and_then(|s| s.spec.as_ref());
        if let Some((spec, until)) =
            spec.and_then(|sp| Some((sp, inner.lease.valid_until_ms(order.epoch, &sp.lease)?)))
        {
            order.deadline_ms = order.deadline_ms.max(until.saturating_sub(spec.margin_ms));
        }
        order
    }

    /// Renews every `renew_interval` while the witness is silent, until
    /// `cancel`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let interval = self.due(monotonic_ms());
            let wait = match interval {
                Some((job, every)) => {
                    self.clone().renew(job);
                    every
                }
                None => Duration::from_millis(50),
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// A renewal to send now, if the witness has been silent for two
    /// renewal intervals and the order is a live, soft one.
    fn due(&self, now: u64) -> Option<(Job, Duration)> {
        let mut inner = self.lock();
        let seen = inner.seen.clone();
        // The guard renews alongside the witness all the time, not only
        // once the witness has gone quiet: taking over only then left too
        // little of the lease for a first round trip on a loaded machine
        // (its channels not even connected yet), and the server froze.
        let job = seen.as_ref().and_then(|s| {
            let spec = s.spec.as_ref()?;
            let refused = inner.refused.as_ref().is_some_and(|(e, _)| *e == s.epoch);
            (s.server_up && !s.hard && !refused).then(|| (s.epoch, spec.clone()))
        });
        let silent = seen.as_ref().is_some_and(|s| {
            s.spec
                .as_ref()
                .is_some_and(|spec| now.saturating_sub(s.written_ms) > 2 * spec.renew_interval_ms)
        });
        if job.is_some() != inner.renewing {
            inner.renewing = job.is_some();
            match &job {
                Some((epoch, _)) => tracing::info!(epoch, "the lease guard renews the lease too"),
                None => tracing::info!(
                    "the lease guard stopped renewing (no server, a hard order, or a refusal)"
                ),
            }
        }
        if silent != inner.silent {
            inner.silent = silent;
            if silent && job.is_some() {
                tracing::warn!(
                    "the witness is silent: the lease guard renews the lease itself, alone"
                );
            } else if !silent {
                tracing::info!("the witness writes orders again");
            }
        }
        let (epoch, spec) = job?;
        let peers = match &inner.peers {
            Some((ws, tls, p)) if *ws == spec.witnesses && *tls == spec.tls => {
                let p = p.clone();
                // A rotation keeps the file names: look at the file itself.
                if let Some(cert) = inner.cert.as_mut() {
                    cert.refresh(now);
                }
                p
            }
            _ => {
                let (transport, cert) = match &spec.tls {
                    None => (palisade_raft::transport::Transport::plaintext(), None),
                    Some(t) => match t.transport(&spec.site) {
                        Ok((transport, store)) => (
                            transport,
                            Some(LoadedCert {
                                store,
                                cert: t.cert.clone(),
                                modified: LoadedCert::modified(&t.cert),
                                checked_ms: now,
                            }),
                        ),
                        Err(e) => {
                            tracing::error!(error = %e, "lease guard: cannot load the witness's certificates; cannot renew");
                            return None;
                        }
                    },
                };
                let p = match Peers::with_addresses(
                    spec.witnesses.iter().map(|(id, a)| (*id, a.as_str())),
                    &transport,
                    Duration::from_millis(spec.renew_interval_ms),
                ) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(error = %e, "lease guard: bad witness address in the order; cannot renew");
                        return None;
                    }
                };
                inner.peers = Some((spec.witnesses.clone(), spec.tls.clone(), p.clone()));
                inner.cert = cert;
                p
            }
        };
        let every = Duration::from_millis(spec.renew_interval_ms.max(1));
        Some((
            Job {
                epoch,
                site: SiteId(spec.site.clone()),
                lease: spec.lease,
                peers,
                timeout: every,
            },
            every,
        ))
    }

    fn renew(self: Arc<Self>, job: Job) {
        let sent = monotonic_ms();
        let this = self.clone();
        let (epoch, lease) = (job.epoch, job.lease);
        crate::lease::renew_with(
            &job.peers,
            &job.site,
            epoch,
            job.timeout,
            move |witness, answer| this.answered(witness, sent, epoch, &lease, answer),
        );
    }

    fn answered(
        &self,
        witness: NodeId,
        sent: u64,
        epoch: u64,
        cfg: &LeaseConfig,
        answer: Result<(Grant, Option<Voters>), String>,
    ) {
        let mut inner = self.lock();
        if inner.epoch != Some(epoch) {
            return;
        }
        // The newest membership a witness reports decides whose grants
        // count, as at the agent (palisade_core::lease::QuorumLease).
        let answer = answer.map(|(grant, voters)| {
            if let Some(v) = &voters {
                inner.lease.learn_voters(v);
            }
            grant
        });
        match answer {
            Ok(Grant::Granted) => {
                inner.lease.granted(witness, sent, epoch);
                tracing::debug!(witness, until = ?inner.lease.valid_until_ms(epoch, cfg), "lease guard: renewal granted");
            }
            // A planned handover: the witness (when back) shuts the
            // server down cleanly; the guard stops renewing and lets the
            // lease run out rather than kill.
            Ok(Grant::Refused {
                handover: Some(_), ..
            }) => {}
            Ok(Grant::Refused { reason, .. }) => {
                if inner.refused.is_none() {
                    tracing::warn!(witness, epoch, %reason, "lease guard: renewal refused (a failover away from this site is committed): the server will be killed");
                }
                inner.refused = Some((epoch, reason));
            }
            Ok(Grant::Unknown { reason }) => {
                tracing::debug!(witness, %reason, "lease guard: renewal neither granted nor refused")
            }
            Err(e) => tracing::debug!(witness, error = %e, "lease guard: renewal failed"),
        }
    }
}

/// One round of renewals.
struct Job {
    epoch: u64,
    site: SiteId,
    lease: LeaseConfig,
    peers: Peers,
    timeout: Duration,
}
