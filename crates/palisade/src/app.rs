//! A site's application server, as its agent manages it: the
//! `monitorsEnabled` flip and the Elasticsearch hosts in its configuration,
//! and the restart that makes a change take effect.

use std::time::Instant;

use palisade_actions::command::{run_checked, CommandSpec};
use palisade_actions::elasticsearch::{repoint_hosts, CcrClient, EsHostsTarget};
use palisade_actions::monitors::{read_monitors_enabled, set_monitors_enabled, FlipOutcome};
use palisade_core::SiteId;

use crate::config::{AppConfig, EsTarget, SearchConfig, SiteActions};

/// One site's app.
pub struct SiteApp {
    cfg: AppConfig,
    /// The `[[elasticsearch]]` of the app's own site, from the local
    /// configuration: the only search the app is ever pointed at (`None`:
    /// none configured, a repoint is refused).
    search: Option<SearchConfig>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("file task failed: {e}"))
}

impl SiteApp {
    /// Manages the app `cfg` describes; `search` is the `[[elasticsearch]]`
    /// of the same site (one of another site is ignored: the app is never
    /// pointed away from its own site's search).
    pub fn new(cfg: AppConfig, search: Option<SearchConfig>) -> Self {
        let search = search.filter(|s| s.site == cfg.site);
        Self { cfg, search }
    }

    /// The app of `site` as the local configuration describes it, with its
    /// site's search (`None`: no `[[app]]` there).
    pub fn configured(actions: &SiteActions, site: &SiteId) -> Option<Self> {
        let app = actions.app(site)?.clone();
        Some(Self::new(app, actions.search_at(site).cloned()))
    }

    /// The search this app is pointed at by [`Self::repoint_search`].
    pub fn search(&self) -> Option<&SearchConfig> {
        self.search.as_ref()
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

    /// Promotes its own site's CCR followers (if any), points the app at
    /// its own site's search hosts, restarts it when the configuration
    /// changed. Every value comes from the local configuration, none from
    /// the order that asks for it.
    pub async fn repoint_search(&self) -> Result<String, String> {
        let Some(search) = &self.search else {
            return Err(format!(
                "site {} has no [[elasticsearch]] configured",
                self.cfg.site
            ));
        };
        let (hosts, ccr_url, indices) = (&search.hosts, &search.url, &search.ccr_follower_indices);
        let mut done = Vec::new();
        if !indices.is_empty() {
            let auth = search
                .auth
                .basic
                .as_ref()
                .map(|a| (a.user.clone(), a.password.clone()));
            let client = CcrClient::with_tls(
                ccr_url,
                std::time::Duration::from_secs(30),
                auth,
                &search.auth.tls,
            )
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use palisade_actions::monitors::read_property;

    use super::*;

    const ES_PROPERTY: &str = "elasticsearchHosts";

    fn site(s: &str) -> SiteId {
        SiteId(s.into())
    }

    fn search(at: &str) -> SearchConfig {
        SearchConfig {
            site: site(at),
            url: format!("http://es-{at}:9200"),
            hosts: format!("es-{at}:9200"),
            ccr_follower_indices: Vec::new(),
            auth: Default::default(),
        }
    }

    /// The app of site b, whose file a forged order once pointed at
    /// `attacker.example:9200`.
    fn app_of_b(dir: &std::path::Path) -> AppConfig {
        let file = dir.join("threatconnect.xml");
        std::fs::write(
            &file,
            "<beans>\n  <property name=\"monitorsEnabled\" value=\"true\"/>\n  \
             <property name=\"elasticsearchHosts\" value=\"attacker.example:9200\"/>\n</beans>\n",
        )
        .expect("write fixture");
        AppConfig {
            site: site("b"),
            config_file: file,
            restart_command: None,
            command_timeout: Duration::from_secs(5),
            health_url: None,
            es_target: Some(EsTarget::XmlProperty(ES_PROPERTY.into())),
        }
    }

    #[tokio::test]
    async fn a_repoint_writes_the_hosts_of_its_own_sites_search_from_the_local_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = app_of_b(dir.path());
        let actions = SiteActions {
            apps: vec![cfg.clone()],
            search: vec![search("a"), search("b")],
            ..SiteActions::default()
        };
        let app = SiteApp::configured(&actions, &site("b")).expect("b has an app");
        assert_eq!(app.search(), Some(&search("b")));
        let done = app.repoint_search().await.expect("repointed");
        assert!(done.contains("es-b:9200"), "{done}");
        assert_eq!(
            read_property(&cfg.config_file, ES_PROPERTY).expect("read"),
            "es-b:9200",
            "the forged host is put back to the configured one"
        );
    }

    #[tokio::test]
    async fn an_app_without_its_own_sites_search_refuses_to_repoint_and_leaves_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = app_of_b(dir.path());
        let before = std::fs::read(&cfg.config_file).expect("read");
        // Another site's search is never taken for this app's.
        let app = SiteApp::new(cfg.clone(), Some(search("a")));
        assert_eq!(app.search(), None);
        let e = app.repoint_search().await.expect_err("nothing to point at");
        assert_eq!(e, "site b has no [[elasticsearch]] configured");
        assert_eq!(std::fs::read(&cfg.config_file).expect("read"), before);
        assert!(SiteApp::configured(&SiteActions::default(), &site("b")).is_none());
    }
}
