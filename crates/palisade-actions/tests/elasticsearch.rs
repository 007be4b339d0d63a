//! Elasticsearch failover actions: CCR follower promotion against the ES API
//! **test double** (`palisade_testkit::es_double`; no real Elasticsearch
//! can be installed on the build machines), including idempotent re-runs
//! and a run resumed after dying half-way; and repointing the app's ES
//! hosts in an XML property and in a key=value file.

use std::fs;
use std::time::Duration;

use palisade_actions::atomic_file::backup_path;
use palisade_actions::elasticsearch::{
    read_hosts, repoint_hosts, CcrClient, CcrError, CcrStep, EsHostsTarget, StepOutcome,
};
use palisade_actions::monitors::FlipOutcome;
use palisade_actions::retry::RetryPolicy;
use palisade_testkit::es_double::{EsDouble, IndexState};

fn client(url: &str) -> CcrClient {
    CcrClient::new(url, Duration::from_secs(2), None)
        .expect("client")
        .with_retry(RetryPolicy {
            attempts: 3,
            initial_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            jitter: false,
        })
}

fn promoted() -> IndexState {
    IndexState {
        follower: false,
        following: false,
        open: true,
    }
}

#[tokio::test]
async fn promotes_followers_and_reruns_are_no_ops() {
    let es = EsDouble::start().await.expect("start ES double");
    es.add_follower("tc-indicators");
    es.add_follower("tc-groups");
    let ccr = client(&es.url());
    let indices = vec!["tc-indicators".to_string(), "tc-groups".to_string()];

    eprintln!("--- step: first promotion");
    let out = ccr.promote_followers(&indices).await.expect("promote");
    for p in &out {
        assert!(p.changed());
        assert!(
            p.steps.iter().all(|(_, o)| *o == StepOutcome::Done),
            "{p:?}"
        );
    }
    assert!(es.followers().is_empty());
    assert_eq!(es.index("tc-indicators"), Some(promoted()));
    assert_eq!(
        es.requests(),
        vec![
            "POST /tc-indicators/_ccr/pause_follow",
            "POST /tc-indicators/_close",
            "POST /tc-indicators/_ccr/unfollow",
            "POST /tc-indicators/_open",
            "POST /tc-groups/_ccr/pause_follow",
            "POST /tc-groups/_close",
            "POST /tc-groups/_ccr/unfollow",
            "POST /tc-groups/_open",
        ]
    );

    eprintln!("--- step: re-run (a new leader resuming the step)");
    let again = ccr.promote_followers(&indices).await.expect("re-run");
    for p in &again {
        assert!(!p.changed(), "{p:?}");
        assert!(matches!(
            p.steps[0],
            (CcrStep::PauseFollow, StepOutcome::AlreadyDone { .. })
        ));
        assert_eq!(p.steps[1], (CcrStep::Close, StepOutcome::Skipped));
        assert_eq!(p.steps[2], (CcrStep::Unfollow, StepOutcome::Skipped));
        assert_eq!(p.steps[3], (CcrStep::Open, StepOutcome::Done));
    }
    assert_eq!(es.index("tc-groups"), Some(promoted()));
    es.shutdown().await;
}

#[tokio::test]
async fn a_run_that_died_half_way_is_completed() {
    let es = EsDouble::start().await.expect("start ES double");
    es.add_follower("paused-only");
    es.add_follower("closed-unfollowed");
    let ccr = client(&es.url());
    // Simulate an earlier leader that died: one index after pause_follow,
    // the other after unfollow (closed, no longer a follower).
    let raw = reqwest::Client::new();
    for call in [
        "paused-only/_ccr/pause_follow",
        "closed-unfollowed/_ccr/pause_follow",
        "closed-unfollowed/_close",
        "closed-unfollowed/_ccr/unfollow",
    ] {
        let r = raw
            .post(format!("{}/{call}", es.url()))
            .send()
            .await
            .expect("raw call");
        assert!(r.status().is_success(), "{call}: {}", r.status());
    }

    let p = ccr.promote_follower("paused-only").await.expect("resume");
    assert!(
        matches!(&p.steps[0], (CcrStep::PauseFollow, StepOutcome::AlreadyDone { reason }) if reason.contains("no shard follow tasks")),
        "{p:?}"
    );
    assert_eq!(p.steps[2], (CcrStep::Unfollow, StepOutcome::Done));
    assert_eq!(es.index("paused-only"), Some(promoted()));

    let p = ccr
        .promote_follower("closed-unfollowed")
        .await
        .expect("resume");
    assert_eq!(p.steps[3], (CcrStep::Open, StepOutcome::Done));
    assert_eq!(es.index("closed-unfollowed"), Some(promoted()), "reopened");
    es.shutdown().await;
}

#[tokio::test]
async fn transient_errors_are_retried_and_a_missing_index_is_fatal() {
    let es = EsDouble::start().await.expect("start ES double");
    es.add_follower("tc-indicators");
    let ccr = client(&es.url());
    es.fail_next_ccr_calls(2);
    let p = ccr
        .promote_follower("tc-indicators")
        .await
        .expect("retried through 503s");
    assert!(p.changed());
    assert_eq!(
        es.requests().len(),
        6,
        "two failed attempts then four calls"
    );

    let err = ccr
        .promote_follower("no-such-index")
        .await
        .expect_err("404");
    assert!(
        matches!(&err, CcrError::Api { status: 404, error_type, .. } if error_type == "index_not_found_exception"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("/no-such-index/_ccr/pause_follow"),
        "{err}"
    );
    assert!(!err.is_retryable());

    es.set_health(palisade_testkit::es_double::HealthMode::Dead)
        .await
        .expect("kill");
    let err = ccr
        .promote_follower("tc-indicators")
        .await
        .expect_err("dead");
    assert!(matches!(err, CcrError::Unreachable { .. }), "{err:?}");
    assert!(err.is_retryable());
    es.shutdown().await;
}

const XML: &str = "<?xml version=\"1.0\"?>\r\n<beans>\r\n  <!-- <property name=\"elasticsearchHosts\" value=\"http://old:9200\"/> -->\r\n  <bean id=\"appSettings\" class=\"com.threatconnect.app.AppSettings\">\r\n    <property name=\"elasticsearchHosts\"\r\n              value='http://es-a1:9200,http://es-a2:9200'/>\r\n    <property name=\"monitorsEnabled\" value=\"true\"/>\r\n  </bean>\r\n</beans>\r\n";

#[test]
fn repoints_hosts_in_an_xml_property() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("threatconnect.xml");
    fs::write(&path, XML).expect("seed");
    let target = EsHostsTarget::XmlProperty {
        path: path.clone(),
        property: "elasticsearchHosts".into(),
    };
    let b_hosts = "http://es-b1:9200,http://es-b2:9200";
    let out = repoint_hosts(&target, b_hosts).expect("repoint");
    assert!(out.changed());
    assert_eq!(
        fs::read_to_string(&path).expect("read"),
        XML.replace("http://es-a1:9200,http://es-a2:9200", b_hosts)
    );
    assert_eq!(fs::read_to_string(backup_path(&path)).expect("bak"), XML);
    assert_eq!(read_hosts(&target).expect("read"), b_hosts);
    assert_eq!(
        repoint_hosts(&target, b_hosts).expect("again"),
        FlipOutcome::Unchanged {
            value: b_hosts.into()
        }
    );
}

const PROPS: &str = "# Elasticsearch connection\r\n#es.hosts=http://commented-out:9200\r\n\r\nes.hosts = http://es-a1:9200,http://es-a2:9200\r\nes.timeout:30s\r\n  ! legacy\r\nother=keep me   \r\n";

#[test]
fn repoints_hosts_in_a_key_value_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.properties");
    fs::write(&path, PROPS).expect("seed");
    let target = EsHostsTarget::KeyValue {
        path: path.clone(),
        key: "es.hosts".into(),
    };
    let b_hosts = "http://es-b1:9200";
    let out = repoint_hosts(&target, b_hosts).expect("repoint");
    assert!(
        matches!(&out, FlipOutcome::Changed { from, .. } if from == "http://es-a1:9200,http://es-a2:9200"),
        "{out:?}"
    );
    assert_eq!(
        fs::read_to_string(&path).expect("read"),
        PROPS.replace("http://es-a1:9200,http://es-a2:9200", b_hosts)
    );
    assert_eq!(fs::read_to_string(backup_path(&path)).expect("bak"), PROPS);
    let mtime = fs::metadata(&path)
        .expect("stat")
        .modified()
        .expect("mtime");
    assert!(!repoint_hosts(&target, b_hosts).expect("again").changed());
    assert_eq!(
        fs::metadata(&path)
            .expect("stat")
            .modified()
            .expect("mtime"),
        mtime
    );

    // Missing key and a duplicate are refused, file untouched.
    let before = fs::read_to_string(&path).expect("read");
    let missing = EsHostsTarget::KeyValue {
        path: path.clone(),
        key: "es.nodes".into(),
    };
    let err = repoint_hosts(&missing, b_hosts).expect_err("missing");
    assert!(
        err.to_string().contains("app.properties") && err.to_string().contains("es.nodes"),
        "{err}"
    );
    fs::write(&path, format!("{before}es.hosts=x\n")).expect("dup");
    let err = repoint_hosts(&target, "http://es-b2:9200").expect_err("duplicate");
    assert!(err.to_string().contains("2 lines ([4, 8])"), "{err}");
    let err = repoint_hosts(&target, "a\nb").expect_err("newline");
    assert!(err.to_string().contains("may not contain"), "{err}");
}
