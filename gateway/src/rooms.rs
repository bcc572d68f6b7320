//! Creating rooms and checking passwords, with the abuse limits of both.
//!
//! Every limit is counted in the store, so it holds across gateway
//! replicas, and counted *before* the expensive work starts, so concurrent
//! requests cannot all slip under it:
//!
//! - **creations** come out of one budget per client key
//!   ([`edge::ClientKey`]) per minute, whichever path asks (the relays'
//!   CreateRoom, `POST /v1/rooms`); public listings out of another per hour;
//! - **password guesses** ([`Gateway::check_password`], the policy is in
//!   docs/SECURITY.md): a client's guesses across all rooms and its guesses
//!   on one room are budgets that refuse (E004); the room's guesses from
//!   everyone only slow checks down, with a delay that doubles per guess
//!   beyond a threshold up to a ceiling, so a stranger can never lock the
//!   members out. A guess is counted before argon2 runs and given back when
//!   it was right (or never checked), so members' joins cost no budget.

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use edge::ClientKey;
use protocol::reject::texts;
use protocol::Reject;
use rand::Rng;
use store::{Listing, NewRoom, RoomGuess, RoomRecord, RoomStore, SharedClock};

use crate::listing;
use crate::metrics::{GatewayMetrics, Operation};
use crate::password::{PasswordConfig, PasswordError, PasswordHasherPool};
use crate::refund::Refund;
use crate::ticket::{IssuedTicket, TicketError, TicketSigner};

/// The NanoID alphabet (64 symbols, so a random byte maps without bias).
const NANOID_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
/// Room ids are 21 NanoID characters.
const ROOM_ID_LEN: usize = 21;
/// Attempts at a fresh id before giving up (a collision is ~2^-126).
const ROOM_ID_ATTEMPTS: usize = 3;

/// The window of the room-creation budget.
const CREATION_WINDOW: Duration = Duration::from_secs(60);
/// The window of the public-listing budget.
const LISTING_WINDOW: Duration = Duration::from_secs(3600);

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
    /// Room creations per client key per minute, every path together.
    pub room_creations_per_minute: u64,
    /// Public listings per client key per hour; beyond it a room is created
    /// private (E004 after RoomJoined).
    pub public_listings_per_hour: u64,
    /// The window in which password guesses are counted.
    pub password_guess_window: Duration,
    /// Guesses per room per window (everyone's) before each further check of
    /// the room is delayed. Never a refusal.
    pub max_password_guesses_per_room: u64,
    /// Guesses per (room, client key) per window before that client gets
    /// E004 on that room.
    pub max_password_guesses_per_room_ip: u64,
    /// Guesses per client key per window, all rooms, before E004.
    pub max_password_guesses_per_ip: u64,
    /// The delay of the first guess beyond the room's threshold; it doubles
    /// with each further guess.
    pub password_guess_delay: Duration,
    /// The longest delay of a guess.
    pub password_guess_max_delay: Duration,
    /// argon2id cost and pool bounds.
    pub password: PasswordConfig,
    /// HMAC key of join tickets. Every gateway replica (and every relay with
    /// an in-process gateway) that must accept a ticket needs the same one;
    /// the default is a random secret per process. Never logged.
    pub ticket_secret: Vec<u8>,
    /// How long an issued join ticket stays valid.
    pub ticket_ttl: Duration,
    /// Where "now" comes from (room expiry, tickets, the directory); the
    /// system clock but in tests.
    pub clock: SharedClock,
}

impl fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("max_room_members", &self.max_room_members)
            .field("max_expiry_secs", &self.max_expiry_secs)
            .field("unjoined_room_ttl", &self.unjoined_room_ttl)
            .field("max_public_rooms", &self.max_public_rooms)
            .field("room_creations_per_minute", &self.room_creations_per_minute)
            .field("public_listings_per_hour", &self.public_listings_per_hour)
            .field("password_guess_window", &self.password_guess_window)
            .field(
                "max_password_guesses_per_room",
                &self.max_password_guesses_per_room,
            )
            .field(
                "max_password_guesses_per_room_ip",
                &self.max_password_guesses_per_room_ip,
            )
            .field(
                "max_password_guesses_per_ip",
                &self.max_password_guesses_per_ip,
            )
            .field("password_guess_delay", &self.password_guess_delay)
            .field("password_guess_max_delay", &self.password_guess_max_delay)
            .field("password", &self.password)
            .field("ticket_secret", &"<redacted>")
            .field("ticket_ttl", &self.ticket_ttl)
            .field("clock", &self.clock)
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
            room_creations_per_minute: 30,
            public_listings_per_hour: 10,
            password_guess_window: Duration::from_secs(300),
            max_password_guesses_per_room: 10,
            max_password_guesses_per_room_ip: 5,
            max_password_guesses_per_ip: 30,
            password_guess_delay: Duration::from_millis(250),
            password_guess_max_delay: Duration::from_secs(5),
            password: PasswordConfig::default(),
            ticket_secret: process_ticket_secret(),
            ticket_ttl: Duration::from_secs(60),
            clock: store::clock::system(),
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
    /// Who asks (by the edge rule): creations and listings come out of this
    /// client's budgets. `None` only from a relay too old to say (rolling
    /// upgrade): then no per-client budget applies.
    pub client_ip: Option<IpAddr>,
    /// Extension: "" or the SHA-256 hex of the owner secret the creator
    /// keeps (64 lowercase hex characters).
    pub owner_hash: String,
}

/// What an owner asks to change (extension, SetRoomSecret).
#[derive(Clone, Default)]
pub struct RoomSecretRequest {
    /// The owner secret (64 lowercase hex characters). Never logged.
    pub owner: String,
    /// A new join password's SHA-256 hex (64 characters).
    pub password: Option<String>,
    /// A new owner hash: the capability handed over.
    pub owner_hash: Option<String>,
}

impl fmt::Debug for RoomSecretRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomSecretRequest")
            .field("password", &self.password.is_some())
            .field("owner_hash", &self.owner_hash.is_some())
            .finish_non_exhaustive()
    }
}

/// SHA-256 hex of an owner secret: what the room record keeps.
pub fn owner_hash_of(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
        let metrics = GatewayMetrics::new();
        let passwords = PasswordHasherPool::new(&config.password, metrics.argon2.clone())?;
        let tickets = TicketSigner::new(&config.ticket_secret, config.ticket_ttl);
        Ok(Gateway {
            store,
            config: Arc::new(config),
            passwords,
            tickets,
            metrics,
        })
    }

    /// The limits in force.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// The clock this gateway decides by.
    pub fn clock(&self) -> &SharedClock {
        &self.config.clock
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
        // Clients send "" or the SHA-256 hex: anything else is refused
        // before it costs an argon2 run (the relay checks the length too).
        let password = &request.password;
        if !(password.is_empty() || (password.len() == 64 && password.is_ascii())) {
            return Err(Reject::invalid("invalid password format"));
        }
        if !(request.owner_hash.is_empty() || protocol::client::is_secret_hex(&request.owner_hash))
        {
            return Err(texts::INVALID_OWNER_HASH);
        }
        // Counted first: a burst of creations from one client cannot all
        // start hashing before the first is counted.
        let client = request.client_ip.map(ClientKey::of);
        let budget = match client {
            Some(client) => Some(
                self.take(
                    format!("create:{client}"),
                    self.config.room_creations_per_minute,
                    CREATION_WINDOW,
                )
                .await?
                .ok_or(texts::RATE_LIMITED)?,
            ),
            None => None,
        };
        let now = self.config.clock.now_secs();
        let expiry = request.expiry_secs.clamp(0, self.config.max_expiry_secs);
        let expires_at = if expiry > 0 {
            now.saturating_add(expiry)
        } else {
            0
        };
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
                keep_while_empty: false,
                owner_hash: request.owner_hash.clone(),
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
        // Spent: the room exists.
        if let Some(budget) = budget {
            budget.keep();
        }
        let listing_error = match request.listing {
            Some(listing) => self.list(&mut record, listing, client).await.err(),
            None => None,
        };
        Ok(CreatedRoom {
            room: NewRoomSummary::from(&record),
            listing_error,
        })
    }

    /// Takes one from the budget `key`: `Some(refund)` when taken, `None`
    /// when spent, the "unavailable" E005 when the store does not answer.
    async fn take(
        &self,
        key: String,
        limit: u64,
        window: Duration,
    ) -> Result<Option<Refund>, Reject> {
        match self.store.take(&key, limit, window).await {
            Ok(true) => Ok(Some(Refund::budget(&self.store, key))),
            Ok(false) => Ok(None),
            Err(e) => {
                tracing::error!(error = %e, "a budget could not be counted");
                Err(texts::UNAVAILABLE)
            }
        }
    }

    async fn list(
        &self,
        record: &mut RoomRecord,
        request: ListingRequest,
        client: Option<ClientKey>,
    ) -> Result<(), Reject> {
        let tags: Vec<&str> = request.tags.iter().map(String::as_str).collect();
        let text = listing::validate(&request.title, &request.description, &tags)?;
        if request.key_encoded.is_empty() {
            return Err(texts::KEY_REQUIRED);
        }
        if request.key_encoded.len() > listing::MAX_KEY_ENCODED_BYTES {
            return Err(texts::KEY_TOO_LONG);
        }
        let budget = match client {
            Some(client) => Some(
                self.take(
                    format!("listing:{client}"),
                    self.config.public_listings_per_hour,
                    LISTING_WINDOW,
                )
                .await
                .map_err(|_| texts::HUB_FULL)?
                .ok_or(texts::LISTING_RATE_LIMITED)?,
            ),
            None => None,
        };
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
                if let Some(budget) = budget {
                    budget.keep();
                }
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
            .issue(room_id, self.config.clock.now_secs())
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
        let now = self.config.clock.now_secs();
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
        if record.is_expired(self.config.clock.now_secs()) {
            return Err(texts::ROOM_EXPIRED);
        }
        let member_count = if record.listed {
            self.store
                .member_count(&record.id)
                .await
                .map_err(unavailable)?
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

    /// Checks a join password for a room that has one (docs/SECURITY.md,
    /// "Password guessing"). Order: the client's budget across rooms (E004),
    /// then atomically in the room's slot: the room exists (E001), has a
    /// password (else no check), the client's budget on it (E004), counted;
    /// then the room's delay; then argon2id (E006). A right password, or one
    /// never verified (argon2 busy, the caller gone), is given back. Traced
    /// with the room id only.
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
        let config = &self.config;
        let window = config.password_guess_window;
        let client = ClientKey::of(ip).to_string();
        let Some(client_guess) = self
            .take(
                format!("guess:{client}"),
                config.max_password_guesses_per_ip,
                window,
            )
            .await?
        else {
            tracing::info!(room = %room_id, "password guess limit of a client reached");
            return Err(texts::TOO_MANY_GUESSES);
        };
        let reserved = self
            .store
            .reserve_guess(
                room_id,
                &client,
                config.max_password_guesses_per_room_ip,
                window,
            )
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "guess counter unavailable");
                texts::UNAVAILABLE
            })?;
        let (password_hash, room_guesses) = match reserved {
            RoomGuess::NotFound => return Err(texts::ROOM_NOT_FOUND),
            RoomGuess::Open => {
                client_guess.now().await;
                return Ok(());
            }
            RoomGuess::Refused => {
                tracing::info!(room = %room_id, "password guess limit of a client on a room reached");
                return Err(texts::TOO_MANY_GUESSES);
            }
            RoomGuess::Reserved {
                password_hash,
                room_guesses,
            } => (password_hash, room_guesses),
        };
        let room_guess = Refund::guess(&self.store, room_id, &client);
        let delay = self.guess_delay(room_guesses);
        if !delay.is_zero() {
            tracing::info!(room = %room_id, delay_ms = delay.as_millis() as u64, "password check slowed down");
            tokio::time::sleep(delay).await;
        }
        let right = self
            .passwords
            .verify(password.to_owned(), password_hash)
            .await
            .map_err(busy)?;
        if right {
            tokio::join!(client_guess.now(), room_guess.now());
            return Ok(());
        }
        client_guess.keep();
        room_guess.keep();
        Err(texts::WRONG_PASSWORD)
    }

    /// Extension: the owner sets a new join password (argon2id, in the
    /// creation line) and/or hands the owner capability over. The secret is
    /// hashed and compared by the store atomically with the change; a room
    /// without an owner, or a wrong secret, is E008. Traced with the room id
    /// only.
    #[tracing::instrument(name = "set_room_secret", skip_all, fields(room = %room_id))]
    pub async fn set_room_secret(
        &self,
        room_id: &str,
        request: RoomSecretRequest,
    ) -> Result<(), Reject> {
        if !protocol::client::is_secret_hex(&request.owner) {
            return Err(texts::INVALID_OWNER);
        }
        if request
            .password
            .as_ref()
            .is_some_and(|p| p.len() != 64 || !p.is_ascii())
        {
            return Err(Reject::invalid("invalid password format"));
        }
        if request
            .owner_hash
            .as_ref()
            .is_some_and(|h| !protocol::client::is_secret_hex(h))
        {
            return Err(texts::INVALID_OWNER_HASH);
        }
        let owner_hash = owner_hash_of(&request.owner);
        // Checked before argon2 runs, so a stranger's guesses cost no hash.
        match self.store.owner_hash(room_id).await {
            Ok(None) => return Err(texts::ROOM_NOT_FOUND),
            Ok(Some(stored)) => {
                use subtle::ConstantTimeEq;
                if stored.is_empty() || !bool::from(stored.as_bytes().ct_eq(owner_hash.as_bytes()))
                {
                    return Err(texts::NOT_OWNER);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "owner check failed");
                return Err(texts::UNAVAILABLE);
            }
        }
        let password_hash = match &request.password {
            Some(p) => Some(self.passwords.hash(p.clone()).await.map_err(busy)?),
            None => None,
        };
        let update = store::SecretUpdate {
            password_hash,
            owner_hash: request.owner_hash,
        };
        match self
            .store
            .update_room_secrets(room_id, &owner_hash, update)
            .await
        {
            Ok(store::SecretOutcome::Updated) => {
                tracing::info!(room = %room_id, "room secrets changed by the owner");
                Ok(())
            }
            Ok(store::SecretOutcome::NotFound) => Err(texts::ROOM_NOT_FOUND),
            Ok(store::SecretOutcome::NotOwner) => Err(texts::NOT_OWNER),
            Err(e) => {
                tracing::error!(error = %e, "room secrets not changed");
                Err(texts::UNAVAILABLE)
            }
        }
    }

    /// How long a check waits when the room has had `room_guesses` in the
    /// window (this one included): nothing up to the room's threshold, then
    /// `password_guess_delay` doubling per guess, at most
    /// `password_guess_max_delay`.
    pub fn guess_delay(&self, room_guesses: u64) -> Duration {
        let config = &self.config;
        let Some(beyond) = room_guesses.checked_sub(config.max_password_guesses_per_room) else {
            return Duration::ZERO;
        };
        if beyond == 0 {
            return Duration::ZERO;
        }
        let doublings = u32::try_from(beyond - 1).unwrap_or(u32::MAX).min(30);
        config
            .password_guess_delay
            .saturating_mul(1 << doublings)
            .min(config.password_guess_max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::memory::{MemoryEngine, MemoryLimits};

    use futures_util::future::join_all as futures_join_all;

    fn cheap(config: GatewayConfig) -> Gateway {
        let config = GatewayConfig {
            password: PasswordConfig {
                memory_kib: 64,
                iterations: 1,
                ..config.password
            },
            ..config
        };
        Gateway::new(MemoryEngine::new(MemoryLimits::default()), config).unwrap()
    }

    fn gateway(per_room_ip: u64) -> Gateway {
        cheap(GatewayConfig {
            max_password_guesses_per_room_ip: per_room_ip,
            ..GatewayConfig::default()
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    async fn password_room(g: &Gateway) -> String {
        g.create_room(CreateRoomRequest {
            password: "a".repeat(64),
            ..Default::default()
        })
        .await
        .unwrap()
        .room
        .id
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
    async fn wrong_guesses_are_limited_per_room_and_client() {
        let g = gateway(2);
        let room = password_room(&g).await;
        let me = ip("203.0.113.7");
        for _ in 0..2 {
            assert_eq!(
                g.check_password(&room, &"b".repeat(64), me).await,
                Err(texts::WRONG_PASSWORD)
            );
        }
        assert_eq!(
            g.check_password(&room, &"a".repeat(64), me).await,
            Err(texts::TOO_MANY_GUESSES)
        );
        // Another client, and the same client on another room, are not affected.
        assert_eq!(
            g.check_password(&room, &"a".repeat(64), ip("198.51.100.1"))
                .await,
            Ok(())
        );
        let other = password_room(&g).await;
        assert_eq!(g.check_password(&other, &"a".repeat(64), me).await, Ok(()));
    }

    #[tokio::test]
    async fn concurrent_wrong_guesses_are_counted_before_argon2_runs() {
        let g = gateway(7);
        let room = password_room(&g).await;
        let me = ip("203.0.113.7");
        let wrong = "b".repeat(64);
        let outcomes = futures_join_all((0..60).map(|_| g.check_password(&room, &wrong, me))).await;
        let verified = outcomes
            .iter()
            .filter(|o| **o == Err(texts::WRONG_PASSWORD))
            .count();
        let refused = outcomes
            .iter()
            .filter(|o| **o == Err(texts::TOO_MANY_GUESSES))
            .count();
        assert_eq!((verified, refused), (7, 53), "{outcomes:?}");
    }

    #[tokio::test]
    async fn right_passwords_cost_no_budget() {
        let g = cheap(GatewayConfig {
            max_password_guesses_per_room_ip: 1,
            max_password_guesses_per_ip: 1,
            max_password_guesses_per_room: 1,
            ..GatewayConfig::default()
        });
        let room = password_room(&g).await;
        for _ in 0..10 {
            assert_eq!(
                g.check_password(&room, &"a".repeat(64), ip("203.0.113.7"))
                    .await,
                Ok(())
            );
        }
    }

    #[tokio::test]
    async fn a_strangers_guesses_slow_a_member_down_but_never_lock_them_out() {
        let g = cheap(GatewayConfig {
            max_password_guesses_per_room: 2,
            max_password_guesses_per_room_ip: 3,
            password_guess_delay: Duration::from_millis(10),
            password_guess_max_delay: Duration::from_millis(40),
            ..GatewayConfig::default()
        });
        let room = password_room(&g).await;
        // Strangers from three addresses spend their budgets on the room.
        for n in 1..=3 {
            let stranger = ip(&format!("198.51.100.{n}"));
            for _ in 0..5 {
                let _ = g.check_password(&room, &"b".repeat(64), stranger).await;
            }
        }
        let started = std::time::Instant::now();
        assert_eq!(
            g.check_password(&room, &"a".repeat(64), ip("203.0.113.7"))
                .await,
            Ok(())
        );
        assert!(
            started.elapsed() >= Duration::from_millis(40),
            "the member's check waited the room's delay"
        );
    }

    #[test]
    fn the_delay_doubles_beyond_the_threshold_up_to_the_ceiling() {
        let g = cheap(GatewayConfig {
            max_password_guesses_per_room: 10,
            password_guess_delay: Duration::from_millis(250),
            password_guess_max_delay: Duration::from_secs(5),
            ..GatewayConfig::default()
        });
        let ms = |n| g.guess_delay(n).as_millis();
        assert_eq!((ms(0), ms(10)), (0, 0));
        assert_eq!((ms(11), ms(12), ms(13), ms(15)), (250, 500, 1000, 4000));
        assert_eq!((ms(16), ms(u64::MAX)), (5000, 5000));
    }

    #[tokio::test]
    async fn guesses_at_rooms_that_do_not_exist_cost_nothing() {
        let g = gateway(1);
        let me = ip("203.0.113.7");
        for _ in 0..5 {
            assert_eq!(
                g.check_password("AAAAAAAAAAAAAAAAAAAAA", "x", me).await,
                Err(texts::ROOM_NOT_FOUND)
            );
        }
        let room = password_room(&g).await;
        assert_eq!(
            g.check_password(&room, &"b".repeat(64), me).await,
            Err(texts::WRONG_PASSWORD)
        );
    }

    #[tokio::test]
    async fn creations_come_out_of_one_budget_per_client() {
        let g = cheap(GatewayConfig {
            room_creations_per_minute: 5,
            ..GatewayConfig::default()
        });
        let request = |addr: &str| CreateRoomRequest {
            client_ip: Some(ip(addr)),
            ..Default::default()
        };
        let outcomes =
            futures_join_all((0..30).map(|_| g.create_room(request("2001:db8::1")))).await;
        let created = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(created, 5);
        assert!(outcomes
            .iter()
            .filter_map(|o| o.as_ref().err())
            .all(|r| *r == texts::RATE_LIMITED));
        // The same /64 shares the budget; another client has its own.
        assert_eq!(
            g.create_room(request("2001:db8::2")).await.unwrap_err(),
            texts::RATE_LIMITED
        );
        assert!(g.create_room(request("2001:db8:0:1::1")).await.is_ok());
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
