//! Effects on the world, each behind a small interface and tested against
//! the real thing: database fencing, promotion and rejoin, the
//! `monitorsEnabled` flip, Elasticsearch and front-door repointing, STONITH.

pub mod atomic_file;
pub mod command;
pub mod config_file;
pub mod elasticsearch;
pub mod haproxy;
pub mod key_value;
pub mod monitors;
pub mod postgres;
pub mod retry;
pub mod webhook;
