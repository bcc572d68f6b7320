//! The join-ticket parser: any text as a ticket for any room never panics,
//! and only a ticket issued for that room verifies.
#![no_main]

use std::time::Duration;

use gateway::ticket::TicketSigner;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let signer = TicketSigner::new(b"fuzzing-ticket-secret-0123456789", Duration::from_secs(60));
    let text = String::from_utf8_lossy(data);
    let (ticket, room) = text
        .split_once('\n')
        .unwrap_or((&text, "V1StGXR8_Z5jdHi6B-myT"));
    let now = 1_000;
    let _ = signer.verify(ticket, room, now);
    // A ticket issued for the room (when it can name one) verifies once.
    if let Ok(issued) = signer.issue(room, now) {
        assert!(signer.verify(&issued.ticket, room, now).is_ok());
        assert!(signer.verify(&issued.ticket, room, now + 61).is_err());
    }
});
