//! Harnesses for palisade's tests: real PostgreSQL servers started from
//! `initdb`, and an Elasticsearch API double (no Elasticsearch server can be
//! installed on the build machines; the double is labelled as such and
//! serves only what palisade's real client code asks for).
pub mod es_double;
pub mod pg;
