//! The rest of each data site's stack, beside its database server: the
//! application server's `threatconnect.xml`, Elasticsearch, and (when
//! `haproxy` is installed) the front door; and the `[[app]]`,
//! `[[elasticsearch]]`, `[[front_door]]` and `[[check]]` sections that
//! hand them to the witnesses.
//!
//! What is real and what stands in:
//! * The app config files are real files in the guide's shape, edited by
//!   the witnesses' real code (`palisade_actions::monitors`).
//! * The app itself is not installed: its `restart_command` appends a line
//!   to `site-X/app-restarts.log`, standing in for `systemctl restart
//!   threatconnect`.
//! * Elasticsearch cannot be installed here: each site gets a **test
//!   double** of its REST API (`palisade_testkit::es_double`), probed and
//!   checked by palisade's production client code.
//! * HAProxy is the real one ([`crate::haproxy`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use palisade_actions::monitors::{read_monitors_enabled, read_property};
use palisade_testkit::es_double::EsDouble;
use palisade_testkit::wait_for;
use serde::Serialize;

use crate::haproxy::Haproxy;
use crate::pair::DbPair;
use crate::report::Progress;
use crate::Db;

/// The data sites, in order.
pub const SITES: [&str; 2] = ["a", "b"];
/// The property of `threatconnect.xml` that holds the Elasticsearch hosts.
const ES_PROPERTY: &str = "elasticsearchHosts";
/// What the apps' `restart_command` stands in for.
pub const REAL_RESTART: &str = "systemctl restart threatconnect";

/// A site's `threatconnect.xml`, in the shape the guide describes (a
/// Spring `<beans>` file whose `<property name="monitorsEnabled" …/>` says
/// whether this app server runs jobs). `db_port` is its site's database.
fn threatconnect_xml(site: &str, monitors: bool, es_hosts: &str, db_port: u16) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- ThreatConnect application server settings, site {site} (written by `palisade demo`).
     Exactly one application server may have monitorsEnabled="true" (HA/DR guide):
     palisade changes only that value and elasticsearchHosts, byte for byte. -->
<beans xmlns="http://www.springframework.org/schema/beans"
       xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
       xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans.xsd">
  <bean id="appSettings" class="com.threatconnect.app.config.AppSettings">
    <property name="dbHost" value="127.0.0.1"/>
    <property name="dbPort" value="{db_port}"/>
    <property name="monitorsEnabled" value="{monitors}"/>
    <property name="{ES_PROPERTY}" value="{es_hosts}"/>
  </bean>
</beans>
"#
    )
}

/// One `[[app]]` (docs/configuration.md).
#[derive(Serialize)]
struct App {
    site: &'static str,
    config_file: PathBuf,
    restart_command: Vec<String>,
    es_property: &'static str,
}

/// One `[[elasticsearch]]`.
#[derive(Serialize)]
struct Search {
    site: &'static str,
    url: String,
    hosts: String,
}

/// One `[[front_door]]` of kind `haproxy`.
#[derive(Serialize)]
struct FrontDoor {
    kind: &'static str,
    runtime_api: PathBuf,
    backend: &'static str,
    servers: BTreeMap<&'static str, &'static str>,
}

/// One `[[check]]`.
#[derive(Serialize)]
struct Check {
    name: String,
    url: String,
    expect_status: u16,
}

/// The sections appended to every witness's config after the database's.
/// Empty lists are left out: a bare `front_door = []` after the
/// `[[database]]` tables would land inside the last of them.
#[derive(Serialize)]
struct Sections {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    app: Vec<App>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    elasticsearch: Vec<Search>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    front_door: Vec<FrontDoor>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    check: Vec<Check>,
}

/// One site's app, as its files say after the failover.
#[derive(Clone, Debug)]
pub struct AppReadBack {
    /// `a` or `b`.
    pub site: &'static str,
    /// Its `threatconnect.xml`, relative to the work directory.
    pub file: PathBuf,
    /// `monitorsEnabled` read back from the file; `None` when the property
    /// is missing.
    pub monitors_enabled: Option<bool>,
    /// `elasticsearchHosts` read back from the file.
    pub es_hosts: String,
    /// The site whose Elasticsearch (double) that is, if either.
    pub es_site: Option<&'static str>,
    /// Lines in its `app-restarts.log`: how often palisade restarted it.
    pub restarts: usize,
}

/// Everything of the sites' stacks the demo started: released by
/// [`Stack::shut_down`] whatever happens.
pub struct Stack {
    /// The demo's work directory (the cluster's); the apps' files live in
    /// `site-a/` and `site-b/` under it.
    dir: PathBuf,
    /// Each site's Elasticsearch API test double, in site order.
    search: Vec<(&'static str, EsDouble)>,
    /// The front door, when haproxy is installed (and started).
    haproxy: Option<Haproxy>,
}

impl Stack {
    /// Nothing started yet; files go under `dir`.
    pub fn new(dir: &Path) -> Stack {
        Stack {
            dir: dir.to_path_buf(),
            search: Vec::new(),
            haproxy: None,
        }
    }

    /// Starts one Elasticsearch API test double per data site.
    pub async fn start_search(&mut self) -> anyhow::Result<()> {
        for site in SITES {
            let double = EsDouble::start()
                .await
                .with_context(|| format!("starting site {site}'s Elasticsearch test double"))?;
            self.search.push((site, double));
        }
        Ok(())
    }

    fn double(&self, site: &str) -> anyhow::Result<&EsDouble> {
        self.search
            .iter()
            .find(|(s, _)| *s == site)
            .map(|(_, d)| d)
            .with_context(|| format!("site {site}'s Elasticsearch double is not started"))
    }

    /// Site `site`'s Elasticsearch base URL (`http://127.0.0.1:PORT`).
    pub fn search_url(&self, site: &str) -> anyhow::Result<String> {
        Ok(self.double(site)?.url())
    }

    /// What an app is pointed at to use site `site`'s Elasticsearch.
    pub fn search_hosts(&self, site: &str) -> anyhow::Result<String> {
        Ok(self.double(site)?.addr().to_string())
    }

    /// Site `site`'s `threatconnect.xml`.
    pub fn app_file(&self, site: &str) -> PathBuf {
        self.dir
            .join(format!("site-{site}"))
            .join("threatconnect.xml")
    }

    /// Where site `site`'s stand-in restart command appends a line.
    pub fn restart_log(&self, site: &str) -> PathBuf {
        self.dir
            .join(format!("site-{site}"))
            .join("app-restarts.log")
    }

    /// Writes both apps' `threatconnect.xml`: site a's runs jobs
    /// (`monitorsEnabled=true`), site b's does not; both use site a's
    /// Elasticsearch. Returns one line per file for the progress output.
    pub fn write_apps(&self, pair: &DbPair) -> anyhow::Result<Vec<String>> {
        let es_hosts = self.search_hosts("a")?;
        let mut lines = Vec::new();
        for (site, db_port) in SITES.map(|site| (site, pair.port(site))) {
            let file = self.app_file(site);
            let dir = file.parent().context("an app file has a directory")?;
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let monitors = site == "a";
            std::fs::write(&file, threatconnect_xml(site, monitors, &es_hosts, db_port))
                .with_context(|| format!("writing {}", file.display()))?;
            lines.push(format!(
                "{}: monitorsEnabled={monitors}, {ES_PROPERTY}={es_hosts} (site a's)",
                self.relative(&file).display()
            ));
        }
        Ok(lines)
    }

    /// Starts HAProxy in front of `pair` and puts site b's server in
    /// maintenance. Returns the backend's state, one line per server.
    pub async fn start_haproxy(
        &mut self,
        bin: &Path,
        pair: &DbPair,
    ) -> anyhow::Result<Vec<String>> {
        let db: Db = pair.db();
        let h = Haproxy::start(bin, &self.dir, db, pair.port("a"), pair.port("b")).await?;
        self.haproxy.insert(h).prepare().await
    }

    /// HAProxy's frontend port, when it runs.
    pub fn front_door_port(&self) -> Option<u16> {
        self.haproxy.as_ref().map(Haproxy::frontend_port)
    }

    /// HAProxy's runtime API socket, when it runs.
    pub fn haproxy_socket(&self) -> Option<&Path> {
        self.haproxy.as_ref().map(Haproxy::socket)
    }

    /// The name of the check the demo adds with `[[check]]`.
    pub fn check_name() -> &'static str {
        "search API of the new site"
    }

    /// The `[[app]]`, `[[elasticsearch]]`, `[[front_door]]` (with HAProxy)
    /// and `[[check]]` sections, as TOML.
    pub fn sections(&self) -> anyhow::Result<String> {
        let mut sections = Sections {
            app: Vec::new(),
            elasticsearch: Vec::new(),
            front_door: Vec::new(),
            check: vec![Check {
                name: Stack::check_name().into(),
                url: format!("{}/_cluster/health", self.search_url("b")?),
                expect_status: 200,
            }],
        };
        for site in SITES {
            let log = self.restart_log(site);
            sections.app.push(App {
                site,
                config_file: self.app_file(site),
                // Stands in for `systemctl restart threatconnect`; the path
                // goes in as an argument, so no quoting can break it.
                restart_command: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "echo restarted >> \"$1\"".into(),
                    "sh".into(),
                    log.to_string_lossy().into_owned(),
                ],
                es_property: ES_PROPERTY,
            });
            sections.elasticsearch.push(Search {
                site,
                url: self.search_url(site)?,
                hosts: self.search_hosts(site)?,
            });
        }
        if let Some(h) = &self.haproxy {
            sections.front_door.push(FrontDoor {
                kind: "haproxy",
                runtime_api: h.socket().to_path_buf(),
                backend: crate::haproxy::BACKEND,
                servers: h.servers().into_iter().collect(),
            });
        }
        toml::to_string(&sections).context("writing the site stack's sections")
    }

    /// Polls site `site`'s `threatconnect.xml` until `monitorsEnabled`
    /// reads `want`; fails after `timeout` with what it last read.
    pub async fn wait_monitors(
        &self,
        site: &str,
        want: bool,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let file = self.app_file(site);
        let what = format!("{} to say monitorsEnabled={want}", file.display());
        wait_for(&what, timeout, async || {
            match read_monitors_enabled(&file) {
                Ok(Some(v)) if v == want => Ok(()),
                Ok(Some(v)) => Err(format!("monitorsEnabled={v}")),
                Ok(None) => Err("monitorsEnabled absent".to_string()),
                Err(e) => Err(format!("unreadable: {e}")),
            }
        })
        .await
    }

    /// Both apps as their files say now.
    pub fn read_back(&self) -> anyhow::Result<Vec<AppReadBack>> {
        let mut apps = Vec::new();
        for site in SITES {
            let file = self.app_file(site);
            let monitors_enabled = read_monitors_enabled(&file)
                .with_context(|| format!("reading monitorsEnabled back from {}", file.display()))?;
            let es_hosts = read_property(&file, ES_PROPERTY)
                .with_context(|| format!("reading {ES_PROPERTY} back from {}", file.display()))?;
            let mut es_site = None;
            for s in SITES {
                if self.search_hosts(s)? == es_hosts {
                    es_site = Some(s);
                }
            }
            let log = self.restart_log(site);
            let restarts = match std::fs::read_to_string(&log) {
                Ok(text) => text.lines().count(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                Err(e) => return Err(e).with_context(|| format!("reading {}", log.display())),
            };
            apps.push(AppReadBack {
                site,
                file: self.relative(&file),
                monitors_enabled,
                es_hosts,
                es_site,
                restarts,
            });
        }
        Ok(apps)
    }

    /// `path` relative to the work directory, for short output lines.
    fn relative(&self, path: &Path) -> PathBuf {
        path.strip_prefix(&self.dir).unwrap_or(path).to_path_buf()
    }

    /// Kills HAProxy and stops the Elasticsearch doubles.
    pub async fn shut_down(self, p: &Progress) {
        if let Some(h) = self.haproxy {
            h.stop(p);
        }
        let doubles = self.search.len();
        for (_, double) in self.search {
            double.shutdown().await;
        }
        if doubles > 0 {
            p.detail(format!("stopped {doubles} Elasticsearch test double(s)"));
        }
    }
}
