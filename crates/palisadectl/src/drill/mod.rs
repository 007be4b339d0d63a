//! `drill run`: DR tests as the HA/DR guide describes them (checkpoint,
//! pre-reboot, check, failover, failover check, failback, failback check),
//! written as a TOML plan ([`plan`]), run phase by phase ([`run`]) with
//! checks on the cluster's status ([`checks`]), and reported ([`report`]).

pub mod checks;
#[cfg(test)]
mod hostile;
pub mod plan;
pub mod report;
pub mod run;
