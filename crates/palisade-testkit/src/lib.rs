//! The one test kit that palisade's tests, benches, the demo and
//! chaos-tests share. Real components wherever one can be installed:
//!
//! * [`pg`]: real PostgreSQL primary/standby pairs started from `initdb`,
//!   on loopback or in network namespaces; [`procs`]: their processes as
//!   `/proc` shows them.
//! * [`mariadb`]: real MariaDB master-master pairs (the guide's MySQL
//!   replication) from `mariadb-install-db`, on loopback.
//! * [`haproxy`]: the one HAProxy config writer, and a real HAProxy in
//!   front of a pair.
//! * [`es_double`]: an Elasticsearch API **double** (no Elasticsearch
//!   server can be installed on the build machines; the double is labelled
//!   as such and serves only what palisade's real client code asks for).
//! * [`app`]: an application server's `threatconnect.xml`.
//! * [`cluster`]: three real witness processes on loopback, driven through
//!   `palisadectl` and the control API; [`writer`]: a client that follows
//!   the primary; [`bins`]: where the workspace's binaries are.
//! * [`wait_for`]: the one wait on a condition, with a deadline and a
//!   reason; [`step`]: narration; [`percentile`]: the benches' summaries.

pub mod app;
pub mod bins;
pub mod cluster;
pub mod es_double;
pub mod haproxy;
pub mod logs;
pub mod mariadb;
pub mod pg;
pub mod pki;
pub mod procs;
pub mod stats;
pub mod wait;
pub mod writer;

pub use stats::{bench_trials, percentile};
pub use wait::{step, wait_for, Attempt, IntoAttempt, Patience};
