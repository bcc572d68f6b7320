//! Short-lived, signed, single-use join tickets (the native-client extension).
//!
//! A native client proves it knows a room's password once, over HTTP, and
//! gets a ticket; it then joins over the WebSocket with `ticket` instead of
//! `password`. The ticket is self-contained so any gateway replica (or the
//! relay's in-process gateway) can check it without a lookup:
//!
//! ```text
//! base64url( version(1) | expiresAt(8, big-endian unix s) | nonce(16) | roomId | HMAC-SHA256(32) )
//! ```
//!
//! The MAC covers everything before it, with a domain-separation prefix. A
//! valid signature, an unexpired `expiresAt` and a matching room are checked
//! here (pure); single use is enforced by the caller through
//! `RoomStore::claim_once` on [`VerifiedTicket::claim_key`], so it holds
//! across replicas. Tickets are bearer secrets: never log them.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The ticket format version byte.
const VERSION: u8 = 1;
/// Domain separation for the MAC, so no other HMAC under the same key can
/// be passed off as a ticket.
const MAC_DOMAIN: &[u8] = b"arthas-join-ticket\0";
/// Random bytes per ticket (its identity for single use).
const NONCE_BYTES: usize = 16;
/// HMAC-SHA256 output.
const MAC_BYTES: usize = 32;
/// Fixed header: version, expiresAt, nonce.
const HEADER_BYTES: usize = 1 + 8 + NONCE_BYTES;
/// Longest room id a ticket may name (room ids are 21 characters).
pub const MAX_ROOM_ID_BYTES: usize = protocol::client::MAX_ROOM_ID_BYTES;
/// Longest ticket text accepted; longer input is refused before decoding.
pub const MAX_TICKET_CHARS: usize = (HEADER_BYTES + MAX_ROOM_ID_BYTES + MAC_BYTES) * 4 / 3 + 4;
/// Shortest secret accepted (bytes).
pub const MIN_SECRET_BYTES: usize = 16;

/// Why a ticket was refused. Every variant becomes the same client-visible
/// error ("invalid ticket"); the variants exist for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("ticket is malformed")]
    Malformed,
    #[error("ticket signature is invalid")]
    BadSignature,
    #[error("ticket has expired")]
    Expired,
    #[error("ticket is for another room")]
    WrongRoom,
    #[error("ticket was used already")]
    Used,
    #[error("room id too long for a ticket")]
    RoomIdTooLong,
}

/// A freshly issued ticket.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedTicket {
    /// The base64url text handed to the client (a bearer secret).
    pub ticket: String,
    /// Unix seconds after which the ticket is refused.
    pub expires_at: i64,
}

impl std::fmt::Debug for IssuedTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedTicket")
            .field("ticket", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A ticket whose signature, expiry and room checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTicket {
    /// Unix seconds.
    pub expires_at: i64,
    nonce: [u8; NONCE_BYTES],
}

impl VerifiedTicket {
    /// The store key that makes this ticket single-use (derived from the
    /// nonce; it does not reveal the ticket, which also needs the MAC).
    pub fn claim_key(&self) -> String {
        format!("ticket:{}", URL_SAFE_NO_PAD.encode(self.nonce))
    }

    /// How long the claim must be remembered: until the ticket expires,
    /// plus a second of slack for clock rounding.
    pub fn claim_ttl(&self, now_secs: i64) -> Duration {
        Duration::from_secs((self.expires_at - now_secs).max(0) as u64 + 1)
    }
}

/// Issues and verifies tickets under one secret.
#[derive(Clone)]
pub struct TicketSigner {
    /// The HMAC key, keyed once.
    mac: HmacSha256,
    /// How long an issued ticket stays valid.
    ttl: Duration,
}

impl std::fmt::Debug for TicketSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketSigner")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl TicketSigner {
    /// A signer with `secret` (HMAC accepts any length; callers should give
    /// at least [`MIN_SECRET_BYTES`]) and ticket lifetime `ttl`.
    pub fn new(secret: &[u8], ttl: Duration) -> TicketSigner {
        let mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
        TicketSigner { mac, ttl }
    }

    /// The lifetime of issued tickets.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn tag(&self, signed: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(MAC_DOMAIN);
        mac.update(signed);
        mac
    }

    /// Issues a ticket for `room_id`, valid until `now_secs + ttl`.
    pub fn issue(&self, room_id: &str, now_secs: i64) -> Result<IssuedTicket, TicketError> {
        let nonce: [u8; NONCE_BYTES] = rand::random();
        self.issue_with_nonce(room_id, now_secs, nonce)
    }

    fn issue_with_nonce(
        &self,
        room_id: &str,
        now_secs: i64,
        nonce: [u8; NONCE_BYTES],
    ) -> Result<IssuedTicket, TicketError> {
        if room_id.is_empty() || room_id.len() > MAX_ROOM_ID_BYTES {
            return Err(TicketError::RoomIdTooLong);
        }
        let expires_at = now_secs.saturating_add(self.ttl.as_secs() as i64);
        let mut raw = Vec::with_capacity(HEADER_BYTES + room_id.len() + MAC_BYTES);
        raw.push(VERSION);
        raw.extend_from_slice(&expires_at.to_be_bytes());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(room_id.as_bytes());
        let tag = self.tag(&raw).finalize().into_bytes();
        raw.extend_from_slice(&tag);
        Ok(IssuedTicket {
            ticket: URL_SAFE_NO_PAD.encode(&raw),
            expires_at,
        })
    }

    /// Checks signature (constant time), expiry and room. Single use is
    /// the caller's job (see the module docs).
    pub fn verify(
        &self,
        ticket: &str,
        room_id: &str,
        now_secs: i64,
    ) -> Result<VerifiedTicket, TicketError> {
        if ticket.is_empty() || ticket.len() > MAX_TICKET_CHARS {
            return Err(TicketError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(ticket)
            .map_err(|_| TicketError::Malformed)?;
        if raw.len() <= HEADER_BYTES + MAC_BYTES || raw[0] != VERSION {
            return Err(TicketError::Malformed);
        }
        let (signed, tag) = raw.split_at(raw.len() - MAC_BYTES);
        self.tag(signed)
            .verify_slice(tag)
            .map_err(|_| TicketError::BadSignature)?;
        let mut expiry = [0u8; 8];
        expiry.copy_from_slice(&signed[1..9]);
        let expires_at = i64::from_be_bytes(expiry);
        let mut nonce = [0u8; NONCE_BYTES];
        nonce.copy_from_slice(&signed[9..HEADER_BYTES]);
        if signed[HEADER_BYTES..] != *room_id.as_bytes() {
            return Err(TicketError::WrongRoom);
        }
        if now_secs > expires_at {
            return Err(TicketError::Expired);
        }
        Ok(VerifiedTicket { expires_at, nonce })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOM: &str = "V1StGXR8_Z5jdHi6B-myT";

    fn signer() -> TicketSigner {
        TicketSigner::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(60))
    }

    #[test]
    fn a_fresh_ticket_verifies_for_its_room() {
        let s = signer();
        let issued = s.issue(ROOM, 1_000).unwrap();
        assert_eq!(issued.expires_at, 1_060);
        assert!(issued.ticket.len() <= MAX_TICKET_CHARS);
        assert!(issued
            .ticket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let v = s.verify(&issued.ticket, ROOM, 1_060).unwrap();
        assert_eq!(v.expires_at, 1_060);
        assert!(v.claim_key().starts_with("ticket:"));
        assert_eq!(v.claim_ttl(1_000), Duration::from_secs(61));
    }

    #[test]
    fn tickets_are_unique_per_issue() {
        let s = signer();
        let a = s.issue(ROOM, 1_000).unwrap();
        let b = s.issue(ROOM, 1_000).unwrap();
        assert_ne!(a.ticket, b.ticket);
        assert_ne!(
            s.verify(&a.ticket, ROOM, 1_000).unwrap().claim_key(),
            s.verify(&b.ticket, ROOM, 1_000).unwrap().claim_key()
        );
    }

    #[test]
    fn an_expired_ticket_is_refused() {
        let s = signer();
        let issued = s.issue(ROOM, 1_000).unwrap();
        assert_eq!(
            s.verify(&issued.ticket, ROOM, 1_061),
            Err(TicketError::Expired)
        );
    }

    #[test]
    fn a_ticket_for_another_room_is_refused() {
        let s = signer();
        let issued = s.issue(ROOM, 1_000).unwrap();
        assert_eq!(
            s.verify(&issued.ticket, "another-room-id-00000", 1_000),
            Err(TicketError::WrongRoom)
        );
    }

    #[test]
    fn another_secret_or_a_flipped_bit_breaks_the_signature() {
        let issued = signer().issue(ROOM, 1_000).unwrap();
        let other = TicketSigner::new(b"another secret, 32 bytes long!!!", Duration::from_secs(60));
        assert_eq!(
            other.verify(&issued.ticket, ROOM, 1_000),
            Err(TicketError::BadSignature)
        );
        let mut raw = URL_SAFE_NO_PAD.decode(&issued.ticket).unwrap();
        // push the expiry forward: the MAC no longer matches
        raw[8] ^= 0x01;
        let forged = URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(
            signer().verify(&forged, ROOM, 1_000),
            Err(TicketError::BadSignature)
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let s = signer();
        for bad in ["", "!!!", "AAAA", &"A".repeat(MAX_TICKET_CHARS + 1), "é"] {
            assert_eq!(s.verify(bad, ROOM, 0), Err(TicketError::Malformed), "{bad}");
        }
        // right length, wrong version
        let mut raw = URL_SAFE_NO_PAD
            .decode(s.issue(ROOM, 0).unwrap().ticket)
            .unwrap();
        raw[0] = 9;
        assert_eq!(
            s.verify(&URL_SAFE_NO_PAD.encode(&raw), ROOM, 0),
            Err(TicketError::Malformed)
        );
    }

    #[test]
    fn room_ids_must_fit() {
        assert_eq!(
            signer().issue(&"r".repeat(MAX_ROOM_ID_BYTES + 1), 0),
            Err(TicketError::RoomIdTooLong)
        );
        assert_eq!(signer().issue("", 0), Err(TicketError::RoomIdTooLong));
    }

    #[test]
    fn debug_output_never_shows_the_ticket() {
        let issued = signer().issue(ROOM, 0).unwrap();
        assert!(!format!("{issued:?}").contains(&issued.ticket));
    }
}
