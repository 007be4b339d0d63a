//! Post-failover checks run by the leader (the guide's "Failover Check").
//! Each returns a structured [`Check`] for the failover record; a failed
//! one makes the failover "completed with failed checks"
//! (`palisade_core::executor::outcome`).

use std::time::Duration;

use palisade_core::observe::Reachability;
use palisade_core::Check;
use palisade_probe::elasticsearch::{EsHealth, EsProbe};
use palisade_probe::http::HttpProbe;

use crate::config::SearchConfig;

/// Elasticsearch of the new site is green or yellow.
pub async fn search_health(search: &SearchConfig) -> Check {
    let name = format!("elasticsearch at {} green or yellow", search.site);
    let probe = match EsProbe::new(&search.url, Duration::from_secs(5), search.auth.clone()) {
        Ok(p) => p,
        Err(e) => return Check::fail(name, e.to_string()),
    };
    // A freshly failed-over cluster may take a moment to report; a few tries.
    let mut last = String::new();
    for _ in 0..5 {
        let o = probe.probe().await;
        if o.is_serving() {
            let colour = match o.status {
                Some(EsHealth::Green) => "green",
                _ => "yellow",
            };
            return Check::pass(
                name,
                format!("{colour} ({} nodes)", o.number_of_nodes.unwrap_or(0)),
            );
        }
        last = match (&o.reachability, o.status) {
            (Reachability::Down { class, detail }, _) => format!("{}: {detail}", class.as_str()),
            (_, s) => format!("status {s:?}"),
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Check::fail(name, last)
}

/// An HTTP GET answers with `expect` (or any 2xx).
pub async fn http(name: &str, url: &str, expect: Option<u16>, timeout: Duration) -> Check {
    let probe = match HttpProbe::new(url, timeout, expect) {
        Ok(p) => p,
        Err(e) => return Check::fail(name, e.to_string()),
    };
    let mut last = String::new();
    for _ in 0..3 {
        let o = probe.probe().await;
        if o.reachability.is_up() {
            return Check::pass(
                name,
                format!(
                    "{url} answered {}",
                    o.status.map(|s| s.to_string()).unwrap_or_default()
                ),
            );
        }
        last = match (&o.reachability, o.status) {
            (_, Some(s)) => format!("HTTP {s}"),
            (Reachability::Down { class, detail }, None) => format!("{}: {detail}", class.as_str()),
            _ => String::new(),
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Check::fail(name, format!("{url}: {last}"))
}
