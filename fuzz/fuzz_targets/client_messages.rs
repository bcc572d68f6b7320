//! The protocol decoder for every client message type: the envelope, then
//! each message's `parse` on whatever `data` holds. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::client::{
    self, CreateRoom, Direct, FileChunk, FileMeta, JoinRoom, Kick, MessageType, Sealed,
    SetRoomSecret, TransferRef, Typing,
};

fuzz_target!(|frame: &[u8]| {
    let Ok(envelope) = client::decode(frame) else {
        return;
    };
    let data = &envelope.data;
    // Every parser on every input, whatever the type says.
    let _ = CreateRoom::parse(data);
    if let Ok(join) = JoinRoom::parse(data) {
        let _ = client::is_room_id(join.room_id);
    }
    let _ = Sealed::parse_message(data);
    let _ = Sealed::parse_reaction(data);
    let _ = Typing::parse(data);
    let _ = client::parse_pong(data);
    let _ = FileMeta::parse(data);
    let _ = FileChunk::parse(data);
    let _ = TransferRef::parse_complete(data);
    let _ = TransferRef::parse_cancel(data);
    let _ = TransferRef::parse_ack(data);
    let _ = Kick::parse(data);
    let _ = Direct::parse(data, 65_536);
    let _ = SetRoomSecret::parse(data);
    if let MessageType::Unknown(_) | MessageType::Match(_) = envelope.message_type {
        // type numbers outside the table are fine
    }
});
