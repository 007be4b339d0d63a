//! The palisade witness daemon as a library, so that its configuration,
//! wiring and services are testable; `main.rs` is the thin binary.

pub mod agent;
pub mod app;
pub mod checks;
pub mod clock;
pub mod config;
pub mod control;
pub mod controller;
pub mod daemon;
pub mod db_probe;
pub mod failpoint;
pub mod front_door;
pub mod http;
pub mod inspect;
pub mod lease;
pub mod lease_guard;
pub mod logging;
pub mod observer;
pub mod peer_msgs;
pub mod peer_pb;
pub mod peers;
pub mod retention;
pub mod site_db;
pub mod stonith;
pub mod tls;
pub mod witness_service;
