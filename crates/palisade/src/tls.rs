//! This witness's transport security, from `[tls]`: the certificate store
//! (reloaded on SIGHUP, without a restart), the client transport every
//! outgoing call uses, and what each port admits.
//!
//! * The peer port admits only the configured witnesses, each by its
//!   certificate's node id and site.
//! * The control port admits operators (viewer or operator role) and
//!   witnesses (a follower forwards an operator's request to the leader) of
//!   this cluster; each RPC then checks the role it needs
//!   (`crate::control`).

use palisade_raft::members::Members;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use palisade_raft::transport::{Listening, Transport};
use palisade_tls::{authorize_peer, CertStore, Expect, ExpectOwn, Role};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, TlsSettings};

/// How many days before its certificate expires a witness warns (in its
/// log, once a day, and in status).
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// How often the witness looks at its certificate's expiry.
const EXPIRY_CHECK: Duration = Duration::from_secs(3600);

/// The transport side of one witness.
pub struct WitnessTls {
    /// How this witness dials other witnesses.
    pub transport: Transport,
    /// What the peer port serves.
    pub peer: Listening,
    /// What the control port serves.
    pub control: Listening,
    /// The certificate store (`None`: insecure).
    pub store: Option<Arc<CertStore>>,
}

/// Loads the certificates `[tls]` names (checking they are this witness's,
/// chain to the CA, are valid now and that the key is owner-only), or
/// returns the plaintext setup of an insecure cluster.
pub fn setup(config: &Config, members: &Members) -> anyhow::Result<WitnessTls> {
    let paths = match &config.tls {
        TlsSettings::Insecure => {
            return Ok(WitnessTls {
                transport: Transport::plaintext(),
                peer: Listening::Plaintext,
                control: Listening::Plaintext,
                store: None,
            })
        }
        TlsSettings::Mutual(paths) => paths.clone(),
    };
    let own = config.topology.own();
    let store = CertStore::load(
        paths,
        ExpectOwn::Witness {
            cluster: config.cluster_name.clone(),
            node: config.topology.own_id,
            site: own.site.clone(),
        },
    )
    .with_context(|| {
        format!(
            "{}: tls: loading this witness's certificates (mutual TLS is on by default; make them with \
             `palisade cert init` and `palisade cert issue --witness {} --site {}`, name them in [tls] \
             (default: dir = \"tls\" beside the config file), or set tls.insecure = true for plaintext \
             on a closed test network)",
            config.file.display(),
            config.topology.own_id,
            own.site
        )
    })?;
    // Witnesses of the current membership (voters and learners), read at
    // each handshake: a witness added by `palisadectl member` is accepted
    // at once, a removed one refused.
    let cluster = config.cluster_name.clone();
    let members = members.clone();
    let peer_expect = move || Expect::WitnessPeer {
        cluster: cluster.clone(),
        members: members
            .nodes()
            .into_iter()
            .map(|(id, w)| (id, w.site))
            .collect(),
    };
    let control_expect = Expect::Control {
        cluster: config.cluster_name.clone(),
        min_role: Role::Viewer,
    };
    Ok(WitnessTls {
        transport: Transport::witness(store.clone(), &config.cluster_name)
            .with_context(|| format!("{}: cluster.name", config.file.display()))?,
        peer: Listening::Tls(palisade_tls::server_config(store.clone(), move |id| {
            authorize_peer(id, &peer_expect())
        })),
        control: Listening::Tls(palisade_tls::server_config(store.clone(), move |id| {
            authorize_peer(id, &control_expect)
        })),
        store: Some(store),
    })
}

/// Reloads the certificates on SIGHUP (a rotation needs no restart: new
/// connections present and trust the new files at once, open ones carry
/// on), and warns once a day from 30 days before the certificate expires. A failed reload keeps the old certificates in
/// service and says why at ERROR.
pub async fn watch(store: Arc<CertStore>, shutdown: CancellationToken) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP: certificates are reloaded only by a restart");
            None
        }
    };
    let mut last_warned_day: Option<i64> = None;
    loop {
        let days = store.days_left();
        if days <= EXPIRY_WARNING_DAYS && last_warned_day != Some(days) {
            last_warned_day = Some(days);
            tracing::warn!(
                days_left = days,
                not_after = %store.not_after(),
                cert = %store.paths().cert.display(),
                "this witness's certificate expires soon: issue a new one (palisade cert issue) and send SIGHUP"
            );
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(EXPIRY_CHECK) => {}
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                match store.reload() {
                    Ok(m) => tracing::info!(
                        serial = %m.serial_hex(),
                        not_after = %m.not_after(),
                        "SIGHUP: certificates reloaded; new connections use them"
                    ),
                    Err(e) => tracing::error!(
                        error = %e,
                        "SIGHUP: certificates NOT reloaded; the previous ones stay in service"
                    ),
                }
                last_warned_day = None;
            }
        }
    }
}

/// The transport in words, for status: `mTLS (certificate expires ...)`
/// or the insecure warning.
pub fn describe(store: Option<&CertStore>) -> String {
    match store {
        None => "INSECURE: plaintext, nobody authenticated (tls.insecure = true)".into(),
        Some(s) => {
            let days = s.days_left();
            let warn = if days <= EXPIRY_WARNING_DAYS {
                " — RENEW IT SOON"
            } else {
                ""
            };
            format!(
                "mutual TLS 1.3; certificate expires {} ({days} days){warn}",
                s.not_after().date()
            )
        }
    }
}
