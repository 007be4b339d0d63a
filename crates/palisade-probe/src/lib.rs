//! Health probes. Every witness runs them against every target from its own
//! site; a probe never fails, it returns what it saw (see
//! `palisade_core::observe`).
