//! What the three binaries share: their flag groups ([`cli`]) and process
//! plumbing ([`process`]: runtime, logging, termination signals).
//!
//! - `arthas` (src/main.rs): gateway + relay in one process, in-memory engine;
//! - `relay` (src/bin/relay.rs): a cluster relay over Redis;
//! - `gateway` (src/bin/gateway.rs): the cluster's gateway over Redis.

pub mod cli;
pub mod process;

/// Every binary allocates through mimalloc: per join a relay runs ~15 % fewer
/// instructions than with glibc's malloc, the all-in-one ~18 % (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
