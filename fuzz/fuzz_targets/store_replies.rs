//! What Redis answers a join, read by the relay: join.lua's answer (the
//! room's fields and the member list in one msgpack array, written by Lua's
//! cmsgpack) and each stored member record (`<seq>:<msgpack>`). Never panics,
//! and never reads more members than the reply has bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let members = store::redis::read_replies_for_fuzzing(data);
    assert!(members <= data.len());
});
