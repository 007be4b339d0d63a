//! A site's application server, as its agent manages it: the
//! `monitorsEnabled` flip and the Elasticsearch hosts in its configuration,
//! and the restart that makes a change take effect.

use std::time::Instant;

use palisade_actions::command::{run_checked, CommandSpec};
use palisade_actions::elasticsearch::{repoint_hosts, CcrClient, EsHostsTarget};
use palisade_actions::monitors::{read_monitors_enabled, set_monitors_enabled, FlipOutcome};

use crate::config::{AppConfig, EsTarget};

/// One site's app.
pub struct SiteApp {
    cfg: AppConfig,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("file task failed: {e}"))
}

impl SiteApp {
    /// Manages the app `cfg` describes.
    pub fn new(cfg: AppConfig) -> Self {
        Self { cfg }
    }

    /// `monitorsEnabled` as the file says now (`None`: property absent).
    pub async fn monitors(&self) -> Result<Option<bool>, String> {
        let path = self.cfg.config_file.clone();
        blocking(move || read_monitors_enabled(&path))
            .await?
            .map_err(|e| e.to_string())
    }

    /// Sets `monitorsEnabled` (atomically, keeping a backup, every other
    /// byte untouched) and restarts the app when it changed.
    pub async fn set_monitors(&self, enabled: bool) -> Result<String, String> {
        let path = self.cfg.config_file.clone();
        let outcome = blocking(move || set_monitors_enabled(&path, enabled))
            .await?
            .map_err(|e| e.to_string())?;
        match outcome {
            FlipOutcome::Unchanged { .. } => Ok(format!("monitorsEnabled already {enabled}")),
            FlipOutcome::Changed { from, to, .. } => {
                let restart = self.restart().await?;
                Ok(format!("monitorsEnabled {from} -> {to}{restart}"))
            }
        }
    }

    /// Promotes CCR followers (if any), points the app at `hosts`, restarts
    /// it when the configuration changed.
    pub async fn repoint_search(
        &self,
        hosts: &str,
        ccr_url: &str,
        indices: &[String],
    ) -> Result<String, String> {
        let mut done = Vec::new();
        if !indices.is_empty() {
            let client = CcrClient::new(ccr_url, std::time::Duration::from_secs(30), None)
                .map_err(|e| e.to_string())?;
            let promoted = client
                .promote_followers(indices)
                .await
                .map_err(|e| e.to_string())?;
            done.push(format!("promoted {} follower index(es)", promoted.len()));
        }
        let Some(target) = &self.cfg.es_target else {
            done.push("no es target configured for the app".into());
            return Ok(done.join("; "));
        };
        let target = match target {
            EsTarget::XmlProperty(p) => EsHostsTarget::XmlProperty {
                path: self.cfg.config_file.clone(),
                property: p.clone(),
            },
            EsTarget::KeyValue { file, key } => EsHostsTarget::KeyValue {
                path: file.clone(),
                key: key.clone(),
            },
        };
        let hosts_owned = hosts.to_string();
        let outcome = blocking(move || repoint_hosts(&target, &hosts_owned))
            .await?
            .map_err(|e| e.to_string())?;
        if outcome.changed() {
            let restart = self.restart().await?;
            done.push(format!("app pointed at Elasticsearch {hosts}{restart}"));
        } else {
            done.push(format!("app already points at Elasticsearch {hosts}"));
        }
        Ok(done.join("; "))
    }

    async fn restart(&self) -> Result<String, String> {
        let Some(argv) = &self.cfg.restart_command else {
            return Ok(String::new());
        };
        let t = Instant::now();
        let spec = CommandSpec::new(argv.clone(), self.cfg.command_timeout);
        run_checked(&spec)
            .await
            .map_err(|e| format!("app restart failed: {e}"))?;
        Ok(format!(", app restarted in {} ms", t.elapsed().as_millis()))
    }
}
