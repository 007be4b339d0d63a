//! The leader repoints each front door to the new primary site: HAProxy
//! through its runtime API, a config file plus reload, a signed webhook.
//! Every kind is idempotent (a repeat changes nothing) and verified.

use std::collections::BTreeMap;

use palisade_actions::command::CommandSpec;
use palisade_actions::config_file::{apply, ConfigFileTarget, ConfigOutcome};
use palisade_actions::haproxy::{HaproxyClient, HaproxyEndpoint};
use palisade_actions::retry::RetryPolicy;
use palisade_actions::webhook::{Webhook, WebhookConfig, WebhookEvent};
use palisade_core::Failover;

use crate::config::FrontDoor;

/// Repoints `door` to `f.to`; returns what it did, for the record.
pub async fn repoint(door: &FrontDoor, f: &Failover) -> Result<String, String> {
    match door {
        FrontDoor::Haproxy {
            runtime_api,
            backend,
            servers,
        } => {
            let endpoint: HaproxyEndpoint = runtime_api
                .parse()
                .map_err(|e| format!("haproxy {runtime_api}: {e}"))?;
            let active = servers
                .get(&f.to.0)
                .ok_or_else(|| format!("haproxy: no server for site {}", f.to))?;
            let others: Vec<&str> = servers
                .iter()
                .filter(|(s, _)| **s != f.to.0)
                .map(|(_, n)| n.as_str())
                .collect();
            let client = HaproxyClient::new(endpoint);
            let out = client
                .route_to(backend, active, &others)
                .await
                .map_err(|e| format!("haproxy {backend}: {e}"))?;
            Ok(format!(
                "haproxy {backend}: {active} ready, {} in maint{}",
                others.join(", "),
                if out.changed() { "" } else { " (already)" }
            ))
        }
        FrontDoor::Webhook {
            url,
            secret,
            timeout,
            tls,
        } => {
            let hook = Webhook::new(&WebhookConfig {
                url: url.clone(),
                secret: secret.clone(),
                timeout: *timeout,
                retry: RetryPolicy::default(),
                tls: tls.clone(),
            })
            .map_err(|e| format!("webhook {url}: {e}"))?;
            let event = WebhookEvent {
                epoch: f.epoch,
                from_site: f.from.0.clone(),
                to_site: f.to.0.clone(),
                reason: f.reason.clone(),
                event: "failover".into(),
                at_unix_ms: u64::try_from(f.started_at_ms).unwrap_or(0),
            };
            let d = hook
                .send(&event)
                .await
                .map_err(|e| format!("webhook {url}: {e}"))?;
            Ok(format!(
                "webhook {url}: delivered {} (HTTP {}, {} attempt(s))",
                d.delivery_id, d.status, d.attempts
            ))
        }
        FrontDoor::ConfigFile {
            template,
            target,
            reload_command,
            addresses,
            timeout,
        } => {
            let text = tokio::fs::read_to_string(template)
                .await
                .map_err(|e| format!("config file template {}: {e}", template.display()))?;
            let reload = reload_command
                .as_ref()
                .map(|argv| CommandSpec::new(argv.clone(), *timeout));
            let t = ConfigFileTarget::new(target.clone(), text, reload);
            let mut vars = BTreeMap::new();
            vars.insert("site".to_string(), f.to.0.clone());
            vars.insert("epoch".to_string(), f.epoch.to_string());
            if let Some(a) = addresses.get(&f.to.0) {
                vars.insert("address".to_string(), a.clone());
            }
            let out = apply(&t, &vars)
                .await
                .map_err(|e| format!("config file {}: {e}", target.display()))?;
            Ok(match out {
                ConfigOutcome::Unchanged => format!(
                    "config file {}: already for site {}",
                    target.display(),
                    f.to
                ),
                _ => format!(
                    "config file {}: rendered for site {} and reloaded",
                    target.display(),
                    f.to
                ),
            })
        }
    }
}
