//! TCP probe: does anything accept connections on an address? Used for
//! targets without a richer probe (and to tell "host down" from "process
//! down" next to one).

use std::net::SocketAddr;
use std::time::Duration;

use palisade_core::observe::{ErrorClass, Reachability};
use tokio::net::TcpStream;

use crate::classify_io;

/// Connects to `addr` and closes the connection at once. `Up` when the
/// connection was accepted within `timeout`; otherwise `Down` with
/// `Refused` (nothing listens), `Timeout` (no answer: host down, partition,
/// or a listener too frozen to accept and a full backlog) or `Other`.
#[tracing::instrument(name = "tcp_probe", skip_all, fields(%addr))]
pub async fn probe(addr: SocketAddr, timeout: Duration) -> Reachability {
    let reachability = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(_stream)) => Reachability::Up,
        Ok(Err(e)) => Reachability::Down {
            class: classify_io(&e),
            detail: format!("connect {addr}: {e}"),
        },
        Err(_) => Reachability::Down {
            class: ErrorClass::Timeout,
            detail: format!("connect {addr}: no answer within {timeout:?}"),
        },
    };
    if let Reachability::Down { class, detail } = &reachability {
        tracing::debug!(?class, %detail, "tcp down");
    }
    reachability
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listening_port_is_up_and_closed_port_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound address");
        assert_eq!(probe(addr, Duration::from_secs(1)).await, Reachability::Up);
        drop(listener);
        match probe(addr, Duration::from_secs(1)).await {
            Reachability::Down {
                class: ErrorClass::Refused,
                detail,
            } => assert!(detail.contains(&addr.to_string())),
            other => panic!("expected refused, got {other:?}"),
        }
    }
}
