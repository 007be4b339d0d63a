//! The rest of a site's stack for tests and benches: a realistic
//! `threatconnect.xml`, and a real HAProxy in TCP mode in front of the two
//! PostgreSQL servers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A realistic `threatconnect.xml`: Spring beans, comments, odd spacing.
pub fn threatconnect_xml(monitors: bool, es_hosts: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<beans xmlns=\"http://www.springframework.org/schema/beans\">\n  <!-- <property name=\"monitorsEnabled\" value=\"true\"/> old setting -->\n  <bean id=\"settings\" class=\"com.threatconnect.Settings\">\n    <property name=\"dbHost\"   value=\"127.0.0.1\"/>\n    <property  value=\"{monitors}\" name=\"monitorsEnabled\" />\n    <property name=\"elasticsearchHosts\" value=\"{es_hosts}\"/>\n  </bean>\n</beans>\n"
    )
}

pub struct Haproxy {
    child: Child,
    _dir: tempfile::TempDir,
    /// Runtime API socket.
    pub socket: PathBuf,
    /// Frontend port clients connect to.
    pub frontend: u16,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn haproxy_binary() -> Option<PathBuf> {
    let found = [
        "/usr/sbin/haproxy",
        "/usr/bin/haproxy",
        "/usr/local/sbin/haproxy",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file());
    if found.is_none() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "haproxy is not installed, and CI=true: this test must run"
        );
        eprintln!("SKIP: haproxy is not installed (apt-get install -y haproxy)");
    }
    found
}

/// HAProxy in TCP mode in front of both PostgreSQL servers. Site b's server
/// is put in maintenance through the runtime API, as an operator does
/// (not with `disabled` in the config: HAProxy 2.6 cannot clear that
/// configured maintenance at runtime).
pub fn start_haproxy(bin: &Path, port_a: u16, port_b: u16) -> Haproxy {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("admin.sock");
    let frontend = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let cfg = format!(
        "global\n    stats socket {} mode 600 level admin\ndefaults\n    mode tcp\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\nfrontend postgres\n    bind 127.0.0.1:{frontend}\n    default_backend postgres\nbackend postgres\n    server pg_a 127.0.0.1:{port_a}\n    server pg_b 127.0.0.1:{port_b}\n",
        socket.display()
    );
    let cfg_path = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg_path, cfg).expect("write haproxy.cfg");
    let child = Command::new(bin)
        .arg("-f")
        .arg(&cfg_path)
        .arg("-db")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("haproxy.log")).expect("log"))
        .spawn()
        .expect("start haproxy");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "haproxy runtime socket never appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Haproxy {
        child,
        _dir: dir,
        socket,
        frontend,
    }
}
