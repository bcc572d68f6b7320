//! The bus frame decoder (what other relays publish on a room's channel):
//! never panics, and whatever it accepts encodes back to the same bytes,
//! whose length `wire_len` tells beforehand (a PUBLISH command is written
//! around it).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use store::BusMessage;

fuzz_target!(|data: &[u8]| {
    let wire = Bytes::copy_from_slice(data);
    if let Ok(message) = BusMessage::from_wire(wire.clone()) {
        assert_eq!(message.wire_len(), wire.len());
        assert_eq!(message.to_wire(), wire);
    }
});
