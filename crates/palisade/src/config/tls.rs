//! `[tls]`: how this witness's ports and its calls to other witnesses are
//! secured. Mutual TLS is the default and needs certificates (`palisade
//! cert init` / `palisade cert issue --witness N`); plaintext needs an
//! explicit `insecure = true`, which the daemon logs at ERROR on every
//! start and status shows.

use std::path::{Path, PathBuf};

use palisade_tls::TlsPaths;
use serde::Deserialize;

/// The `[tls]` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    /// Directory holding `ca.crt` and `witness-<node_id>.crt`/`.key`, as
    /// `palisade cert issue --witness` writes them.
    dir: Option<String>,
    /// The cluster CA certificate(s), PEM. Overrides `dir`'s.
    ca: Option<String>,
    /// This witness's certificate, PEM. Overrides `dir`'s.
    cert: Option<String>,
    /// This witness's private key, PEM, owner-only. Overrides `dir`'s.
    key: Option<String>,
    /// Plaintext, no authentication: for a closed test network only.
    #[serde(default)]
    insecure: bool,
}

/// `tls.dir` when the config has no `[tls]` section, relative to the
/// config file.
pub const DEFAULT_DIR: &str = "tls";

/// How the witness is secured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSettings {
    /// Mutual TLS 1.3 with these files.
    Mutual(TlsPaths),
    /// Plaintext (`tls.insecure = true`).
    Insecure,
}

impl TlsSettings {
    /// Whether the ports speak plaintext.
    pub fn is_insecure(&self) -> bool {
        matches!(self, TlsSettings::Insecure)
    }
}

/// Validates `[tls]` for witness `node` of `cluster`; relative paths are
/// relative to the config file's directory. Errors are `(key, reason)`.
pub(super) fn validate(
    raw: Option<&RawTls>,
    cluster: &str,
    node: u64,
    base: &Path,
) -> Result<TlsSettings, (String, String)> {
    fn fail<T>(key: &str, reason: String) -> Result<T, (String, String)> {
        Err((format!("tls.{key}"), reason))
    }
    // Without a [tls] section, TLS is on with the certificates in `tls/`
    // beside the config file: the witness refuses to start until they are
    // there (plaintext is never a default).
    let default = RawTls {
        dir: Some(DEFAULT_DIR.into()),
        ..RawTls::default()
    };
    let raw = raw.unwrap_or(&default);
    let any_file = raw.dir.is_some() || raw.ca.is_some() || raw.cert.is_some() || raw.key.is_some();
    if raw.insecure {
        if any_file {
            return fail(
                "insecure",
                "true together with certificate files: choose one (remove insecure, or the files)"
                    .into(),
            );
        }
        return Ok(TlsSettings::Insecure);
    }
    if let Err(e) = palisade_tls::validate_cluster(cluster) {
        return Err((
            "cluster.name".into(),
            format!("{e} (the cluster name is part of every witness certificate's name)"),
        ));
    }
    let resolve = |p: &str| {
        let p = PathBuf::from(p);
        if p.is_relative() {
            super::normalize(&base.join(p))
        } else {
            p
        }
    };
    let from_dir = raw
        .dir
        .as_deref()
        .map(|d| TlsPaths::witness(&resolve(d), node));
    let pick = |key: &str, own: &Option<String>, dir: Option<PathBuf>| match (own, dir) {
        (Some(p), _) if p.is_empty() => fail(key, "empty path".into()),
        (Some(p), _) => Ok(resolve(p)),
        (None, Some(d)) => Ok(d),
        (None, None) => fail(
            key,
            "missing: set tls.dir (or tls.ca, tls.cert and tls.key), or tls.insecure = true".into(),
        ),
    };
    Ok(TlsSettings::Mutual(TlsPaths {
        ca_cert: pick("ca", &raw.ca, from_dir.as_ref().map(|d| d.ca_cert.clone()))?,
        cert: pick("cert", &raw.cert, from_dir.as_ref().map(|d| d.cert.clone()))?,
        key: pick("key", &raw.key, from_dir.as_ref().map(|d| d.key.clone()))?,
    }))
}
