//! The harness shared by the black-box suites: start the real binary (`server`), talk to it
//! over WebSockets (`client`) and HTTP (`http`) with independently encoded MessagePack (`msg`),
//! the room-level steps most tests start with (`room`), a TCP proxy a test can cut
//! (`proxy`), TLS with a CA of the test's own (`tls`), and a clock the test moves for the
//! processes it started (`clock`).
#![allow(dead_code, unused_imports)]

pub mod client;
pub mod clock;
pub mod http;
pub mod msg;
pub mod proxy;
pub mod room;
pub mod server;
pub mod tls;

pub use client::{t, Client, ConnectError, ConnectOpts, Event};
pub use clock::TestClock;
pub use msg::{member_color, ValueExt};
pub use room::{assert_room_chats, open_room, open_room_with, say, Member};
pub use server::{Env, Opts, Topology};
