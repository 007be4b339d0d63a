//! The production Elasticsearch probe against the ES API **test double**
//! (`palisade_testkit::es_double`; no real Elasticsearch can be installed on
//! the build machines): green, yellow, red, slow (timeout) and dead
//! (refused), and coming back.

use std::time::Duration;

use palisade_core::observe::{ErrorClass, Reachability};
use palisade_probe::elasticsearch::{EsAuth, EsHealth, EsProbe};
use palisade_testkit::es_double::{EsDouble, HealthMode};

fn probe(url: &str, timeout: Duration) -> EsProbe {
    EsProbe::new(url, timeout, None).expect("probe config")
}

#[tokio::test]
async fn reports_the_clusters_colour_and_nodes() {
    let es = EsDouble::start().await.expect("start ES double");
    let p = probe(&es.url(), Duration::from_secs(2));

    for (mode, colour) in [
        (HealthMode::Green, EsHealth::Green),
        (HealthMode::Yellow, EsHealth::Yellow),
        (HealthMode::Red, EsHealth::Red),
    ] {
        es.set_health(mode).await.expect("set health");
        let o = p.probe().await;
        assert_eq!(o.reachability, Reachability::Up, "{mode:?}: {o:?}");
        assert_eq!(o.status, Some(colour));
        assert_eq!(o.number_of_nodes, Some(3));
        assert_eq!(o.timed_out, Some(false));
        assert_eq!(o.is_serving(), colour != EsHealth::Red, "{mode:?}");
    }
    es.set_number_of_nodes(1);
    assert_eq!(p.probe().await.number_of_nodes, Some(1));
    assert!(es.requests().iter().all(|r| r == "GET /_cluster/health"));

    // Observations are what witnesses send to the leader: JSON round trip.
    let o = p.probe().await;
    let json = serde_json::to_string(&o).expect("serialise");
    assert!(json.contains("\"status\":\"red\""), "{json}");
    let back: palisade_probe::elasticsearch::EsObservation =
        serde_json::from_str(&json).expect("deserialise");
    assert_eq!(back, o);
    es.shutdown().await;
}

#[tokio::test]
async fn a_slow_cluster_is_a_timeout() {
    let es = EsDouble::start().await.expect("start ES double");
    let p = probe(&es.url(), Duration::from_millis(300));
    es.set_health(HealthMode::Slow(Duration::from_secs(3)))
        .await
        .expect("set slow");
    let o = p.probe().await;
    assert!(
        matches!(
            &o.reachability,
            Reachability::Down {
                class: ErrorClass::Timeout,
                ..
            }
        ),
        "{o:?}"
    );
    assert_eq!(o.status, None, "unknown, not a guess");
    assert!(
        o.latency_ms >= 300 && o.latency_ms < 2000,
        "{}",
        o.latency_ms
    );
    es.shutdown().await;
}

#[tokio::test]
async fn a_dead_cluster_is_refused_and_recovers() {
    let es = EsDouble::start().await.expect("start ES double");
    let p = probe(&es.url(), Duration::from_secs(1));
    // A first probe leaves a pooled keep-alive connection behind: death must
    // be seen through it too.
    assert!(p.probe().await.reachability.is_up());

    es.set_health(HealthMode::Dead).await.expect("kill");
    let o = p.probe().await;
    assert!(
        matches!(
            &o.reachability,
            Reachability::Down {
                class: ErrorClass::Refused,
                ..
            }
        ),
        "{o:?}"
    );
    assert_eq!((o.status, o.number_of_nodes), (None, None));

    es.set_health(HealthMode::Yellow).await.expect("revive");
    let o = p.probe().await;
    assert_eq!(o.status, Some(EsHealth::Yellow), "{o:?}");
    es.shutdown().await;
}

#[tokio::test]
async fn nothing_listening_is_refused_and_basic_auth_is_accepted() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let o = probe(&format!("http://127.0.0.1:{port}"), Duration::from_secs(1))
        .probe()
        .await;
    assert!(
        matches!(
            &o.reachability,
            Reachability::Down {
                class: ErrorClass::Refused,
                ..
            }
        ),
        "{o:?}"
    );

    let es = EsDouble::start().await.expect("start ES double");
    let auth = EsAuth {
        user: "palisade".into(),
        password: "pw".into(),
    };
    assert!(
        !format!("{auth:?}").contains("pw\""),
        "password not in Debug"
    );
    let p = EsProbe::new(&es.url(), Duration::from_secs(1), Some(auth)).expect("probe");
    assert!(p.probe().await.is_serving());
    es.shutdown().await;
}
