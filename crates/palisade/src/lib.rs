//! The palisade witness daemon as a library, so that its configuration,
//! wiring and services are testable; `main.rs` is the thin binary.

pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod inspect;
