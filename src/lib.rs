//! What the three binaries share: their flag groups ([`cli`]) and process
//! plumbing ([`process`]: runtime, logging, termination signals).
//!
//! - `arthas` (src/main.rs): gateway + relay in one process, in-memory engine;
//! - `relay` (src/bin/relay.rs): a cluster relay over Redis;
//! - `gateway` (src/bin/gateway.rs): the cluster's gateway over Redis.

pub mod cli;
pub mod process;
