//! The harness shared by the black-box suites: start the real binary (`server`), talk to it
//! over WebSockets (`client`) and HTTP (`http`) with independently encoded MessagePack (`msg`),
//! the room-level steps most tests start with (`room`), a TCP proxy a test can cut
//! (`proxy`), and TLS with a CA of the test's own
//! (`tls`).
#![allow(dead_code, unused_imports)]

pub mod client;
pub mod http;
pub mod msg;
pub mod proxy;
pub mod room;
pub mod server;
pub mod tls;

pub use client::{t, Client, ConnectError, ConnectOpts, Event};
pub use msg::{member_color, ValueExt};
pub use room::{assert_room_chats, open_room, open_room_with, say, Member};
pub use server::{Env, Opts, Topology};
