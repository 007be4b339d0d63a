//! The HAProxy repointer against a real `haproxy` (Debian package) in TCP
//! mode, started by each test on loopback with its runtime API on a unix
//! socket in a temp dir (and a TCP one), in front of two tiny TCP servers
//! answering "a" and "b".
//!
//! Without `haproxy` installed the tests print SKIP and pass, unless
//! `CI=true`, where a missing haproxy is a failure.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use palisade_actions::haproxy::{
    AdminState, HaproxyClient, HaproxyEndpoint, HaproxyError, ServerChange,
};
use palisade_actions::retry::RetryPolicy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn haproxy_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .map(|d| d.join("haproxy"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("haproxy is not installed, and CI=true: the HAProxy tests must run in CI");
        }
        eprintln!(
            "SKIP: haproxy is not installed (apt-get install -y haproxy); HAProxy tests not run"
        );
    }
    found
}

/// A tiny TCP server answering `reply` to every connection.
async fn reply_server(reply: &'static str) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = s.write_all(reply.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (port, task)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// One haproxy process, killed on drop.
struct Haproxy {
    child: Child,
    _dir: tempfile::TempDir,
    socket: PathBuf,
    stats_tcp: u16,
    frontend: u16,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_haproxy(bin: &PathBuf, port_a: u16, port_b: u16) -> Haproxy {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("admin.sock");
    let frontend = free_port();
    let stats_tcp = free_port();
    let cfg = format!(
        "global\n\
         \x20   stats socket {sock} mode 600 level admin\n\
         \x20   stats socket ipv4@127.0.0.1:{stats_tcp} level admin\n\
         defaults\n\
         \x20   mode tcp\n\
         \x20   timeout connect 1s\n\
         \x20   timeout client 5s\n\
         \x20   timeout server 5s\n\
         frontend front_door\n\
         \x20   bind 127.0.0.1:{frontend}\n\
         \x20   default_backend app\n\
         backend app\n\
         \x20   balance roundrobin\n\
         \x20   server a 127.0.0.1:{port_a}\n\
         \x20   server b 127.0.0.1:{port_b}\n",
        sock = socket.display()
    );
    let cfg_path = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg_path, cfg).expect("write cfg");
    let child = Command::new(bin)
        .arg("-f")
        .arg(&cfg_path)
        .arg("-db")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // haproxy logs state changes on stderr; keep them in the temp dir
        // rather than in the middle of the test output.
        .stderr(std::fs::File::create(dir.path().join("haproxy.log")).expect("log file"))
        .spawn()
        .expect("start haproxy");
    let h = Haproxy {
        child,
        _dir: dir,
        socket,
        stats_tcp,
        frontend,
    };
    // Wait, with a deadline and a reason, until the runtime API answers.
    let client =
        HaproxyClient::new(HaproxyEndpoint::Unix(h.socket.clone())).with_retry(RetryPolicy::once());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if client.command("show info").await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "haproxy runtime API never came up at {}",
            h.socket.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h
}

/// Opens `n` fresh connections through the front door and returns what
/// each got back.
async fn clients(frontend: u16, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(("127.0.0.1", frontend))
            .await
            .expect("connect front door");
        let mut buf = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut buf)).await;
        out.push(buf);
    }
    out
}

fn unix_client(h: &Haproxy) -> HaproxyClient {
    HaproxyClient::new(HaproxyEndpoint::Unix(h.socket.clone()))
}

#[tokio::test]
async fn route_to_moves_every_client_and_is_idempotent() {
    let Some(bin) = haproxy_binary() else { return };
    let (pa, _ta) = reply_server("a").await;
    let (pb, _tb) = reply_server("b").await;
    let h = start_haproxy(&bin, pa, pb).await;
    let api = unix_client(&h);

    eprintln!("--- step: both servers ready, round robin reaches both");
    let seen = clients(h.frontend, 10).await;
    assert!(
        seen.contains(&"a".to_string()) && seen.contains(&"b".to_string()),
        "{seen:?}"
    );

    eprintln!("--- step: route_to(b)");
    let out = api.route_to("app", "b", &["a"]).await.expect("route to b");
    assert_eq!(
        out.changes,
        vec![ServerChange {
            server: "a".into(),
            from: AdminState::Ready,
            to: AdminState::Maint
        }]
    );
    let seen = clients(h.frontend, 50).await;
    assert!(
        seen.iter().all(|r| r == "b"),
        "only b after route_to(b): {seen:?}"
    );

    eprintln!("--- step: route_to(b) again is a no-op");
    let again = api
        .route_to("app", "b", &["a"])
        .await
        .expect("route to b again");
    assert!(!again.changed(), "{again:?}");
    let seen = clients(h.frontend, 20).await;
    assert!(seen.iter().all(|r| r == "b"), "{seen:?}");

    eprintln!("--- step: failback, route_to(a)");
    let back = api.route_to("app", "a", &["b"]).await.expect("route to a");
    assert_eq!(
        back.changes,
        vec![
            ServerChange {
                server: "b".into(),
                from: AdminState::Ready,
                to: AdminState::Maint
            },
            ServerChange {
                server: "a".into(),
                from: AdminState::Maint,
                to: AdminState::Ready
            },
        ]
    );
    let seen = clients(h.frontend, 50).await;
    assert!(
        seen.iter().all(|r| r == "a"),
        "only a after failback: {seen:?}"
    );

    eprintln!("--- step: a drained server is made ready again");
    api.set_server_state("app", "a", AdminState::Drain)
        .await
        .expect("drain a");
    let s = api.show_servers_state("app").await.expect("state");
    assert_eq!(
        s.iter().find(|s| s.name == "a").map(|s| s.admin()),
        Some(AdminState::Drain)
    );
    let out = api.route_to("app", "a", &["b"]).await.expect("route to a");
    assert_eq!(
        out.changes,
        vec![ServerChange {
            server: "a".into(),
            from: AdminState::Drain,
            to: AdminState::Ready
        }]
    );
}

#[tokio::test]
async fn route_to_closes_established_sessions_to_the_old_server() {
    let Some(bin) = haproxy_binary() else { return };
    // A server that holds connections open (a database session).
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let pa = listener.local_addr().expect("addr").port();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let (pb, _tb) = reply_server("b").await;
    let h = start_haproxy(&bin, pa, pb).await;
    let api = unix_client(&h);
    api.route_to("app", "a", &["b"]).await.expect("route to a");
    let mut session = TcpStream::connect(("127.0.0.1", h.frontend))
        .await
        .expect("connect");
    // Let haproxy connect it through to a.
    tokio::time::sleep(Duration::from_millis(100)).await;

    api.route_to("app", "b", &["a"]).await.expect("route to b");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), session.read(&mut buf))
        .await
        .expect("the old session is closed, not left hanging");
    assert_eq!(n.unwrap_or(0), 0, "old session closed");
}

#[tokio::test]
async fn set_server_addr_is_applied_verified_and_idempotent() {
    let Some(bin) = haproxy_binary() else { return };
    let (pa, _ta) = reply_server("a").await;
    let (pb, _tb) = reply_server("b").await;
    let (pc, _tc) = reply_server("c").await;
    let h = start_haproxy(&bin, pa, pb).await;
    let api = unix_client(&h);
    api.route_to("app", "b", &["a"]).await.expect("route to b");

    let changed = api
        .set_server_addr("app", "b", "127.0.0.1".parse().expect("ip"), Some(pc))
        .await
        .expect("set addr");
    assert!(changed);
    let state = api.show_servers_state("app").await.expect("state");
    let b = state.iter().find(|s| s.name == "b").expect("b listed");
    assert_eq!((b.addr.as_str(), b.port), ("127.0.0.1", Some(pc)));
    let seen = clients(h.frontend, 20).await;
    assert!(seen.iter().all(|r| r == "c"), "{seen:?}");

    let again = api
        .set_server_addr("app", "b", "127.0.0.1".parse().expect("ip"), Some(pc))
        .await
        .expect("set addr again");
    assert!(!again, "same address again is no change");
}

#[tokio::test]
async fn unknown_backend_or_server_is_a_clear_fatal_error() {
    let Some(bin) = haproxy_binary() else { return };
    let (pa, _ta) = reply_server("a").await;
    let (pb, _tb) = reply_server("b").await;
    let h = start_haproxy(&bin, pa, pb).await;
    let api = unix_client(&h);

    let err = api
        .route_to("nope", "b", &["a"])
        .await
        .expect_err("no backend");
    assert!(matches!(err, HaproxyError::Refused { .. }), "{err:?}");
    assert!(err.to_string().contains("backend nope"), "{err}");
    assert!(!err.is_retryable());

    let err = api
        .set_server_state("nope", "a", AdminState::Maint)
        .await
        .expect_err("no backend");
    assert!(err.to_string().contains("No such backend"), "{err}");

    let err = api
        .route_to("app", "zz", &["a"])
        .await
        .expect_err("no server");
    assert!(
        matches!(&err, HaproxyError::UnknownServer { server, .. } if server == "zz"),
        "{err:?}"
    );
    assert!(err.to_string().contains("app"), "{err}");

    let err = api
        .set_server_state("app", "zz", AdminState::Ready)
        .await
        .expect_err("no server");
    assert!(
        err.to_string().contains("server app/zz") && err.to_string().contains("No such server"),
        "{err}"
    );

    let err = api
        .route_to("app", "b;shutdown", &[])
        .await
        .expect_err("injection");
    assert!(matches!(err, HaproxyError::InvalidName { .. }), "{err:?}");

    // Nothing was changed by the failed calls.
    let state = api.show_servers_state("app").await.expect("state");
    assert!(state.iter().all(|s| s.is_routable()), "{state:?}");
}

#[tokio::test]
async fn tcp_runtime_api_endpoint_works_too() {
    let Some(bin) = haproxy_binary() else { return };
    let (pa, _ta) = reply_server("a").await;
    let (pb, _tb) = reply_server("b").await;
    let h = start_haproxy(&bin, pa, pb).await;
    let endpoint: HaproxyEndpoint = format!("127.0.0.1:{}", h.stats_tcp)
        .parse()
        .expect("endpoint");
    let api = HaproxyClient::new(endpoint);
    let out = api
        .route_to("app", "a", &["b"])
        .await
        .expect("route over tcp");
    assert!(out.changed());
    assert_eq!(out.servers.len(), 2);
}

#[tokio::test]
async fn socket_errors_are_retried_then_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = HaproxyClient::new(HaproxyEndpoint::Unix(dir.path().join("absent.sock"))).with_retry(
        RetryPolicy {
            attempts: 3,
            initial_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(10),
            jitter: false,
        },
    );
    let started = Instant::now();
    let err = api.show_servers_state("app").await.expect_err("no socket");
    assert!(matches!(err, HaproxyError::Socket { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("absent.sock"), "{err}");
    assert!(
        started.elapsed() >= Duration::from_millis(15),
        "two backoff delays"
    );
}

#[tokio::test]
async fn route_to_duration() {
    let Some(bin) = haproxy_binary() else { return };
    let (pa, _ta) = reply_server("a").await;
    let (pb, _tb) = reply_server("b").await;
    let h = start_haproxy(&bin, pa, pb).await;
    let api = unix_client(&h);
    let mut changing = Vec::new();
    let mut noop = Vec::new();
    for i in 0..20 {
        let (to, from) = if i % 2 == 0 { ("b", "a") } else { ("a", "b") };
        let t = Instant::now();
        let out = api.route_to("app", to, &[from]).await.expect("route");
        changing.push(t.elapsed());
        assert!(out.changed());
        let t = Instant::now();
        let out = api.route_to("app", to, &[from]).await.expect("route again");
        noop.push(t.elapsed());
        assert!(!out.changed());
    }
    changing.sort();
    noop.sort();
    eprintln!(
        "TIMING haproxy route_to over unix socket (20 runs): changing p50 {:?} max {:?}; no-op p50 {:?}",
        changing[changing.len() / 2],
        changing[changing.len() - 1],
        noop[noop.len() / 2]
    );
    assert!(changing[changing.len() / 2] < Duration::from_millis(500));
}
