//! Where a request that changes the state is handled: here when this
//! witness leads, else forwarded once to the leader's control address (a
//! forwarded request is never forwarded again). A forwarding failure names
//! the leader and its address, and says whether the request may still
//! take effect.

use std::error::Error;
use std::future::Future;
use std::time::Duration;

use palisade_api::v1::control_client::ControlClient;
use palisade_core::NodeId;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use super::{ControlService, FORWARDED, FORWARD_TIMEOUT};

/// A request to send on to the leader.
pub(super) struct Forward<T> {
    /// A client of the leader's control service.
    client: ControlClient<Channel>,
    /// The request, marked as forwarded.
    request: Request<T>,
    /// The leader.
    leader: NodeId,
    /// Its control address, for messages.
    addr: String,
    /// How long to wait for its answer.
    timeout: Duration,
}

impl<T> Forward<T> {
    /// Waits up to `timeout` for the leader (a membership change waits for
    /// a learner to catch up) instead of [`FORWARD_TIMEOUT`].
    pub(super) fn within(mut self, timeout: Duration) -> Self {
        self.request.set_timeout(timeout);
        self.timeout = timeout;
        self
    }
}

/// Where a request that changes the state is handled.
enum Route {
    /// Here: this witness leads.
    Local,
    /// At the leader, through this client.
    Leader(NodeId, ControlClient<Channel>, String),
}

impl ControlService {
    /// Handles here when this witness leads; otherwise names the leader to
    /// forward to, once (a forwarded request is never forwarded again).
    fn route(&self, forwarded: bool) -> Result<Route, Status> {
        let leader = self.raft.metrics().borrow().current_leader;
        match leader {
            Some(l) if l == self.own_id() => Ok(Route::Local),
            Some(l) if !forwarded => match self.peer(l) {
                Some((w, ch)) => Ok(Route::Leader(l, ControlClient::new(ch.control), w.control_addr)),
                None => Err(Status::unavailable(format!(
                    "leader {l} is not a member of the cluster this witness knows"
                ))),
            },
            Some(l) => Err(Status::unavailable(format!(
                "witness {} is not the leader and the request was already forwarded (leader now {l}); retry",
                self.own_id()
            ))),
            None => Err(Status::unavailable(
                "no leader is known (an election may be in progress); nothing was sent; retry shortly",
            )),
        }
    }

    /// Handles a state-changing request: `Ok(body)` when this witness
    /// leads and handles it, else what to forward to the leader.
    pub(super) fn at_leader<T>(&self, req: Request<T>) -> Result<Result<T, Forward<T>>, Status> {
        let forwarded = req.metadata().get(FORWARDED).is_some();
        let body = req.into_inner();
        Ok(match self.route(forwarded)? {
            Route::Local => Ok(body),
            Route::Leader(leader, client, addr) => Err(Forward {
                client,
                request: self.forwarding(body),
                leader,
                addr,
                timeout: FORWARD_TIMEOUT,
            }),
        })
    }

    /// Sends `f` to the leader with `call` (the RPC), bounded by
    /// [`FORWARD_TIMEOUT`]. The leader's own answers (its rejections
    /// included) pass through; a failure to reach it or to hear back names
    /// it: `UNAVAILABLE` when the request cannot have reached it (nothing
    /// was sent), `DEADLINE_EXCEEDED` or `UNKNOWN` when it may have, and so
    /// may still take effect (the codes say so; the message names the
    /// leader).
    pub(super) async fn forward<T, R, F, Fut>(
        &self,
        f: Forward<T>,
        call: F,
    ) -> Result<Response<R>, Status>
    where
        F: FnOnce(ControlClient<Channel>, Request<T>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let Forward {
            client,
            request,
            leader,
            addr,
            timeout,
        } = f;
        let reply = tokio::time::timeout(timeout, call(client, request)).await;
        let status = match reply {
            Ok(Ok(r)) => return Ok(r),
            Ok(Err(status)) => status,
            Err(_) => return Err(forward_timed_out(self.own_id(), leader, &addr, timeout)),
        };
        Err(forward_failure(
            self.own_id(),
            leader,
            &addr,
            status,
            timeout,
        ))
    }

    /// `body` as a request forwarded by this witness.
    fn forwarding<T>(&self, body: T) -> Request<T> {
        let mut fwd = Request::new(body);
        fwd.set_timeout(FORWARD_TIMEOUT);
        fwd.metadata_mut().insert(
            FORWARDED,
            self.own_id()
                .to_string()
                .parse()
                .expect("a decimal id is valid metadata"),
        );
        fwd
    }
}

fn forward_timed_out(own: NodeId, leader: NodeId, addr: &str, timeout: Duration) -> Status {
    Status::deadline_exceeded(format!(
        "witness {own} forwarded the request to leader {leader} at {addr}, which did not answer \
         within {} ms",
        timeout.as_millis()
    ))
}

/// The status a follower returns when forwarding to `leader` failed with
/// `status`: the leader's own answer as it is; a transport failure (tonic
/// attaches the underlying error exactly when it made the status up
/// locally) named with the leader.
fn forward_failure(
    own: NodeId,
    leader: NodeId,
    addr: &str,
    status: Status,
    timeout: Duration,
) -> Status {
    let Some(source) = status.source() else {
        if matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled) {
            return forward_timed_out(own, leader, addr, timeout);
        }
        return status;
    };
    let cause = root_cause(source);
    if not_sent(source) {
        Status::unavailable(format!(
            "witness {own} could not reach leader {leader} at {addr} to forward the request: \
             {cause}; nothing was sent; retry, or ask another witness"
        ))
    } else if chain(source).any(|e| e.is::<tonic::TimeoutExpired>()) {
        forward_timed_out(own, leader, addr, timeout)
    } else {
        Status::unknown(format!(
            "witness {own} lost leader {leader} at {addr} while forwarding the request: {cause}"
        ))
    }
}

/// Whether a transport error happened before the request could be sent:
/// the connection was never made (refused, unroutable, or the channel's
/// connect timeout, which bounds TCP and the TLS handshake together, ran
/// out: hyper-timeout's `TimedOut` around tokio's `Elapsed`).
fn not_sent(err: &(dyn Error + 'static)) -> bool {
    chain(err).any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::AddrNotAvailable
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
            ) || (io.kind() == std::io::ErrorKind::TimedOut
                && io
                    .get_ref()
                    .is_some_and(|inner| inner.is::<tokio::time::error::Elapsed>()))
        }) || e.to_string().contains("tcp connect error")
            || e.to_string().starts_with("dns error")
            || e.is::<tokio::time::error::Elapsed>()
    })
}

fn chain<'a>(err: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |&e: &&'a (dyn Error + 'static)| e.source())
}

/// The innermost non-empty message of an error chain, on one line.
fn root_cause(err: &(dyn Error + 'static)) -> String {
    chain(err)
        .map(|e| {
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|m| !m.is_empty())
        .last()
        .unwrap_or_else(|| "unknown error".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_that_refused_the_connection_is_named_and_nothing_was_sent() {
        let refused = Status::from_error(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        )));
        let s = forward_failure(2, 1, "127.0.0.1:7401", refused, FORWARD_TIMEOUT);
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(
            s.message(),
            "witness 2 could not reach leader 1 at 127.0.0.1:7401 to forward the request: \
             Connection refused (os error 111); nothing was sent; retry, or ask another witness"
        );
    }

    #[test]
    fn a_leader_that_did_not_answer_may_still_apply_the_request() {
        let timed_out = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        let s = forward_failure(2, 1, "127.0.0.1:7401", timed_out, FORWARD_TIMEOUT);
        assert_eq!(s.code(), Code::DeadlineExceeded);
        assert!(s.message().contains("leader 1 at 127.0.0.1:7401"), "{s:?}");
        let reset = Status::from_error(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset",
        )));
        let s = forward_failure(2, 1, "127.0.0.1:7401", reset, FORWARD_TIMEOUT);
        assert_eq!(s.code(), Code::Unknown);
        assert!(
            s.message().contains("lost leader 1 at 127.0.0.1:7401"),
            "{s:?}"
        );
    }

    #[test]
    fn the_leaders_own_answers_pass_through() {
        let s = forward_failure(
            2,
            1,
            "127.0.0.1:7401",
            Status::failed_precondition("b is already the primary"),
            FORWARD_TIMEOUT,
        );
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(s.message(), "b is already the primary");
    }
}
