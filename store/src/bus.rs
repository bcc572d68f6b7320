//! The per-room message bus.
//!
//! A [`BusMessage`] is a client frame, already encoded once by the relay that
//! accepted it, plus a small routing [`Target`]. Over Redis it travels as
//! `header ++ frame` on the room's channel; every relay that hosts members of
//! the room receives it once and pushes the same `Bytes` to each local
//! recipient.

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use protocol::client::KickReason;
use protocol::member::MemberId;

/// Who, among a room's members, receives a bus message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every member except `except` (the sender), or everyone.
    Room { except: Option<MemberId> },
    /// The member whose active or last completed file transfer has this id
    /// (a file ack goes to the transfer's sender only).
    TransferSender { transfer_id: String },
    /// Every member (the frame is the transfer's FileCancel); the relay
    /// holding `sender` also ends that transfer if it is still active. The
    /// transfer ends in the bus order, so exactly one of this message and a
    /// `CloseRoom` that overtakes it cancels it for the sender's relay.
    TransferEnded {
        sender: MemberId,
        transfer_id: String,
    },
    /// Every member of the room on every relay must leave it now: the room
    /// expired (`RoomClosed` is the frame). Relays also clear local state.
    CloseRoom,
    /// These members only (at most 255): a member put back after the store
    /// lost it is announced (MemberJoined) to those who joined while it was
    /// missing, and to nobody who knew it all along.
    Members { ids: Vec<MemberId> },
    /// No frame for anyone: every relay hosting members of the room writes
    /// the room and its members back into the store (a relay found the
    /// room missing; on a Redis Cluster only the master holding it may have
    /// lost its data, which the others cannot notice by themselves).
    RestoreRoom,
    /// One member only (a directed message, extension), on whichever relay
    /// holds it.
    Member { id: MemberId },
    /// The owner kicked `member` (extension): the relay holding it takes it
    /// out of the room and sends it the frame (RoomClosed with the reason),
    /// then announces MemberLeft with the reason to the others.
    Kick {
        member: MemberId,
        reason: KickReason,
    },
    /// No frame for anyone: the owner changed the room's join password
    /// and/or owner hash (extension, SetRoomSecret). Every relay hosting
    /// members of the room reads them again from the store, so what it
    /// writes back after a loss is current. The message carries no secret.
    SecretsChanged,
}

/// A routed, encoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusMessage {
    pub target: Target,
    /// The frame recipients receive, encoded once.
    pub frame: Bytes,
}

/// Longest transfer id a bus message carries, bytes (a one-byte length on
/// the wire). Relays refuse longer ids from clients; a longer id given to
/// the bus is cut to this (at a character boundary) on every target alike.
pub const MAX_TRANSFER_ID_BYTES: usize = u8::MAX as usize;

/// `transfer_id` as it travels: at most [`MAX_TRANSFER_ID_BYTES`] long.
fn wire_transfer_id(transfer_id: &str) -> &str {
    let mut end = transfer_id.len().min(MAX_TRANSFER_ID_BYTES);
    while !transfer_id.is_char_boundary(end) {
        end -= 1;
    }
    &transfer_id[..end]
}

const WIRE_VERSION: u8 = 1;
const TAG_ROOM_ALL: u8 = 0;
const TAG_ROOM_EXCEPT: u8 = 1;
const TAG_TRANSFER: u8 = 2;
const TAG_CLOSE: u8 = 3;
const TAG_TRANSFER_ENDED: u8 = 4;
const TAG_MEMBER: u8 = 5;
const TAG_KICK: u8 = 6;
const TAG_MEMBERS: u8 = 7;
const TAG_RESTORE_ROOM: u8 = 8;
const TAG_SECRETS_CHANGED: u8 = 9;

/// A bus payload that is not ours (wrong version, truncated).
#[derive(Debug, Clone, thiserror::Error)]
#[error("malformed bus message")]
pub struct MalformedBusMessage;

impl BusMessage {
    /// Serialises for Redis: `version, tag, [target], frame`.
    pub fn to_wire(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.wire_len());
        self.write_wire(&mut out);
        out.freeze()
    }

    /// How many bytes [`write_wire`](Self::write_wire) writes (a command
    /// that carries the message needs its length first).
    pub fn wire_len(&self) -> usize {
        let target = match &self.target {
            Target::Room { except: None }
            | Target::CloseRoom
            | Target::RestoreRoom
            | Target::SecretsChanged => 0,
            Target::Room { except: Some(id) } | Target::Member { id } => id.as_bytes().len(),
            Target::TransferSender { transfer_id } => 1 + wire_transfer_id(transfer_id).len(),
            Target::Members { ids } => {
                let ids = &ids[..ids.len().min(255)];
                1 + ids.iter().map(|id| id.as_bytes().len()).sum::<usize>()
            }
            Target::TransferEnded {
                sender,
                transfer_id,
            } => sender.as_bytes().len() + 4 + wire_transfer_id(transfer_id).len(),
            Target::Kick { member, .. } => member.as_bytes().len() + 1,
        };
        2 + target + self.frame.len()
    }

    /// Writes the message as [`to_wire`](Self::to_wire) returns it, straight
    /// into `out` (the bus connection's PUBLISH command: no copy of its own).
    pub fn write_wire(&self, out: &mut impl BufMut) {
        out.put_u8(WIRE_VERSION);
        match &self.target {
            Target::Room { except: None } => out.put_u8(TAG_ROOM_ALL),
            Target::Room { except: Some(id) } => {
                out.put_u8(TAG_ROOM_EXCEPT);
                out.put_slice(id.as_bytes());
            }
            Target::TransferSender { transfer_id } => {
                out.put_u8(TAG_TRANSFER);
                let id = wire_transfer_id(transfer_id);
                out.put_u8(id.len() as u8);
                out.put_slice(id.as_bytes());
            }
            Target::CloseRoom => out.put_u8(TAG_CLOSE),
            Target::RestoreRoom => out.put_u8(TAG_RESTORE_ROOM),
            Target::SecretsChanged => out.put_u8(TAG_SECRETS_CHANGED),
            Target::Members { ids } => {
                out.put_u8(TAG_MEMBERS);
                // More than 255 are cut (a room holds far fewer).
                let ids = &ids[..ids.len().min(255)];
                out.put_u8(ids.len() as u8);
                for id in ids {
                    out.put_slice(id.as_bytes());
                }
            }
            Target::TransferEnded {
                sender,
                transfer_id,
            } => {
                out.put_u8(TAG_TRANSFER_ENDED);
                out.put_slice(sender.as_bytes());
                // A four-byte length (wire version 1), the same limit.
                let id = wire_transfer_id(transfer_id);
                out.put_u32(id.len() as u32);
                out.put_slice(id.as_bytes());
            }
            Target::Member { id } => {
                out.put_u8(TAG_MEMBER);
                out.put_slice(id.as_bytes());
            }
            Target::Kick { member, reason } => {
                out.put_u8(TAG_KICK);
                out.put_slice(member.as_bytes());
                out.put_u8(match reason {
                    KickReason::Kicked => 0,
                    KickReason::Rekeyed => 1,
                });
            }
        }
        out.put_slice(&self.frame);
    }

    /// Parses what [`to_wire`](Self::to_wire) wrote; the frame shares `wire`.
    pub fn from_wire(wire: Bytes) -> Result<BusMessage, MalformedBusMessage> {
        let (&version, rest) = wire.split_first().ok_or(MalformedBusMessage)?;
        let (&tag, rest) = rest.split_first().ok_or(MalformedBusMessage)?;
        if version != WIRE_VERSION {
            return Err(MalformedBusMessage);
        }
        let (target, header_len) = match tag {
            TAG_ROOM_ALL => (Target::Room { except: None }, 2),
            TAG_ROOM_EXCEPT => {
                let id = rest.get(..8).ok_or(MalformedBusMessage)?;
                let id = std::str::from_utf8(id).map_err(|_| MalformedBusMessage)?;
                let id = MemberId::parse(id).ok_or(MalformedBusMessage)?;
                (Target::Room { except: Some(id) }, 10)
            }
            TAG_TRANSFER => {
                let (&len, rest) = rest.split_first().ok_or(MalformedBusMessage)?;
                let id = rest.get(..len as usize).ok_or(MalformedBusMessage)?;
                let transfer_id =
                    String::from_utf8(id.to_vec()).map_err(|_| MalformedBusMessage)?;
                (Target::TransferSender { transfer_id }, 3 + len as usize)
            }
            TAG_CLOSE => (Target::CloseRoom, 2),
            TAG_RESTORE_ROOM => (Target::RestoreRoom, 2),
            TAG_SECRETS_CHANGED => (Target::SecretsChanged, 2),
            TAG_MEMBERS => {
                let (&count, rest) = rest.split_first().ok_or(MalformedBusMessage)?;
                let len = count as usize * 8;
                let packed = rest.get(..len).ok_or(MalformedBusMessage)?;
                let ids = packed
                    .chunks_exact(8)
                    .map(|id| {
                        std::str::from_utf8(id)
                            .ok()
                            .and_then(MemberId::parse)
                            .ok_or(MalformedBusMessage)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (Target::Members { ids }, 3 + len)
            }
            TAG_TRANSFER_ENDED => {
                let sender = rest.get(..8).ok_or(MalformedBusMessage)?;
                let sender = std::str::from_utf8(sender).map_err(|_| MalformedBusMessage)?;
                let sender = MemberId::parse(sender).ok_or(MalformedBusMessage)?;
                let len = rest.get(8..12).ok_or(MalformedBusMessage)?;
                let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
                // Never longer than the encoder writes: a longer id would not
                // round-trip (and is no id a relay ever published).
                if len > MAX_TRANSFER_ID_BYTES {
                    return Err(MalformedBusMessage);
                }
                let id = rest.get(12..12 + len).ok_or(MalformedBusMessage)?;
                let transfer_id =
                    String::from_utf8(id.to_vec()).map_err(|_| MalformedBusMessage)?;
                let target = Target::TransferEnded {
                    sender,
                    transfer_id,
                };
                (target, 2 + 12 + len)
            }
            TAG_MEMBER => (
                Target::Member {
                    id: member_at(rest)?,
                },
                10,
            ),
            TAG_KICK => {
                let member = member_at(rest)?;
                let reason = match rest.get(8) {
                    Some(0) => KickReason::Kicked,
                    Some(1) => KickReason::Rekeyed,
                    _ => return Err(MalformedBusMessage),
                };
                (Target::Kick { member, reason }, 11)
            }
            _ => return Err(MalformedBusMessage),
        };
        Ok(BusMessage {
            target,
            frame: wire.slice(header_len..),
        })
    }
}

/// The member id in the first 8 bytes of `rest`.
fn member_at(rest: &[u8]) -> Result<MemberId, MalformedBusMessage> {
    let id = rest.get(..8).ok_or(MalformedBusMessage)?;
    let id = std::str::from_utf8(id).map_err(|_| MalformedBusMessage)?;
    MemberId::parse(id).ok_or(MalformedBusMessage)
}

/// The bus is unreachable (Redis down or reconnecting).
#[derive(Debug, Clone, thiserror::Error)]
#[error("bus unavailable: {0}")]
pub struct BusError(pub String);

/// Where a relay receives bus messages. Called synchronously by the engine,
/// in the room's order; it must not block (push to bounded queues only).
pub trait BusSink: Send + Sync + 'static {
    /// A message for `room_id`.
    fn deliver(&self, room_id: &str, message: BusMessage);
}

/// One channel per room.
///
/// Guarantees:
/// - **at-most-once**: a message is delivered to each subscribed relay at most
///   once; while the bus is down, `publish` fails (the sender is told) and
///   nothing is queued for later;
/// - **reach**: `publish` answers how many relays received the message when
///   the bus can tell (Redis counts its subscriptions), so a relay can tell
///   its sender when fewer received it than hold members of the room; a
///   relay moving its subscriptions off a server (a Sentinel or Cluster
///   failover) first receives every message that server counted for it;
/// - **per-room order**: all relays see a room's messages in one order,
///   the publisher included (it receives its own messages back through the
///   bus);
/// - `subscribe` returns only once the subscription is confirmed, so a
///   member added to the local index afterwards misses nothing published
///   after that point.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Starts receiving a room's messages.
    async fn subscribe(&self, room_id: &str) -> Result<(), BusError>;
    /// Stops receiving a room's messages.
    async fn unsubscribe(&self, room_id: &str) -> Result<(), BusError>;
    /// Sends one message to every relay subscribed to the room. Returns how
    /// many relays received it when the bus can tell (Redis counts the
    /// subscriptions it delivered to); `None` for a bus that cannot lose a
    /// subscriber (the in-process one).
    async fn publish(&self, room_id: &str, message: BusMessage) -> Result<Option<u64>, BusError>;

    /// Whether the bus is connected now (metrics; a publish may still fail).
    fn is_up(&self) -> bool {
        true
    }

    /// Completed recoveries since the start (the connection was lost and
    /// every room resubscribed): a relay that sees this move checks at once
    /// whether the store lost its state (Redis may have restarted empty).
    fn recoveries(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_round_trips_over_the_wire() {
        let frame = Bytes::from_static(b"\x82frame");
        for target in [
            Target::Room { except: None },
            Target::Room {
                except: MemberId::parse("0123abcd"),
            },
            Target::TransferSender {
                transfer_id: "t-1".into(),
            },
            Target::CloseRoom,
            Target::Members { ids: Vec::new() },
            Target::RestoreRoom,
            Target::SecretsChanged,
            Target::Members {
                ids: vec![
                    MemberId::parse("0123abcd").unwrap(),
                    MemberId::parse("89abcdef").unwrap(),
                ],
            },
            Target::TransferEnded {
                sender: MemberId::parse("0123abcd").unwrap(),
                transfer_id: "t".repeat(MAX_TRANSFER_ID_BYTES),
            },
            Target::Member {
                id: MemberId::parse("0123abcd").unwrap(),
            },
            Target::Kick {
                member: MemberId::parse("0123abcd").unwrap(),
                reason: KickReason::Rekeyed,
            },
        ] {
            let msg = BusMessage {
                target,
                frame: frame.clone(),
            };
            assert_eq!(msg.to_wire().len(), msg.wire_len(), "{msg:?}");
            assert_eq!(BusMessage::from_wire(msg.to_wire()).unwrap(), msg);
        }
    }

    /// Found by the bus_frame fuzz target: a TransferEnded whose four-byte
    /// length says more than the encoder ever writes is refused, not
    /// accepted and then re-encoded shorter.
    #[test]
    fn an_overlong_transfer_ended_id_is_malformed() {
        let mut wire = vec![WIRE_VERSION, TAG_TRANSFER_ENDED];
        wire.extend_from_slice(b"0123abcd");
        let len = MAX_TRANSFER_ID_BYTES + 1;
        wire.extend_from_slice(&(len as u32).to_be_bytes());
        wire.extend(std::iter::repeat_n(b't', len));
        wire.extend_from_slice(b"\x82frame");
        assert!(BusMessage::from_wire(Bytes::from(wire)).is_err());
    }

    #[test]
    fn every_target_cuts_a_long_transfer_id_at_the_same_limit() {
        // 'é' is two bytes: the cut falls inside one and backs off to 254.
        let long = format!("tt{}", "é".repeat(200));
        let cut = &long[..MAX_TRANSFER_ID_BYTES - 1];
        let sender = MemberId::parse("0123abcd").unwrap();
        let round_trip = |target| {
            let msg = BusMessage {
                target,
                frame: Bytes::new(),
            };
            BusMessage::from_wire(msg.to_wire()).unwrap().target
        };
        assert_eq!(
            round_trip(Target::TransferSender {
                transfer_id: long.clone()
            }),
            Target::TransferSender {
                transfer_id: cut.to_owned()
            }
        );
        assert_eq!(
            round_trip(Target::TransferEnded {
                sender,
                transfer_id: long.clone()
            }),
            Target::TransferEnded {
                sender,
                transfer_id: cut.to_owned()
            }
        );
    }

    #[test]
    fn truncated_or_foreign_payloads_are_refused() {
        for wire in [
            &b""[..],
            b"\x01",
            b"\x02\x00x",
            b"\x01\x01abc",
            b"\x01\x02\x09ab",
            b"\x01\x040123abcd\x00\x00\x00\x05abc",
            b"\x01\x040123abcd\x00\x00",
            b"\x01\x050123abc",
            b"\x01\x060123abcd",
            b"\x01\x060123abcd\x02",
            b"\x01\x07",
            b"\x01\x07\x020123abcd",
            b"\x01\x07\x01zzzzzzzz",
            b"\x01\x0a",
        ] {
            assert!(BusMessage::from_wire(Bytes::copy_from_slice(wire)).is_err());
        }
    }
}
