//! Effects on the world, each behind a small interface and tested against
//! the real thing: database fencing, promotion and rejoin, the
//! `monitorsEnabled` flip, Elasticsearch and front-door repointing, STONITH.
