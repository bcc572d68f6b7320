//! One connection's protocol state machine: every client message of
//! PROTOCOL.md §2 and §6, with its checks in the reference order, its exact
//! error texts and its reply sequence.
//!
//! Replies to the client go into the connection's own queue, so they are
//! ordered with everything the bus delivers to it. Frames for other members
//! are encoded once here and published on the room's bus channel.
//!
//! A session is also the guard of what its connection holds in the
//! cluster: if it is dropped while still in a room (its task panicked or
//! was cancelled before [`Session::disconnect`] ran), its `Drop` closes the
//! outbox and spawns the disconnect (active transfer cancelled, MemberLeft
//! to the others, the member removed from the room's record and presence).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use gateway::{CreateRoomRequest, ListingRequest};
use protocol::client::{
    self, CreateRoom, FileChunk, FileMeta, JoinRoom, MessageType, Sealed, TransferRef, Typing,
    ValueRef,
};
use protocol::member::{member_color, MemberId};
use protocol::reject::texts;
use protocol::server::{
    self, MemberLeft, MemberTyping, MemberView, RelayFileAck, RelayFileChunk, RelayFileMeta,
    RelayFileRef, Relayed, RoomCreated, RoomJoined,
};
use protocol::{kind, Reject};
use store::{JoinError, Joined, MemberRecord, Target};
use tracing::Instrument as _;

use crate::connection::Application;
use crate::hub::{LocalMember, LocalRoom};
use crate::message_budgets::{ConnectionBudgets, Kind, Verdict};
use crate::peer::Peer;
use crate::transfer::ActiveTransfer;
use crate::websocket::close_code;
use crate::Relay;

/// Attempts at a member id that is free in the room.
const MEMBER_ID_ATTEMPTS: usize = 5;

/// How a member proves it may enter a password room.
#[derive(Clone, Copy)]
enum Credentials<'a> {
    /// It just created the room (the gateway hashed its password).
    Creator,
    /// A join password (empty when the client gave none).
    Password(&'a str),
    /// A join ticket from the gateway's public API, instead of a password.
    Ticket(&'a str),
}

impl<'a> Credentials<'a> {
    /// A JoinRoom's credentials: its ticket if it has one, else its password.
    fn of_joiner(password: &'a str, ticket: &'a str) -> Credentials<'a> {
        if ticket.is_empty() {
            Credentials::Password(password)
        } else {
            Credentials::Ticket(ticket)
        }
    }
}

/// A connection's protocol state.
pub struct Session {
    relay: Arc<Relay>,
    /// The shared half: outbound queue and file-transfer state.
    peer: Arc<Peer>,
    /// The client's address (password guess and creation limits).
    ip: IpAddr,
    /// This member's id (re-rolled if taken in the room it joins).
    id: MemberId,
    /// The display name given at create/join.
    name: String,
    /// Unix milliseconds of the last join (the member's place in the list).
    joined_at: i64,
    /// The room this connection is in.
    room: Option<Arc<LocalRoom>>,
    /// When recent accepted chat messages were sent (rate limit); empty
    /// and unallocated until the first one.
    chat_times: VecDeque<Instant>,
    /// This session runs the disconnect of one that was dropped: if it is
    /// dropped in turn (the runtime shuts down), it spawns nothing more.
    orphan: bool,
    /// The budgets of the other client messages.
    budgets: ConnectionBudgets,
    /// The last application Ping's `t` and when it went out; its Pong
    /// (same `t`) gives the round trip.
    ping_sent: Option<(i64, Instant)>,
}

fn random_member_id() -> MemberId {
    MemberId::from_random(rand::random())
}

impl Session {
    /// A session for a new connection.
    pub fn new(relay: Arc<Relay>, peer: Arc<Peer>, ip: IpAddr) -> Session {
        Session {
            relay,
            peer,
            ip,
            id: random_member_id(),
            name: String::new(),
            joined_at: 0,
            room: None,
            chat_times: VecDeque::new(),
            orphan: false,
            budgets: ConnectionBudgets::default(),
            ping_sent: None,
        }
    }

    /// A Pong answering the last Ping (same `t`) is a round trip; anything
    /// else a client sends as Pong is ignored.
    fn pong(&mut self, t: Option<i64>) {
        if let (Some(t), Some((sent_t, sent_at))) = (t, self.ping_sent) {
            if t == sent_t {
                self.ping_sent = None;
                self.relay
                    .metrics
                    .ping_rtt_seconds
                    .observe(sent_at.elapsed().as_secs_f64());
            }
        }
    }

    fn reply(&self, frame: Bytes) {
        self.relay.metrics.sent(&frame, 1);
        // A full queue closes the connection; nothing else to do here.
        let _ = self.peer.outbox.push(frame);
    }

    fn reject(&self, reject: &Reject) {
        self.relay.metrics.error_out(reject.code).inc();
        self.reply(server::error(reject));
    }

    /// The current room, forgetting it if it expired or the member was
    /// kicked from it meanwhile.
    fn current_room(&mut self) -> Option<Arc<LocalRoom>> {
        if self
            .room
            .as_ref()
            .is_some_and(|r| r.is_closed() || self.peer.kicked.take_if(&r.id))
        {
            self.room = None;
        }
        self.room.clone()
    }

    fn in_room(&mut self) -> Result<Arc<LocalRoom>, Reject> {
        self.current_room().ok_or(texts::NOT_IN_ROOM)
    }

    async fn publish(&self, room: &LocalRoom, target: Target, frame: Bytes) -> Result<(), Reject> {
        self.relay.publish_from_member(room, target, frame).await
    }

    /// Publishes `frame` to every member of `room` but this one.
    async fn to_others(&self, room: &LocalRoom, frame: Bytes) -> Result<(), Reject> {
        let target = Target::Room {
            except: Some(self.id),
        };
        self.publish(room, target, frame).await
    }

    /// Handles one client message (any WebSocket data frame).
    pub async fn handle(&mut self, frame: &[u8]) {
        #[cfg(feature = "testing")]
        self.relay.faults.maybe_panic();
        let envelope = match client::decode(frame) {
            Ok(e) => e,
            Err(reject) => return self.reject(&reject),
        };
        let message_type = envelope.message_type;
        self.relay.metrics.frame_in(message_type).inc();
        if let Some(kind) = budget_kind(message_type, frame.len()) {
            match self.budgets.spend(&self.relay.rates, kind) {
                Verdict::Go => {}
                Verdict::PauseThenGo(pause) => tokio::time::sleep(pause).await,
                Verdict::Refuse => return self.reject(&texts::RATE_LIMITED),
            }
        }
        let data = &envelope.data;
        let result = match message_type {
            MessageType::CreateRoom => self.create_room(data).await,
            MessageType::JoinRoom => self.join_room(data).await,
            MessageType::SendMessage => self.send_message(data).await,
            MessageType::LeaveRoom => {
                self.leave_room().await;
                Ok(())
            }
            MessageType::Typing => self.typing(data).await,
            MessageType::Pong => {
                self.pong(client::parse_pong(data));
                Ok(())
            }
            MessageType::SendReaction => self.send_reaction(data).await,
            MessageType::SendFileMeta => self.file_meta(data).await,
            MessageType::SendFileChunk => self.file_chunk(data).await,
            MessageType::SendFileComplete => self.file_end(data, true).await,
            MessageType::SendFileCancel => self.file_end(data, false).await,
            MessageType::SendFileAck => self.file_ack(data).await,
            MessageType::Kick => self.kick(data).await,
            MessageType::SendDirect => self.send_direct(data).await,
            MessageType::SetRoomSecret => self.set_room_secret(data).await,
            MessageType::Match(_) => Err(texts::MATCH_DISABLED),
            MessageType::Unknown(t) => {
                tracing::debug!(message_type = t, "unknown message type ignored");
                Ok(())
            }
        };
        if let Err(reject) = result {
            self.reject(&reject);
        }
    }

    /// Traced (a rare operation): the room id and member id only.
    #[tracing::instrument(
        name = "create_room",
        skip_all,
        fields(room = tracing::field::Empty, member = %self.id)
    )]
    async fn create_room(&mut self, data: &ValueRef<'_>) -> Result<(), Reject> {
        if self.current_room().is_some() {
            return Err(texts::ALREADY_IN_ROOM);
        }
        let request = CreateRoom::parse(data)?;
        self.spend_room_change()?;
        let _permit = self.enter_join_gate()?;
        let listing = request.public.then(|| ListingRequest {
            title: request.title.to_owned(),
            description: request.description.to_owned(),
            tags: request.tags.iter().map(|t| (*t).to_owned()).collect(),
            key_encoded: request.key_encoded.to_owned(),
        });
        let created = self
            .relay
            .authority
            .create_room(CreateRoomRequest {
                password: request.password.to_owned(),
                ephemeral: request.ephemeral,
                expiry_secs: request.expiry,
                listing,
                client_ip: Some(self.ip),
                owner_hash: request.owner_hash.to_owned(),
            })
            .await?;
        let room_id = created.room.id.clone();
        tracing::Span::current().record("room", room_id.as_str());
        let joined = self
            .join_store(&room_id, request.name, Credentials::Creator)
            .await?;
        self.reply(server::encode(
            kind::ROOM_CREATED,
            &RoomCreated {
                room_id: &room_id,
                expires_at: created.room.expires_at,
            },
        ));
        self.enter_room(joined, request.name).await?;
        tracing::info!(room = %room_id, member = %self.id, "room created");
        if let Some(listing_error) = created.listing_error {
            self.reject(&listing_error);
        }
        Ok(())
    }

    /// Traced (a rare operation): the room id and member id only.
    #[tracing::instrument(
        name = "join_room",
        skip_all,
        fields(room = tracing::field::Empty, member = %self.id)
    )]
    async fn join_room(&mut self, data: &ValueRef<'_>) -> Result<(), Reject> {
        if self.current_room().is_some() {
            return Err(texts::ALREADY_IN_ROOM);
        }
        let request = JoinRoom::parse(data)?;
        self.spend_room_change()?;
        let _permit = self.enter_join_gate()?;
        if !client::is_room_id(request.room_id) {
            return Err(texts::ROOM_NOT_FOUND);
        }
        tracing::Span::current().record("room", request.room_id);
        let credentials = Credentials::of_joiner(request.password, request.ticket);
        let joined = self
            .join_store(request.room_id, request.name, credentials)
            .await?;
        let room_id = joined.room.id.clone();
        let color = member_color(self.id.as_str());
        let member_joined = server::encode(
            kind::MEMBER_JOINED,
            &MemberView {
                id: self.id.as_str(),
                name: request.name,
                color: &color,
            },
        );
        self.enter_room(joined, request.name).await?;
        let room = self.in_room()?;
        // Best effort: the joiner is in; a bus failure only hides the notice.
        let _ = self.to_others(&room, member_joined).await;
        // Debug, not info: one line per join is ~10k lines/s on a busy
        // cluster; joins are counted in
        // `arthas_relay_frames_out_total{type="room_joined"}`.
        tracing::debug!(room = %room_id, member = %self.id, "member joined");
        Ok(())
    }

    /// Spends one room change (a well-formed CreateRoom or JoinRoom), before
    /// any store or gateway work.
    fn spend_room_change(&mut self) -> Result<(), Reject> {
        match self.budgets.spend(&self.relay.rates, Kind::RoomChange) {
            Verdict::Go => Ok(()),
            Verdict::PauseThenGo(_) | Verdict::Refuse => Err(texts::RATE_LIMITED),
        }
    }

    /// One of the relay's `max_joins_in_flight` permits, held until the join
    /// is done; none left: E005 (retry) before any work.
    fn enter_join_gate(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Reject> {
        self.relay.joins.try_enter().ok_or_else(|| {
            self.relay.metrics.joins_refused.inc();
            texts::UNAVAILABLE
        })
    }

    /// Adds this member to the room record, checking its credentials
    /// through the gateway when the store says the room has a password.
    async fn join_store(
        &mut self,
        room_id: &str,
        name: &str,
        credentials: Credentials<'_>,
    ) -> Result<Joined, Reject> {
        // A room this relay hosts but the store has lost is written back
        // once (crate::heal) before a join is refused with E001.
        let mut restored = false;
        let mut password_checked = matches!(credentials, Credentials::Creator);
        for _ in 0..MEMBER_ID_ATTEMPTS {
            self.joined_at = self.relay.config.clock.now_millis();
            let member = MemberRecord {
                id: self.id,
                name: name.to_owned(),
                color: member_color(self.id.as_str()),
                node: self.relay.config.node_id.clone(),
                joined_at: self.joined_at,
            };
            let now = self.relay.config.clock.now_secs();
            match self
                .relay
                .store
                .join(room_id, member, password_checked, now)
                .await
            {
                Ok(joined) => return Ok(joined),
                Err(JoinError::NeedsPassword) if !password_checked => {
                    let authority = &self.relay.authority;
                    match credentials {
                        Credentials::Password(password) => {
                            authority.check_password(room_id, password, self.ip).await?
                        }
                        Credentials::Ticket(ticket) => {
                            authority.redeem_ticket(room_id, ticket).await?
                        }
                        Credentials::Creator => {}
                    }
                    password_checked = true;
                }
                Err(JoinError::IdTaken) => self.id = random_member_id(),
                Err(JoinError::NotFound)
                    if !restored && crate::heal::restore_hosted(&self.relay, room_id).await =>
                {
                    restored = true;
                }
                Err(JoinError::NotFound) => return Err(texts::ROOM_NOT_FOUND),
                Err(JoinError::Expired) => return Err(texts::ROOM_EXPIRED),
                Err(JoinError::Full) => return Err(texts::ROOM_FULL),
                Err(JoinError::NeedsPassword) => return Err(texts::WRONG_PASSWORD),
                Err(JoinError::Store(e)) => {
                    tracing::error!(room = %room_id, error = %e, "join failed");
                    // It may have been written all the same (the reply was
                    // lost or late): take it back, and never reuse the id.
                    crate::join_gate::roll_back(&self.relay, room_id, self.id).await;
                    self.id = random_member_id();
                    return Err(texts::UNAVAILABLE);
                }
            }
        }
        Err(texts::UNAVAILABLE)
    }

    /// Enters the local index (subscribing if needed) with RoomJoined as the
    /// member's first frame from the room.
    async fn enter_room(&mut self, joined: Joined, name: &str) -> Result<(), Reject> {
        let room = &joined.room;
        let members: Vec<MemberView<'_>> = joined
            .members
            .iter()
            .map(|m| MemberView {
                id: m.id.as_str(),
                name: &m.name,
                color: &m.color,
            })
            .collect();
        let room_joined = server::encode(
            kind::ROOM_JOINED,
            &RoomJoined {
                room_id: &room.id,
                members,
                has_password: room.has_password(),
                ephemeral: room.ephemeral,
                expires_at: room.expires_at,
            },
        );
        let member = LocalMember {
            id: self.id,
            peer: self.peer.clone(),
            name: Arc::from(name),
            joined_at: self.joined_at,
        };
        let relay = &self.relay;
        match relay
            .hub
            .join(relay.bus.as_ref(), room, member, room_joined)
            .await
        {
            Ok(local) => {
                local.reach.joined(&joined.members);
                if local.facts.first_secrets_read() || local.members().len() == 1 {
                    // Kept in case the store loses the room (crate::heal),
                    // read after subscribing so no change is missed; read
                    // again by the first member back in a room that
                    // lingered empty here (it may have missed a change).
                    let (relay, local) = (relay.clone(), local.clone());
                    self.relay.tasks.spawn(async move {
                        crate::heal::refresh_secrets(&relay, &local).await;
                    });
                }
                if local.facts.needs_listing() {
                    // Kept in case the store loses it (crate::heal); read
                    // aside, so the join does not wait for it.
                    let (relay, local) = (relay.clone(), local.clone());
                    self.relay.tasks.spawn(async move {
                        match relay.store.listing(&local.id).await {
                            Ok(Some(listing)) => local.facts.set_listing(listing),
                            Ok(None) => {}
                            Err(e) => {
                                tracing::debug!(room = %local.id, error = %e, "listing not read")
                            }
                        }
                    });
                }
                self.room = Some(local);
                self.name = name.to_owned();
                Ok(())
            }
            Err(e) => {
                tracing::error!(room = %room.id, error = %e, "subscribe failed; join rolled back");
                let _ = relay
                    .store
                    .leave(&room.id, self.id, &relay.config.node_id)
                    .await;
                Err(texts::UNAVAILABLE)
            }
        }
    }

    /// Leaves the current room (LeaveRoom, or disconnect): MemberLeft to the
    /// others, the room destroyed when it empties. An expired room is just
    /// forgotten.
    pub async fn leave_room(&mut self) {
        let Some(room) = self.current_room() else {
            return;
        };
        self.room = None;
        // Traced (a rare operation): the room id and member id only.
        let span = tracing::info_span!("leave_room", room = %room.id, member = %self.id);
        async {
            let relay = &self.relay;
            relay.hub.leave(relay.bus.as_ref(), &room, self.id).await;
            match relay
                .store
                .leave(&room.id, self.id, &relay.config.node_id)
                .await
            {
                // Not a member any more and the room not destroyed: the
                // store lost the member (crate::heal) or a sweep removed it;
                // the others are told (again) so nobody keeps a ghost.
                Ok(left) if !left.destroyed => {
                    let frame = server::encode(
                        kind::MEMBER_LEFT,
                        &MemberLeft {
                            id: self.id.as_str(),
                            reason: "",
                        },
                    );
                    let _ = self
                        .publish(&room, Target::Room { except: None }, frame)
                        .await;
                }
                Ok(left) => {
                    if left.destroyed {
                        tracing::info!(room = %room.id, "room destroyed: last member left");
                    }
                }
                Err(e) => tracing::warn!(room = %room.id, error = %e, "leave not recorded"),
            }
        }
        .instrument(span)
        .await
    }

    /// The connection ended: an active transfer is cancelled for the others
    /// before the member leaves.
    pub async fn disconnect(&mut self) {
        let Some(room) = self.current_room() else {
            return;
        };
        let cancelled = self.peer.transfers.active().map(|t| t.cancel());
        if let Some(transfer_id) = cancelled {
            let frame = server::file_cancel(self.id.as_str(), &transfer_id);
            let _ = self.to_others(&room, frame).await;
        }
        self.leave_room().await;
    }

    /// Records an accepted chat message, or refuses it (sliding window).
    fn check_chat_rate(&mut self) -> Result<(), Reject> {
        let now = Instant::now();
        let window = self.relay.config.chat_rate_window;
        while self
            .chat_times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            self.chat_times.pop_front();
        }
        if self.chat_times.len() >= self.relay.config.chat_rate_limit {
            return Err(texts::RATE_LIMITED);
        }
        self.chat_times.push_back(now);
        Ok(())
    }

    /// Hot path: one chat message, encoded once, published once.
    async fn send_message(&mut self, data: &ValueRef<'_>) -> Result<(), Reject> {
        let room = self.in_room()?;
        let message = Sealed::parse_message(data)?;
        self.check_chat_rate()?;
        let now = self.relay.config.clock.now_millis();
        let frame = self.relayed(kind::RELAY_MESSAGE, &message, now);
        self.to_others(&room, frame).await?;
        if room.listed {
            if let Err(e) = self.relay.store.count_activity(&room.id, now).await {
                tracing::debug!(room = %room.id, error = %e, "activity not counted");
            }
        }
        Ok(())
    }

    fn relayed(&self, message_type: u8, sealed: &Sealed<'_>, t: i64) -> Bytes {
        let relayed = Relayed {
            sender_id: self.id.as_str(),
            sender_name: &self.name,
            iv: sealed.iv,
            ciphertext: sealed.ciphertext,
            t,
        };
        let hint = sealed.iv.len() + sealed.ciphertext.len() + self.name.len();
        server::encode_sized(message_type, &relayed, hint)
    }

    async fn send_reaction(&mut self, data: &ValueRef<'_>) -> Result<(), Reject> {
        let room = self.in_room()?;
        let reaction = Sealed::parse_reaction(data)?;
        let frame = self.relayed(
            kind::RELAY_REACTION,
            &reaction,
            self.relay.config.clock.now_millis(),
        );
        self.to_others(&room, frame).await
    }

    async fn typing(&mut self, data: &ValueRef<'_>) -> Result<(), Reject> {
        let room = self.in_room()?;
        let typing = Typing::parse(data)?;
        let frame = server::encode(
            kind::MEMBER_TYPING,
            &MemberTyping {
                id: self.id.as_str(),
                typing: typing.typing,
                iv: typing.iv,
                ciphertext: typing.ciphertext,
            },
        );
        self.to_others(&room, frame).await
    }

    async fn file_meta(&mut self, data: &ValueRef<'_>) -> Result<(), Reject> {
        let room = self.in_room()?;
        if self.peer.transfers.active().is_some() {
            return Err(texts::ACTIVE_TRANSFER);
        }
        let meta = FileMeta::parse(data)?;
        self.check_transfer_id(meta.transfer_id)?;
        self.peer
            .transfers
            .start(meta.transfer_id)
            .map_err(|_| texts::ACTIVE_TRANSFER)?;
        let frame = server::encode_sized(
            kind::RELAY_FILE_META,
            &RelayFileMeta {
                sender_id: self.id.as_str(),
                sender_name: &self.name,
                transfer_id: meta.transfer_id,
                iv: meta.iv,
                ciphertext: meta.ciphertext,
                t: self.relay.config.clock.now_millis(),
            },
            meta.ciphertext.len() + meta.transfer_id.len(),
        );
        self.to_others(&room, frame).await
    }

    /// A transfer id is kept while its transfer runs and travels in bus
    /// headers: it may be at most `max_transfer_id_bytes` long, and never
    /// longer than the bus carries.
    fn check_transfer_id(&self, transfer_id: &str) -> Result<(), Reject> {
        let limit = self
            .relay
            .config
            .max_transfer_id_bytes
            .min(store::MAX_TRANSFER_ID_BYTES);
        if transfer_id.len() > limit {
            return Err(texts::TRANSFER_ID_TOO_LONG);
        }
        Ok(())
    }

    /// The active transfer, if it is `transfer_id`.
    fn check_transfer(&self, transfer_id: &str) -> Result<ActiveTransfer<'_>, Reject> {
        self.peer
            .transfers
            .active_matching(transfer_id)
            .ok_or(texts::TRANSFER_MISMATCH)
    }

    async fn file_chunk(&mut self, data: &ValueRef<'_>) -> Result<(), Reject> {
        let room = self.in_room()?;
        let chunk = FileChunk::parse(data)?;
        drop(self.check_transfer(chunk.transfer_id)?);
        let frame = server::encode_sized(
            kind::RELAY_FILE_CHUNK,
            &RelayFileChunk {
                sender_id: self.id.as_str(),
                transfer_id: chunk.transfer_id,
                index: chunk.index,
                iv: chunk.iv,
                data: chunk.data,
            },
            chunk.data.len() + chunk.iv.len() + chunk.transfer_id.len(),
        );
        self.to_others(&room, frame).await
    }

    /// SendFileComplete (`completed`) and SendFileCancel.
    async fn file_end(&mut self, data: &ValueRef<'_>, completed: bool) -> Result<(), Reject> {
        let room = self.in_room()?;
        let reference = if completed {
            TransferRef::parse_complete(data)?
        } else {
            TransferRef::parse_cancel(data)?
        };
        let transfer = self.check_transfer(reference.transfer_id)?;
        if completed {
            transfer.complete();
        } else {
            transfer.cancel();
        }
        let message_type = if completed {
            kind::RELAY_FILE_COMPLETE
        } else {
            kind::RELAY_FILE_CANCEL
        };
        let frame = server::encode(
            message_type,
            &RelayFileRef {
                sender_id: self.id.as_str(),
                transfer_id: reference.transfer_id,
            },
        );
        self.to_others(&room, frame).await
    }

    /// An ack goes to the transfer's sender only, on whichever relay it is.
    async fn file_ack(&mut self, data: &ValueRef<'_>) -> Result<(), Reject> {
        let room = self.in_room()?;
        let ack = TransferRef::parse_ack(data)?;
        self.check_transfer_id(ack.transfer_id)?;
        let frame = server::encode(
            kind::RELAY_FILE_ACK,
            &RelayFileAck {
                receiver_id: self.id.as_str(),
                transfer_id: ack.transfer_id,
            },
        );
        let target = Target::TransferSender {
            transfer_id: ack.transfer_id.to_owned(),
        };
        self.publish(&room, target, frame).await
    }
}

/// The room-owner extension (PROTOCOL.md §2.9; the relay side of the kick is
/// in [`crate::owner`]).
impl Session {
    /// Kick: the owner removes a member, on whichever relay it is.
    async fn kick(&mut self, data: &ValueRef<'_>) -> Result<(), Reject> {
        let room = self.in_room()?;
        let (kick, member) = client::Kick::parse(data)?;
        self.spend_room_change()?;
        self.check_owner(&room, kick.owner).await?;
        let frame = server::encode(
            kind::ROOM_CLOSED,
            &server::RoomClosed {
                reason: kick.reason.as_str(),
            },
        );
        let target = Target::Kick {
            member,
            reason: kick.reason,
        };
        self.publish(&room, target, frame).await
    }

    /// The owner secret must hash to the room record's owner hash.
    async fn check_owner(&self, room: &LocalRoom, secret: &str) -> Result<(), Reject> {
        match self.relay.store.owner_hash(&room.id).await {
            Ok(Some(stored)) if crate::owner::owns(&stored, secret) => Ok(()),
            Ok(Some(_)) => Err(texts::NOT_OWNER),
            Ok(None) => Err(Reject::new(
                protocol::ErrorCode::NotInRoom,
                "room no longer exists",
            )),
            Err(e) => {
                tracing::warn!(room = %room.id, error = %e, "owner check failed");
                Err(texts::UNAVAILABLE)
            }
        }
    }

    /// SendDirect: an encrypted message to one member only.
    async fn send_direct(&mut self, data: &ValueRef<'_>) -> Result<(), Reject> {
        let room = self.in_room()?;
        let (direct, to) = client::Direct::parse(data, self.relay.config.max_direct_bytes)?;
        let frame = server::encode_sized(
            kind::RELAY_DIRECT,
            &server::RelayDirect {
                sender_id: self.id.as_str(),
                iv: direct.iv,
                ciphertext: direct.ciphertext,
                t: self.relay.config.clock.now_millis(),
            },
            direct.iv.len() + direct.ciphertext.len(),
        );
        self.publish(&room, Target::Member { id: to }, frame).await
    }

    /// SetRoomSecret: the owner sets a new join password and/or hands the
    /// capability over (the gateway hashes and checks).
    async fn set_room_secret(&mut self, data: &ValueRef<'_>) -> Result<(), Reject> {
        let room = self.in_room()?;
        let request = client::SetRoomSecret::parse(data)?;
        self.spend_room_change()?;
        let answer = server::RoomSecretSet {
            password: request.password.is_some(),
            owner: request.owner_hash.is_some(),
        };
        self.relay
            .authority
            .set_room_secret(
                &room.id,
                gateway::RoomSecretRequest {
                    owner: request.owner.to_owned(),
                    password: request.password.map(str::to_owned),
                    owner_hash: request.owner_hash.map(str::to_owned),
                },
            )
            .await?;
        // Every relay hosting the room reads the new secrets, to write back
        // the current ones if the store loses the room (crate::heal); this
        // one reads them itself if the bus did not take the message.
        let changed = self
            .relay
            .publish(&room.id, Target::SecretsChanged, bytes::Bytes::new())
            .await;
        if changed.is_err() {
            crate::heal::refresh_secrets(&self.relay, &room).await;
        }
        self.reply(server::encode(kind::ROOM_SECRET_SET, &answer));
        Ok(())
    }
}

impl Application for Session {
    async fn message(&mut self, _text: bool, payload: Vec<u8>) {
        self.handle(&payload).await
    }

    fn app_pings(&self) -> bool {
        true
    }

    fn ping_sent(&mut self, t: i64) {
        self.ping_sent = Some((t, Instant::now()));
    }

    async fn disconnect(&mut self) {
        Session::disconnect(self).await
    }
}

impl Drop for Session {
    /// The guard: a session dropped while still in a room never ran its
    /// disconnect (its task panicked or was cancelled). Nothing may be
    /// left behind: the outbox refuses further frames at once, and the
    /// disconnect runs in a task of its own.
    fn drop(&mut self) {
        let Some(room) = self.room.take() else {
            return;
        };
        self.peer.outbox.close(close_code::INTERNAL_ERROR);
        if self.orphan {
            return;
        }
        tracing::warn!(room = %room.id, member = %self.id, "connection ended without leaving its room; leaving now");
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime (the process is exiting): presence expiry and the
            // dead-relay sweep clean up instead.
            return;
        };
        let mut orphan = Session {
            relay: self.relay.clone(),
            peer: self.peer.clone(),
            ip: self.ip,
            id: self.id,
            name: std::mem::take(&mut self.name),
            joined_at: self.joined_at,
            room: Some(room),
            chat_times: VecDeque::new(),
            orphan: true,
            budgets: ConnectionBudgets::default(),
            ping_sent: None,
        };
        self.relay
            .tasks
            .spawn_on(async move { orphan.disconnect().await }, &runtime);
    }
}

/// The budget a client message spends, if any (`frame_len`: its size).
fn budget_kind(t: MessageType, frame_len: usize) -> Option<Kind> {
    match t {
        MessageType::Typing => Some(Kind::Typing),
        MessageType::SendReaction => Some(Kind::Reaction),
        MessageType::SendFileMeta
        | MessageType::SendFileChunk
        | MessageType::SendFileComplete
        | MessageType::SendFileCancel
        | MessageType::SendFileAck
        | MessageType::SendDirect => Some(Kind::File(frame_len)),
        // Room changes are counted once parsed (spend_room_change).
        MessageType::CreateRoom
        | MessageType::JoinRoom
        | MessageType::SendMessage
        | MessageType::LeaveRoom
        | MessageType::Pong
        | MessageType::Match(_)
        | MessageType::Unknown(_)
        | MessageType::Kick
        | MessageType::SetRoomSecret => None,
    }
}
