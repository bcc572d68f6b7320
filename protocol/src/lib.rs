//! The Arthas wire protocol, v1.2.2, as existing Arthas clients speak it, plus
//! this project's additive extensions (see `docs/PROTOCOL.md`).
//!
//! Every WebSocket message is one MessagePack map `{type: uint, data: any}`.
//! This crate is pure (no I/O) so it can be fuzzed and property-tested alone:
//!
//! - [`kind`]: the message type numbers, both directions;
//! - [`client`]: decoding of client frames with the reference server's lax
//!   rules (any integer width, floats become 0, str and bin are distinct), one
//!   `parse` per message that runs the data checks in the reference order and
//!   returns the exact error text; and encoding, for our own clients;
//! - [`server`]: server frames, encoded **once** into a shareable [`bytes::Bytes`]
//!   by [`server::encode`], and decoded again by clients and tests;
//! - [`reject`]: error codes and the error frame;
//! - [`member`]: member ids and the reference colour function.

pub mod client;
pub mod kind;
pub mod member;
pub mod reject;
pub mod server;
mod value;

pub use reject::{ErrorCode, Reject};
