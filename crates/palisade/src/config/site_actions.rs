//! The `[[app]]`, `[[elasticsearch]]`, `[[front_door]]` and `[[check]]`
//! sections: what a failover moves besides the database (the guide's
//! "Failover" and "Failover Check" phases).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use palisade_core::secret::ClientTls;
use palisade_core::{Secret, SiteId};
use palisade_probe::elasticsearch::{EsAccess, EsAuth};
use serde::Deserialize;

use super::secrets::{client_tls, resolve, RawSecret, SecretKeys, TlsFiles};

/// One `[[app]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApp {
    site: String,
    config_file: PathBuf,
    restart_command: Option<Vec<String>>,
    command_timeout_ms: Option<u64>,
    health_url: Option<String>,
    es_property: Option<String>,
    es_file: Option<PathBuf>,
    es_key: Option<String>,
}

/// One `[[elasticsearch]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSearch {
    site: String,
    url: String,
    hosts: String,
    #[serde(default)]
    ccr_follower_indices: Vec<String>,
    username: Option<String>,
    password: Option<RawSecret>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    ca_file: Option<PathBuf>,
    client_cert_file: Option<PathBuf>,
    client_key_file: Option<PathBuf>,
}

/// One `[[front_door]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFrontDoor {
    kind: String,
    // haproxy
    runtime_api: Option<String>,
    backend: Option<String>,
    servers: Option<BTreeMap<String, String>>,
    // webhook
    url: Option<String>,
    secret: Option<RawSecret>,
    secret_file: Option<PathBuf>,
    secret_env: Option<String>,
    ca_file: Option<PathBuf>,
    client_cert_file: Option<PathBuf>,
    client_key_file: Option<PathBuf>,
    // config_file
    template: Option<PathBuf>,
    target: Option<PathBuf>,
    reload_command: Option<Vec<String>>,
    addresses: Option<BTreeMap<String, String>>,
    timeout_ms: Option<u64>,
}

/// One `[[check]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    name: String,
    url: String,
    expect_status: Option<u16>,
    timeout_ms: Option<u64>,
}

/// Where an app's Elasticsearch hosts are written.
#[derive(Debug, Clone, PartialEq)]
pub enum EsTarget {
    /// A `<property name=… value=…/>` in the app's `config_file`.
    XmlProperty(String),
    /// A `key=value` line in a properties file.
    KeyValue {
        /// The file.
        file: PathBuf,
        /// The key.
        key: String,
    },
}

/// A site's application server.
#[derive(Debug, Clone, PartialEq)]
pub struct AppConfig {
    /// Its site.
    pub site: SiteId,
    /// `threatconnect.xml`: holds `monitorsEnabled`.
    pub config_file: PathBuf,
    /// Run after a change of `monitorsEnabled` or of the ES hosts.
    pub restart_command: Option<Vec<String>>,
    /// Bound of the restart command.
    pub command_timeout: Duration,
    /// Checked after a failover (2xx = healthy).
    pub health_url: Option<String>,
    /// Where its Elasticsearch hosts are configured, if palisade repoints them.
    pub es_target: Option<EsTarget>,
}

/// A site's Elasticsearch.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchConfig {
    /// Its site.
    pub site: SiteId,
    /// Base URL every witness probes (`_cluster/health`).
    pub url: String,
    /// What the app is pointed at when this site is primary.
    pub hosts: String,
    /// Cross-cluster-replication follower indices to promote when the site
    /// takes over (empty: one stretched cluster, nothing to promote).
    pub ccr_follower_indices: Vec<String>,
    /// How palisade and the cluster authenticate each other: HTTP basic
    /// auth (`username`, `password*`), if the cluster needs it, and the TLS
    /// roots and client identity (`ca_file`, `client_cert_file`,
    /// `client_key_file`), for the probe and the CCR calls alike.
    pub auth: EsAccess,
}

/// A front door the leader repoints.
#[derive(Debug, Clone, PartialEq)]
pub enum FrontDoor {
    /// HAProxy runtime API: the site's server ready, the others in maint.
    Haproxy {
        /// `/path/to/socket`, `unix:/path` or `host:port`.
        runtime_api: String,
        /// The backend.
        backend: String,
        /// Server name by site.
        servers: BTreeMap<String, String>,
    },
    /// An HTTP webhook signed with HMAC-SHA256 (DNS APIs, chat, paging).
    Webhook {
        /// Where to POST.
        url: String,
        /// HMAC key.
        secret: Secret,
        /// Per attempt.
        timeout: Duration,
        /// CA bundle and client identity (`ca_file`, `client_cert_file`,
        /// `client_key_file`).
        tls: ClientTls,
    },
    /// A config file rendered from a template, then a reload command.
    ConfigFile {
        /// Template text, with `{{site}}`, `{{epoch}}`, `{{address}}`.
        template: PathBuf,
        /// The rendered file.
        target: PathBuf,
        /// Reload command (argv).
        reload_command: Option<Vec<String>>,
        /// `{{address}}` by site.
        addresses: BTreeMap<String, String>,
        /// Bound of the reload.
        timeout: Duration,
    },
}

/// An extra post-failover check.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheck {
    /// Its name in the failover record.
    pub name: String,
    /// What to GET; `{site}` is replaced by the new primary site.
    pub url: String,
    /// Expected status (default: any 2xx).
    pub expect_status: Option<u16>,
    /// Bound.
    pub timeout: Duration,
}

/// Everything a failover moves besides the database.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SiteActions {
    /// Application servers, by site.
    pub apps: Vec<AppConfig>,
    /// Elasticsearch per site.
    pub search: Vec<SearchConfig>,
    /// Front doors, in order.
    pub front_doors: Vec<FrontDoor>,
    /// Extra checks.
    pub checks: Vec<HttpCheck>,
}

impl SiteActions {
    /// The app at `site`.
    pub fn app(&self, site: &SiteId) -> Option<&AppConfig> {
        self.apps.iter().find(|a| &a.site == site)
    }

    /// The Elasticsearch at `site`.
    pub fn search_at(&self, site: &SiteId) -> Option<&SearchConfig> {
        self.search.iter().find(|s| &s.site == site)
    }
}

type Fail = (String, String);

fn fail(key: String, reason: impl Into<String>) -> Fail {
    (key, reason.into())
}

fn check_url(key: String, url: &str) -> Result<(), Fail> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(fail(
            key,
            format!("{url:?} must be an http:// or https:// URL"),
        ))
    }
}

fn check_argv(key: String, argv: &Option<Vec<String>>) -> Result<(), Fail> {
    match argv {
        Some(a) if a.is_empty() || a[0].trim().is_empty() => Err(fail(
            key,
            "must be a non-empty argv list, e.g. [\"systemctl\", \"restart\", \"threatconnect\"]",
        )),
        _ => Ok(()),
    }
}

/// Validates the sections; `sites` are the witnesses' sites, `db_sites` the
/// sites with a database.
pub(super) fn validate(
    apps: &[RawApp],
    search: &[RawSearch],
    doors: &[RawFrontDoor],
    checks: &[RawCheck],
    db_sites: &[String],
) -> Result<SiteActions, Fail> {
    let mut out = SiteActions::default();
    for (i, a) in apps.iter().enumerate() {
        let key = |f: &str| format!("app[{i}].{f}");
        if !db_sites.contains(&a.site) {
            return Err(fail(
                key("site"),
                format!(
                    "{:?} has no [[database]]; an app belongs to a data site ({})",
                    a.site,
                    db_sites.join(", ")
                ),
            ));
        }
        if apps[..i].iter().any(|o| o.site == a.site) {
            return Err(fail(
                key("site"),
                format!("site {:?} already has an app", a.site),
            ));
        }
        if !a.config_file.is_absolute() {
            return Err(fail(
                key("config_file"),
                format!("{} must be an absolute path", a.config_file.display()),
            ));
        }
        check_argv(key("restart_command"), &a.restart_command)?;
        if let Some(u) = &a.health_url {
            check_url(key("health_url"), u)?;
        }
        let es_target = match (&a.es_property, &a.es_file, &a.es_key) {
            (None, None, None) => None,
            (Some(p), None, None) => Some(EsTarget::XmlProperty(p.clone())),
            (None, Some(f), Some(k)) => Some(EsTarget::KeyValue { file: f.clone(), key: k.clone() }),
            _ => return Err(fail(key("es_property"), "set either es_property (an XML property of config_file) or es_file and es_key, not both")),
        };
        out.apps.push(AppConfig {
            site: SiteId(a.site.clone()),
            config_file: a.config_file.clone(),
            restart_command: a.restart_command.clone(),
            command_timeout: Duration::from_millis(a.command_timeout_ms.unwrap_or(120_000)),
            health_url: a.health_url.clone(),
            es_target,
        });
    }
    for (i, s) in search.iter().enumerate() {
        let key = |f: &str| format!("elasticsearch[{i}].{f}");
        if !db_sites.contains(&s.site) {
            return Err(fail(
                key("site"),
                format!("{:?} has no [[database]]", s.site),
            ));
        }
        check_url(key("url"), &s.url)?;
        if s.hosts.trim().is_empty() {
            return Err(fail(key("hosts"), "must not be empty"));
        }
        let password = resolve(
            &key("password"),
            SecretKeys {
                inline: s.password.as_ref(),
                file: s.password_file.as_ref(),
                env: s.password_env.as_ref(),
            },
        )?;
        let auth = match (&s.username, password) {
            (None, None) => None,
            (Some(user), Some(password)) => Some(EsAuth {
                user: user.clone(),
                password,
            }),
            (Some(_), None) => {
                return Err(fail(
                    key("password"),
                    "username needs password, password_file or password_env",
                ))
            }
            (None, Some(_)) => return Err(fail(key("username"), "required with a password")),
        };
        let tls = client_tls(
            &key,
            Some(&s.url),
            TlsFiles {
                ca_file: s.ca_file.as_ref(),
                client_cert_file: s.client_cert_file.as_ref(),
                client_key_file: s.client_key_file.as_ref(),
            },
        )?;
        out.search.push(SearchConfig {
            site: SiteId(s.site.clone()),
            url: s.url.clone(),
            hosts: s.hosts.clone(),
            ccr_follower_indices: s.ccr_follower_indices.clone(),
            auth: EsAccess { basic: auth, tls },
        });
    }
    for (i, d) in doors.iter().enumerate() {
        let key = |f: &str| format!("front_door[{i}].{f}");
        let need = |v: &Option<String>, f: &str| {
            v.clone()
                .ok_or_else(|| fail(key(f), format!("required for kind = {:?}", d.kind)))
        };
        let timeout = Duration::from_millis(d.timeout_ms.unwrap_or(10_000));
        if d.kind != "webhook" {
            let tls_keys = [
                ("ca_file", d.ca_file.is_some()),
                ("client_cert_file", d.client_cert_file.is_some()),
                ("client_key_file", d.client_key_file.is_some()),
            ];
            if let Some((k, _)) = tls_keys.iter().find(|(_, set)| *set) {
                return Err(fail(key(k), "only for kind = \"webhook\""));
            }
        }
        let door = match d.kind.as_str() {
            "haproxy" => {
                let runtime_api = need(&d.runtime_api, "runtime_api")?;
                runtime_api
                    .parse::<palisade_actions::haproxy::HaproxyEndpoint>()
                    .map_err(|e| fail(key("runtime_api"), e.to_string()))?;
                let servers = d.servers.clone().ok_or_else(|| fail(key("servers"), "required: server name by site, e.g. { a = \"app_a\", b = \"app_b\" }"))?;
                for s in db_sites {
                    if !servers.contains_key(s) {
                        return Err(fail(key("servers"), format!("no server for site {s:?}")));
                    }
                }
                FrontDoor::Haproxy { runtime_api, backend: need(&d.backend, "backend")?, servers }
            }
            "webhook" => {
                let url = need(&d.url, "url")?;
                check_url(key("url"), &url)?;
                let given = SecretKeys {
                    inline: d.secret.as_ref(),
                    file: d.secret_file.as_ref(),
                    env: d.secret_env.as_ref(),
                };
                let secret = resolve(&key("secret"), given)?.ok_or_else(|| {
                    fail(key("secret"), "required for kind = \"webhook\": give secret, secret_file or secret_env")
                })?;
                if secret.expose().len() < 16 {
                    return Err(fail(key("secret"), format!("{secret:?} is too short; use at least 16 characters")));
                }
                let tls = client_tls(
                    &key,
                    Some(&url),
                    TlsFiles {
                        ca_file: d.ca_file.as_ref(),
                        client_cert_file: d.client_cert_file.as_ref(),
                        client_key_file: d.client_key_file.as_ref(),
                    },
                )?;
                FrontDoor::Webhook { url, secret, timeout, tls }
            }
            "config_file" => {
                let template = d.template.clone().ok_or_else(|| fail(key("template"), "required for kind = \"config_file\""))?;
                let target = d.target.clone().ok_or_else(|| fail(key("target"), "required for kind = \"config_file\""))?;
                check_argv(key("reload_command"), &d.reload_command)?;
                FrontDoor::ConfigFile {
                    template,
                    target,
                    reload_command: d.reload_command.clone(),
                    addresses: d.addresses.clone().unwrap_or_default(),
                    timeout,
                }
            }
            other => return Err(fail(key("kind"), format!("{other:?} is not a front door kind; use \"haproxy\", \"webhook\" or \"config_file\""))),
        };
        out.front_doors.push(door);
    }
    for (i, c) in checks.iter().enumerate() {
        let key = |f: &str| format!("check[{i}].{f}");
        if c.name.trim().is_empty() {
            return Err(fail(key("name"), "must not be empty"));
        }
        check_url(key("url"), &c.url)?;
        out.checks.push(HttpCheck {
            name: c.name.clone(),
            url: c.url.clone(),
            expect_status: c.expect_status,
            timeout: Duration::from_millis(c.timeout_ms.unwrap_or(5000)),
        });
    }
    Ok(out)
}
