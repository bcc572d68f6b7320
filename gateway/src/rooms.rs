//! Creating rooms and checking passwords.

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use protocol::reject::texts;
use protocol::Reject;
use rand::Rng;
use store::{Listing, NewRoom, RoomRecord, RoomStore};

use crate::listing;
use crate::metrics::{GatewayMetrics, Operation};
use crate::password::{PasswordConfig, PasswordError, PasswordHasherPool};
use crate::ticket::{IssuedTicket, TicketError, TicketSigner};

/// The NanoID alphabet (64 symbols, so a random byte maps without bias).
const NANOID_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
/// Room ids are 21 NanoID characters.
const ROOM_ID_LEN: usize = 21;
/// Attempts at a fresh id before giving up (a collision is ~2^-126).
const ROOM_ID_ATTEMPTS: usize = 3;

/// Bytes of the random ticket secret made when none is configured.
const GENERATED_TICKET_SECRET_BYTES: usize = 32;

/// One random ticket secret per process, shared by every default config, so
/// two `GatewayConfig::default()` in one process accept each other's tickets.
pub fn process_ticket_secret() -> Vec<u8> {
    static SECRET: OnceLock<Vec<u8>> = OnceLock::new();
    SECRET
        .get_or_init(|| {
            (0..GENERATED_TICKET_SECRET_BYTES)
                .map(|_| rand::random::<u8>())
                .collect()
        })
        .clone()
}

/// The gateway's limits.
#[derive(Clone)]
pub struct GatewayConfig {
    /// Members a new room takes.
    pub max_room_members: u32,
    /// Longest room lifetime; longer requests are clamped (seconds).
    pub max_expiry_secs: i64,
    /// A created room nobody joins vanishes after this long.
    pub unjoined_room_ttl: Duration,
    /// Most publicly listed rooms (daily topics aside).
    pub max_public_rooms: usize,
    /// The window in which wrong password guesses are counted.
    pub password_guess_window: Duration,
    /// Wrong guesses per room per window before further guesses get E004.
    pub max_password_guesses_per_room: u64,
    /// Wrong guesses per client IP per window before further guesses get E004.
    pub max_password_guesses_per_ip: u64,
    /// argon2id cost and pool bounds.
    pub password: PasswordConfig,
    /// HMAC key of join tickets. Every gateway replica (and every relay with
    /// an in-process gateway) that must accept a ticket needs the same one;
    /// the default is a random secret per process. Never logged.
    pub ticket_secret: Vec<u8>,
    /// How long an issued join ticket stays valid.
    pub ticket_ttl: Duration,
}

impl fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("max_room_members", &self.max_room_members)
            .field("max_expiry_secs", &self.max_expiry_secs)
            .field("unjoined_room_ttl", &self.unjoined_room_ttl)
            .field("max_public_rooms", &self.max_public_rooms)
            .field("password_guess_window", &self.password_guess_window)
            .field(
                "max_password_guesses_per_room",
                &self.max_password_guesses_per_room,
            )
            .field(
                "max_password_guesses_per_ip",
                &self.max_password_guesses_per_ip,
            )
            .field("password", &self.password)
            .field("ticket_secret", &"<redacted>")
            .field("ticket_ttl", &self.ticket_ttl)
            .finish()
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            max_room_members: 50,
            max_expiry_secs: 604_800,
            unjoined_room_ttl: Duration::from_secs(60),
            max_public_rooms: 200,
            password_guess_window: Duration::from_secs(300),
            max_password_guesses_per_room: 10,
            max_password_guesses_per_ip: 30,
            password: PasswordConfig::default(),
            ticket_secret: process_ticket_secret(),
            ticket_ttl: Duration::from_secs(60),
        }
    }
}

/// What a creator asks for (CreateRoom, after the relay's format checks).
#[derive(Debug, Clone, Default)]
pub struct CreateRoomRequest {
    /// "" or the client's 64-character SHA-256 hex.
    pub password: String,
    pub ephemeral: i64,
    /// Requested lifetime in seconds; clamped to `0..=max_expiry_secs`.
    pub expiry_secs: i64,
    /// Public directory request, when `public` was true.
    pub listing: Option<ListingRequest>,
}

/// The public-listing part of CreateRoom.
#[derive(Debug, Clone, Default)]
pub struct ListingRequest {
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub key_encoded: String,
}

/// A created room, and what became of its public listing.
#[derive(Debug, Clone)]
pub struct CreatedRoom {
    pub room: NewRoomSummary,
    /// E010/E011 to send after RoomJoined (the room stays, private).
    pub listing_error: Option<Reject>,
}

/// What the creator of a room (a relay, the HTTP API) learns of it: its
/// record without the password's argon2id hash, which never leaves the
/// gateway and the store (only the gateway verifies passwords).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRoomSummary {
    pub id: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; 0 = never.
    pub expires_at: i64,
    pub ephemeral: i64,
    /// Joining needs the password.
    pub has_password: bool,
    pub capacity: u32,
    /// In the public directory.
    pub listed: bool,
}

impl From<&RoomRecord> for NewRoomSummary {
    fn from(r: &RoomRecord) -> NewRoomSummary {
        NewRoomSummary {
            id: r.id.clone(),
            created_at: r.created_at,
            expires_at: r.expires_at,
            ephemeral: r.ephemeral,
            has_password: r.has_password(),
            capacity: r.capacity,
            listed: r.listed,
        }
    }
}

/// Room creation and password checks over a [`RoomStore`].
#[derive(Clone)]
pub struct Gateway {
    store: Arc<dyn RoomStore>,
    config: Arc<GatewayConfig>,
    passwords: PasswordHasherPool,
    tickets: TicketSigner,
    metrics: GatewayMetrics,
}

/// What anyone may learn about a room by its id (GET /v1/rooms/{id}).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    pub room_id: String,
    pub has_password: bool,
    /// Unix seconds; 0 = never.
    pub expires_at: i64,
    /// Only for publicly listed rooms (the directory shows it anyway).
    pub member_count: Option<u32>,
}

/// Generates a 21-character NanoID.
pub fn new_room_id() -> String {
    let bytes: [u8; ROOM_ID_LEN] = rand::rng().random();
    bytes
        .iter()
        .map(|b| NANOID_ALPHABET[(b & 63) as usize] as char)
        .collect()
}

fn busy(e: PasswordError) -> Reject {
    tracing::warn!(error = %e, "password check refused");
    match e {
        PasswordError::Busy => Reject::new(
            protocol::ErrorCode::RateLimited,
            "too many password checks, try again later",
        ),
        PasswordError::Internal(_) => texts::UNAVAILABLE,
    }
}

impl Gateway {
    /// A gateway over `store`.
    pub fn new(store: Arc<dyn RoomStore>, config: GatewayConfig) -> Result<Gateway, PasswordError> {
        let passwords = PasswordHasherPool::new(&config.password)?;
        let tickets = TicketSigner::new(&config.ticket_secret, config.ticket_ttl);
        Ok(Gateway {
            store,
            config: Arc::new(config),
            passwords,
            tickets,
            metrics: GatewayMetrics::new(),
        })
    }

    /// The limits in force.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// The gateway's Prometheus metrics.
    pub fn metrics(&self) -> &GatewayMetrics {
        &self.metrics
    }

    /// The store behind the gateway.
    pub fn store(&self) -> &Arc<dyn RoomStore> {
        &self.store
    }

    /// Creates an empty room (the relay then joins the creator). Clamps the
    /// expiry, hashes the password with argon2id, lists the room publicly
    /// when asked and allowed.
    pub async fn create_room(&self, request: CreateRoomRequest) -> Result<CreatedRoom, Reject> {
        let result = self.create_room_counted(request).await;
        self.metrics.outcome(Operation::CreateRoom, result)
    }

    async fn create_room_counted(&self, request: CreateRoomRequest) -> Result<CreatedRoom, Reject> {
        let now = store::unix_secs();
        let expiry = request.expiry_secs.clamp(0, self.config.max_expiry_secs);
        let expires_at = if expiry > 0 { now + expiry } else { 0 };
        let password_hash = if request.password.is_empty() {
            String::new()
        } else {
            self.passwords.hash(request.password).await.map_err(busy)?
        };
        let mut record = RoomRecord {
            id: String::new(),
            created_at: now,
            expires_at,
            ephemeral: request.ephemeral,
            password_hash,
            capacity: self.config.max_room_members,
            listed: false,
        };
        let mut created = false;
        for _ in 0..ROOM_ID_ATTEMPTS {
            record.id = new_room_id();
            let new_room = NewRoom {
                record: record.clone(),
                unjoined_ttl: self.config.unjoined_room_ttl,
            };
            match self.store.create_room(new_room).await {
                Ok(true) => {
                    created = true;
                    break;
                }
                Ok(false) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "room creation failed");
                    return Err(texts::FAILED_TO_CREATE);
                }
            }
        }
        if !created {
            return Err(texts::FAILED_TO_CREATE);
        }
        let listing_error = match request.listing {
            Some(listing) => self.list(&mut record, listing).await.err(),
            None => None,
        };
        Ok(CreatedRoom {
            room: NewRoomSummary::from(&record),
            listing_error,
        })
    }

    async fn list(&self, record: &mut RoomRecord, request: ListingRequest) -> Result<(), Reject> {
        let tags: Vec<&str> = request.tags.iter().map(String::as_str).collect();
        let text = listing::validate(&request.title, &request.description, &tags)?;
        if request.key_encoded.is_empty() {
            return Err(texts::KEY_REQUIRED);
        }
        let listing = Listing {
            room_id: record.id.clone(),
            title: text.title,
            description: text.description,
            tags: text.tags,
            share_code: format!(
                "{}:{}:{}:{}",
                record.id, request.key_encoded, record.ephemeral, record.expires_at
            ),
            has_password: record.has_password(),
            created_at: record.created_at,
            expires_at: record.expires_at,
            is_daily_topic: false,
        };
        match self
            .store
            .list_room(listing, self.config.max_public_rooms)
            .await
        {
            Ok(true) => {
                record.listed = true;
                Ok(())
            }
            Ok(false) => Err(texts::HUB_FULL),
            Err(e) => {
                tracing::error!(error = %e, room = %record.id, "listing failed");
                Err(texts::HUB_FULL)
            }
        }
    }

    /// Issues a join ticket for `room_id`. The caller has checked the
    /// password already (an HTTP client) or created the room itself.
    pub async fn issue_ticket(&self, room_id: &str) -> Result<IssuedTicket, Reject> {
        let result = self
            .tickets
            .issue(room_id, store::unix_secs())
            .map_err(|_| texts::ROOM_NOT_FOUND);
        self.metrics.outcome(Operation::IssueTicket, result)
    }

    /// Redeems a join ticket: signature, expiry and room, then single use
    /// through the store (so it holds across replicas). Any refusal is
    /// E006 "invalid ticket"; a store failure is the "unavailable" E005.
    pub async fn redeem_ticket(&self, room_id: &str, ticket: &str) -> Result<(), Reject> {
        let result = self.redeem_ticket_counted(room_id, ticket).await;
        self.metrics.outcome(Operation::RedeemTicket, result)
    }

    async fn redeem_ticket_counted(&self, room_id: &str, ticket: &str) -> Result<(), Reject> {
        let now = store::unix_secs();
        let verified = self.tickets.verify(ticket, room_id, now).map_err(|e| {
            tracing::info!(room = %room_id, reason = %e, "ticket refused");
            texts::INVALID_TICKET
        })?;
        match self
            .store
            .claim_once(&verified.claim_key(), verified.claim_ttl(now))
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => {
                tracing::info!(room = %room_id, reason = %TicketError::Used, "ticket refused");
                Err(texts::INVALID_TICKET)
            }
            Err(e) => {
                tracing::error!(error = %e, "ticket claim failed");
                Err(texts::UNAVAILABLE)
            }
        }
    }

    /// Public facts about a room: E001 when unknown, E007 when expired.
    pub async fn room_info(&self, room_id: &str) -> Result<RoomInfo, Reject> {
        let unavailable = |e: store::StoreError| {
            tracing::error!(error = %e, "room lookup failed");
            texts::UNAVAILABLE
        };
        let record = self
            .store
            .room(room_id)
            .await
            .map_err(unavailable)?
            .ok_or(texts::ROOM_NOT_FOUND)?;
        if record.is_expired(store::unix_secs()) {
            return Err(texts::ROOM_EXPIRED);
        }
        let member_count = if record.listed {
            self.store
                .listings(store::unix_millis())
                .await
                .map_err(unavailable)?
                .into_iter()
                .find(|view| view.listing.room_id == record.id)
                .map(|view| view.member_count)
        } else {
            None
        };
        Ok(RoomInfo {
            has_password: record.has_password(),
            expires_at: record.expires_at,
            room_id: record.id,
            member_count,
        })
    }

    /// Whether the store answers (readiness).
    pub async fn store_ready(&self) -> bool {
        self.store.room("").await.is_ok()
    }

    fn guess_keys(room_id: &str, ip: IpAddr) -> (String, String) {
        (format!("guess:room:{room_id}"), format!("guess:ip:{ip}"))
    }

    /// Checks a join password for a room that has one. Order: wrong-guess
    /// limits (E004), room exists (E001), argon2id verify (E006). A wrong
    /// guess counts against the room and the client IP. Traced with the
    /// room id only.
    #[tracing::instrument(name = "check_password", skip_all, fields(room = %room_id))]
    pub async fn check_password(
        &self,
        room_id: &str,
        password: &str,
        ip: IpAddr,
    ) -> Result<(), Reject> {
        let result = self.check_password_counted(room_id, password, ip).await;
        self.metrics.outcome(Operation::CheckPassword, result)
    }

    async fn check_password_counted(
        &self,
        room_id: &str,
        password: &str,
        ip: IpAddr,
    ) -> Result<(), Reject> {
        let window = self.config.password_guess_window;
        let (room_key, ip_key) = Self::guess_keys(room_id, ip);
        let unavailable = |e: store::StoreError| {
            tracing::error!(error = %e, "guess counter unavailable");
            texts::UNAVAILABLE
        };
        let room_guesses = self
            .store
            .hit(&room_key, 0, window)
            .await
            .map_err(unavailable)?;
        let ip_guesses = self
            .store
            .hit(&ip_key, 0, window)
            .await
            .map_err(unavailable)?;
        if room_guesses >= self.config.max_password_guesses_per_room
            || ip_guesses >= self.config.max_password_guesses_per_ip
        {
            tracing::info!(room = %room_id, "password guess limit reached");
            return Err(texts::TOO_MANY_GUESSES);
        }
        let record = self
            .store
            .room(room_id)
            .await
            .map_err(unavailable)?
            .ok_or(texts::ROOM_NOT_FOUND)?;
        if !record.has_password() {
            return Ok(());
        }
        let ok = self
            .passwords
            .verify(password.to_owned(), record.password_hash)
            .await
            .map_err(busy)?;
        if ok {
            return Ok(());
        }
        self.store
            .hit(&room_key, 1, window)
            .await
            .map_err(unavailable)?;
        self.store
            .hit(&ip_key, 1, window)
            .await
            .map_err(unavailable)?;
        Err(texts::WRONG_PASSWORD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::memory::{MemoryEngine, MemoryLimits};

    fn gateway(limit: u64) -> Gateway {
        let config = GatewayConfig {
            max_password_guesses_per_room: limit,
            password: PasswordConfig {
                memory_kib: 64,
                iterations: 1,
                ..PasswordConfig::default()
            },
            ..GatewayConfig::default()
        };
        Gateway::new(MemoryEngine::new(MemoryLimits::default()), config).unwrap()
    }

    #[test]
    fn room_ids_are_21_nanoid_characters() {
        let id = new_room_id();
        assert_eq!(id.len(), 21);
        assert!(id.bytes().all(|b| NANOID_ALPHABET.contains(&b)));
        assert_ne!(id, new_room_id());
    }

    #[tokio::test]
    async fn expiry_is_clamped_and_passwords_are_stored_as_argon2id() {
        let g = gateway(10);
        let created = g
            .create_room(CreateRoomRequest {
                password: "a".repeat(64),
                expiry_secs: 10_000_000,
                ..Default::default()
            })
            .await
            .unwrap();
        let room = created.room;
        assert!(room.has_password);
        let stored = g.store().room(&room.id).await.unwrap().unwrap();
        assert!(stored.password_hash.starts_with("$argon2id$"));
        assert!(!stored.password_hash.contains(&"a".repeat(64)));
        assert_eq!(room.expires_at - room.created_at, 604_800);
        let negative = g
            .create_room(CreateRoomRequest {
                expiry_secs: -5,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(negative.room.expires_at, 0);
    }

    #[tokio::test]
    async fn wrong_guesses_are_limited_per_room() {
        let g = gateway(2);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let room = g
            .create_room(CreateRoomRequest {
                password: "a".repeat(64),
                ..Default::default()
            })
            .await
            .unwrap()
            .room;
        assert_eq!(
            g.check_password(&room.id, &"b".repeat(64), ip).await,
            Err(texts::WRONG_PASSWORD)
        );
        assert_eq!(
            g.check_password(&room.id, &"b".repeat(64), ip).await,
            Err(texts::WRONG_PASSWORD)
        );
        assert_eq!(
            g.check_password(&room.id, &"a".repeat(64), ip).await,
            Err(texts::TOO_MANY_GUESSES)
        );
    }

    #[tokio::test]
    async fn listing_errors_leave_the_room_created() {
        let g = gateway(10);
        let created = g
            .create_room(CreateRoomRequest {
                listing: Some(ListingRequest {
                    title: "hello".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(created.listing_error, Some(texts::KEY_REQUIRED));
        assert!(!created.room.listed);
    }
}
