//! [`RoomStore`] on Redis: one Lua script per atomic room operation, and
//! separate commands for what spans slots (a node's room set, the
//! directory, the node list).
//!
//! Follow-up commands after a script (cleaning a node's room set, removing a
//! listing) are best effort: the script already decided the outcome, and
//! what a failed follow-up leaves behind is harmless and cleaned later (a
//! stale room in a node's set is skipped by the sweeper; a listing whose
//! room is gone is pruned when the directory is read).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt};
use protocol::member::MemberId;
use redis::Value;
use serde::{Deserialize, Serialize};

use super::subscriber::{encode_script, Reply};
use super::{keys, scripts, RedisEngine};
use crate::room::{
    Departure, JoinError, Joined, Left, Listing, ListingView, MemberRecord, MemberRestored,
    NewRoom, NodeState, Restored, RoomGuess, RoomRecord, RoomRestore, RoomRestored, RoomSecrets,
    RoomStore, SecretOutcome, SecretUpdate, StoreError, ACTIVITY_WINDOW_MS, MAX_ACTIVITY_PER_ROOM,
};

/// How much sooner than its deadline says a node's registration is treated
/// as lapsed (clock rate differences between relay and Redis).
const REGISTRATION_MARGIN: Duration = Duration::from_secs(1);
/// Rooms read or swept concurrently.
const CONCURRENT_ROOM_QUERIES: usize = 16;
/// The fields of a room hash that make a [`RoomRecord`].
const ROOM_FIELDS: [&str; 6] = [
    "created",
    "expiresAt",
    "ephemeral",
    "password",
    "capacity",
    "listed",
];

/// A member record as an older join.lua stored it (a msgpack map with the
/// join counter inside); still read, so members joined before an upgrade
/// keep their place in the list.
#[derive(Deserialize)]
struct LegacyMember {
    name: String,
    color: String,
    node: String,
    #[serde(rename = "joinedAt")]
    joined_at: i64,
    #[serde(default)]
    seq: u64,
}

/// A member's record as the relay sends it to join.lua (which prefixes the
/// join counter): msgpack `[name, color, node, joinedAt]` (`keys::members`).
fn pack_member(m: &MemberRecord) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec(&(&m.name, &m.color, &m.node, m.joined_at))
        .map_err(|e| StoreError(format!("member not encoded: {e}")))
}

/// A stored member record: `<join counter>:<msgpack [name, color, node,
/// joinedAt]>`, or the legacy map. Returns the join counter and the record.
fn unpack_member(id: MemberId, stored: &[u8]) -> Option<(u64, MemberRecord)> {
    if !stored.first()?.is_ascii_digit() {
        let m: LegacyMember = rmp_serde::from_slice(stored).ok()?;
        let record = MemberRecord {
            id,
            name: m.name,
            color: m.color,
            node: m.node,
            joined_at: m.joined_at,
        };
        return Some((m.seq, record));
    }
    let colon = stored.iter().position(|b| *b == b':')?;
    let seq = std::str::from_utf8(&stored[..colon]).ok()?.parse().ok()?;
    // Read with rmp itself: a room's whole member list is decoded on every
    // join, and serde's tuple visitor cost more than the strings' copies.
    let mut rest = &stored[colon + 1..];
    if rmp::decode::read_array_len(&mut rest).ok()? != 4 {
        return None;
    }
    let mut text = || -> Option<String> {
        let (text, after) = rmp::decode::read_str_from_slice(rest).ok()?;
        rest = after;
        Some(text.to_owned())
    };
    let (name, color, node) = (text()?, text()?, text()?);
    let joined_at = rmp::decode::read_int(&mut rest).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let record = MemberRecord {
        id,
        name,
        color,
        node,
        joined_at,
    };
    Some((seq, record))
}

/// A listing as stored in the directory hash.
#[derive(Serialize, Deserialize)]
struct StoredListing {
    title: String,
    description: String,
    tags: Vec<String>,
    #[serde(rename = "shareCode")]
    share_code: String,
    #[serde(rename = "hasPassword")]
    has_password: bool,
    #[serde(rename = "createdAt")]
    created_at: i64,
    #[serde(rename = "expiresAt")]
    expires_at: i64,
    #[serde(rename = "isDailyTopic")]
    is_daily_topic: bool,
}

/// A listing's room id and its msgpack form for the directory hash.
fn pack_listing(listing: Listing) -> Result<(String, Vec<u8>), StoreError> {
    let stored = StoredListing {
        title: listing.title,
        description: listing.description,
        tags: listing.tags,
        share_code: listing.share_code,
        has_password: listing.has_password,
        created_at: listing.created_at,
        expires_at: listing.expires_at,
        is_daily_topic: listing.is_daily_topic,
    };
    let packed = rmp_serde::to_vec_named(&stored)
        .map_err(|e| StoreError(format!("listing not encoded: {e}")))?;
    Ok((listing.room_id, packed))
}

/// A directory entry as stored, back to a [`Listing`].
fn unpack_listing(room_id: String, packed: &[u8]) -> Option<Listing> {
    let l: StoredListing = rmp_serde::from_slice(packed).ok()?;
    Some(Listing {
        room_id,
        title: l.title,
        description: l.description,
        tags: l.tags,
        share_code: l.share_code,
        has_password: l.has_password,
        created_at: l.created_at,
        expires_at: l.expires_at,
        is_daily_topic: l.is_daily_topic,
    })
}

/// How long a restored daily topic's mark is kept (the gateway keeps its
/// own for about as long: a day and then some).
const RESTORED_DAILY_MARK_TTL: Duration = Duration::from_secs(2 * 24 * 3600);

fn corrupt(what: &str) -> StoreError {
    StoreError(format!("unexpected reply from redis: {what}"))
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

pub(super) fn text(v: &Value) -> Option<&str> {
    bytes(v).and_then(|b| std::str::from_utf8(b).ok())
}

pub(super) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other).and_then(|s| s.parse().ok()),
    }
}

pub(super) fn items(v: Value) -> Option<Vec<Value>> {
    match v {
        Value::Array(a) | Value::Set(a) => Some(a),
        Value::Nil => Some(Vec::new()),
        _ => None,
    }
}

/// A room record from its [`ROOM_FIELDS`] values, in that order (a
/// missing field is `None` or empty).
fn room_record(id: &str, fields: [Option<&str>; 6]) -> Result<RoomRecord, StoreError> {
    let num = |i: usize| fields[i].and_then(|v| v.parse::<i64>().ok());
    Ok(RoomRecord {
        id: id.to_owned(),
        created_at: num(0).ok_or_else(|| corrupt("room without created"))?,
        expires_at: num(1).unwrap_or(0),
        ephemeral: num(2).unwrap_or(0),
        password_hash: fields[3].unwrap_or("").to_owned(),
        capacity: num(4).unwrap_or(0).clamp(0, u32::MAX as i64) as u32,
        listed: num(5) == Some(1),
    })
}

/// join.lua's answer: `[first of node, created, expiresAt, ephemeral,
/// password, capacity, listed, [id, record, ...]]` in one msgpack string,
/// the whole reply (a refusal is its name instead).
#[derive(Debug, PartialEq, Eq)]
struct JoinAnswer<'a> {
    first_of_node: bool,
    /// created, expiresAt, ephemeral, password, capacity, listed.
    room: [&'a str; 6],
    /// `[id, record, id, record, ...]`, in no particular order.
    members: Vec<&'a [u8]>,
}

/// Reads a [`JoinAnswer`] with rmp itself: serde's visitors cost a relay
/// ~4k instructions a join here. `None` unless the whole of `answer` is
/// exactly that shape.
fn read_join_answer(answer: &[u8]) -> Option<JoinAnswer<'_>> {
    let mut rest = answer;
    if rmp::decode::read_array_len(&mut rest).ok()? != 8 {
        return None;
    }
    let first: u8 = rmp::decode::read_int(&mut rest).ok()?;
    let mut room = [""; 6];
    for field in &mut room {
        *field = std::str::from_utf8(raw(&mut rest)?).ok()?;
    }
    let count = usize::try_from(rmp::decode::read_array_len(&mut rest).ok()?).ok()?;
    // Each element takes at least a byte: the count cannot reserve more.
    let mut members = Vec::with_capacity(count.min(rest.len()));
    for _ in 0..count {
        members.push(raw(&mut rest)?);
    }
    if !rest.is_empty() {
        return None;
    }
    Some(JoinAnswer {
        first_of_node: first == 1,
        room,
        members,
    })
}

/// A msgpack string's or binary's bytes, taken off the front of `rest`
/// (Lua's cmsgpack writes every string as a msgpack string, binary or not).
fn raw<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = match *rest.first()? {
        0xa0..=0xbf | 0xd9..=0xdb => rmp::decode::read_str_len(rest).ok()?,
        0xc4..=0xc6 => rmp::decode::read_bin_len(rest).ok()?,
        _ => return None,
    };
    let len = usize::try_from(len).ok()?;
    if len > rest.len() {
        return None;
    }
    let (bytes, after) = rest.split_at(len);
    *rest = after;
    Some(bytes)
}

/// Reads `reply` every way a join's answer from Redis is read, for the
/// fuzz target `store_replies`: as join.lua's answer (its room fields and
/// member records), and as one stored member record. Returns how many
/// members were read.
#[doc(hidden)]
pub fn read_replies_for_fuzzing(reply: &[u8]) -> usize {
    let mut read = 0;
    if let Some(answer) = read_join_answer(reply) {
        let _ = room_record("fuzz", answer.room.map(Some));
        read += member_records("fuzz", &answer.members).len();
    }
    if let Some(id) = MemberId::parse("0123abcd") {
        read += usize::from(unpack_member(id, reply).is_some());
    }
    read
}

/// A flat `[id, record, id, record, ...]` member list, in join order.
fn member_records(room_id: &str, flat: &[&[u8]]) -> Vec<MemberRecord> {
    let mut members: Vec<(u64, MemberRecord)> = flat
        .chunks_exact(2)
        .filter_map(|pair| {
            let parsed = std::str::from_utf8(pair[0])
                .ok()
                .and_then(MemberId::parse)
                .and_then(|id| unpack_member(id, pair[1]));
            if parsed.is_none() {
                tracing::warn!(room = room_id, "a member record in redis could not be read");
            }
            parsed
        })
        .collect();
    members.sort_by_key(|(seq, m)| (*seq, m.joined_at));
    members.into_iter().map(|(_, m)| m).collect()
}

/// Whether Redis refused a command without running it: the script is not
/// loaded, the slot lives elsewhere, the server is a replica now, or it
/// cannot take writes yet.
fn not_run(error: &str) -> bool {
    const CODES: [&str; 10] = [
        "NOSCRIPT",
        "MOVED",
        "ASK",
        "READONLY",
        "LOADING",
        "MASTERDOWN",
        "TRYAGAIN",
        "CLUSTERDOWN",
        "OOM",
        "BUSY",
    ];
    let code = error.split(' ').next().unwrap_or("");
    CODES.contains(&code)
}

pub(super) fn millis(d: Duration) -> u64 {
    (d.as_millis().min(u64::MAX as u128) as u64).max(1)
}

impl RedisEngine {
    pub(super) async fn script(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<Value, StoreError> {
        self.commands
            .script(self.config.command_timeout, invocation)
            .await
    }

    /// A room's script on the hot path (a join, a leave): sent on the bus's
    /// own connection to the server holding the room's keys (one buffer
    /// out, the answer read as a range of the block it arrived in: redis-rs
    /// spends ~15k instructions on a round trip and its parse); through the
    /// command connections when the bus has no open connection there or
    /// Redis did not run it (NOSCRIPT, MOVED, READONLY after a failover:
    /// redis-rs loads the script and follows the redirection). A script
    /// sent and not answered is not sent again: it may have run.
    async fn room_script(
        &self,
        room_id: &str,
        script: &redis::Script,
        keys: &[String],
        args: &[&[u8]],
    ) -> Result<Value, StoreError> {
        if let Some(connection) = self.bus.connection_for(room_id) {
            let encoded = encode_script(script.get_hash(), keys, args);
            match connection
                .script(encoded, self.config.command_timeout)
                .await
            {
                Ok(Reply::Integer(n)) => return Ok(Value::Int(n)),
                Ok(Reply::Bulk(answer)) => return Ok(Value::BulkString(answer.into())),
                Ok(Reply::Done) => return Err(corrupt("script answer")),
                Err(e) if not_run(&e) => self.bus.refused(&e),
                Err(e) => return Err(StoreError(format!("redis: {e}"))),
            }
        }
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        self.script(&invocation).await
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        self.commands.query(self.config.command_timeout, cmd).await
    }

    /// Records that `node` has members in `room_id` (after its first join
    /// there), and makes sure the node is known to the sweeper: registered
    /// by a join only when no heartbeat or earlier registration is known to
    /// hold yet (`registered_until`), so a busy relay spends one command, not
    /// two, on a room new to it.
    async fn track_node_room(&self, node: &str, room_id: &str) -> Result<(), StoreError> {
        let mut sadd = redis::cmd("SADD");
        sadd.arg(keys::node_rooms(node)).arg(room_id);
        if self.known_registered(node) {
            return self.query::<Value>(&sadd).await.map(|_| ());
        }
        let mut register = scripts::HEARTBEAT.key(keys::NODES);
        register
            .arg(node)
            .arg(millis(self.config.unannounced_node_ttl))
            .arg("nx");
        let sent = Instant::now();
        let (added, registered) = tokio::join!(self.query::<Value>(&sadd), self.script(&register));
        match registered {
            Ok(reply) => self.note_registered(node, sent, &reply),
            Err(e) => {
                tracing::warn!(node, error = %e, "a node seen through a join was not registered")
            }
        }
        added.map(|_| ())
    }

    /// Whether `node` is surely in [`keys::NODES`] with a deadline still
    /// ahead, as far as this engine's heartbeats and registrations tell.
    fn known_registered(&self, node: &str) -> bool {
        super::lock(&self.registered_until)
            .get(node)
            .is_some_and(|until| Instant::now() < *until)
    }

    /// Notes a heartbeat script's `{deadline, now}` reply (Redis ms) for a
    /// call sent at `sent`: the node stays registered at least until `sent`
    /// plus what was left of its deadline when Redis ran the script (a sweep
    /// forgets only nodes past their deadline), less a margin for clock rate
    /// differences.
    fn note_registered(&self, node: &str, sent: Instant, reply: &Value) {
        let Value::Array(parts) = reply else {
            return;
        };
        let (Some(deadline), Some(now)) = (parts.first().and_then(int), parts.get(1).and_then(int))
        else {
            return;
        };
        let left = Duration::from_millis(deadline.saturating_sub(now).max(0) as u64);
        let Some(sure) = left.checked_sub(REGISTRATION_MARGIN) else {
            return;
        };
        super::lock(&self.registered_until).insert(node.to_owned(), sent + sure);
    }

    /// Whether `room_id` is still in `node`'s room set from an earlier join
    /// through this engine (lingering or not); it is in use again from now.
    fn still_tracked(&self, node: &str, room_id: &str) -> bool {
        let mut tracked = super::lock(&self.node_rooms);
        match tracked.get_mut(&(node.to_owned(), room_id.to_owned())) {
            Some(since) => {
                *since = None;
                true
            }
            None => false,
        }
    }

    /// After a node's last member left a room: whether the room stays in the
    /// node's set for the room linger (then a later heartbeat removes it).
    fn linger_tracked(&self, node: &str, room_id: &str) -> bool {
        let mut tracked = super::lock(&self.node_rooms);
        let key = (node.to_owned(), room_id.to_owned());
        if self.config.room_linger.is_off() {
            tracked.remove(&key);
            return false;
        }
        match tracked.get_mut(&key) {
            Some(since) => {
                since.get_or_insert_with(Instant::now);
                true
            }
            None => false,
        }
    }

    /// Removes from the node room sets the rooms that lingered long enough.
    async fn untrack_lingered(&self) {
        let linger = self.config.room_linger;
        let due: Vec<(String, String)> = {
            let mut tracked = super::lock(&self.node_rooms);
            let due: Vec<(String, String)> = tracked
                .iter()
                .filter(|(_, since)| since.is_some_and(|t| linger.is_over(t)))
                .map(|(key, _)| key.clone())
                .collect();
            for key in &due {
                tracked.remove(key);
            }
            due
        };
        stream::iter(due)
            .for_each_concurrent(CONCURRENT_ROOM_QUERIES, |(node, room)| async move {
                self.untrack_node_room(&node, &room).await;
            })
            .await;
    }

    /// After a node's last member left a room: drop the room from the
    /// node's set, unless a join of the same node got in meanwhile.
    async fn untrack_node_room(&self, node: &str, room_id: &str) {
        let mut srem = redis::cmd("SREM");
        srem.arg(keys::node_rooms(node)).arg(room_id);
        if let Err(e) = self.query::<Value>(&srem).await {
            tracing::debug!(node, room = room_id, error = %e, "node room set not cleaned");
            return;
        }
        let mut count = redis::cmd("HGET");
        count.arg(keys::room_nodes(room_id)).arg(node);
        match self.query::<Option<i64>>(&count).await {
            Ok(Some(n)) if n > 0 => {
                // A join re-added the node between our script and the SREM.
                let mut sadd = redis::cmd("SADD");
                sadd.arg(keys::node_rooms(node)).arg(room_id);
                if let Err(e) = self.query::<Value>(&sadd).await {
                    tracing::warn!(node, room = room_id, error = %e, "node room set not restored");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(node, room = room_id, error = %e, "node room set not checked"),
        }
    }

    /// Removes rooms from the public directory.
    async fn unlist(&self, room_ids: &[String]) {
        if room_ids.is_empty() {
            return;
        }
        let mut unlist = scripts::UNLIST.key(keys::LISTINGS);
        unlist.key(keys::LISTED_REGULAR);
        for id in room_ids {
            unlist.arg(id);
        }
        if let Err(e) = self.script(&unlist).await {
            tracing::warn!(error = %e, "listing not removed");
        }
    }

    /// Sweeps one dead node's members out of one room.
    async fn sweep_room(&self, node: &str, room_id: String) -> Result<Vec<Departure>, StoreError> {
        let mut sweep = scripts::SWEEP_ROOM.key(keys::room(&room_id));
        sweep
            .key(keys::members(&room_id))
            .key(keys::room_nodes(&room_id))
            .key(keys::activity(&room_id))
            .arg(node);
        let reply = items(self.script(&sweep).await?).ok_or_else(|| corrupt("sweep"))?;
        let destroyed = reply.first().and_then(int) == Some(1);
        let removed = reply.into_iter().nth(1).and_then(items).unwrap_or_default();
        let departures: Vec<Departure> = removed
            .iter()
            .filter_map(|id| text(id).and_then(MemberId::parse))
            .map(|member_id| Departure {
                room_id: room_id.clone(),
                member_id,
                room_destroyed: destroyed,
            })
            .collect();
        if destroyed {
            self.unlist(std::slice::from_ref(&room_id)).await;
        }
        let mut srem = redis::cmd("SREM");
        srem.arg(keys::node_rooms(node)).arg(&room_id);
        if let Err(e) = self.query::<Value>(&srem).await {
            tracing::debug!(node, room = %room_id, error = %e, "swept room left in the node's set");
        }
        Ok(departures)
    }

    /// Sweeps one dead node; departures found before an error are kept
    /// (they were removed, so no other sweeper will report them).
    async fn sweep_node(&self, node: &str) -> Vec<Departure> {
        // Marked first, so the node, if it comes back, learns that its
        // members were announced as gone (`RoomStore::node_state`).
        let mut tombstone = redis::cmd("SET");
        tombstone
            .arg(keys::node_epoch(node))
            .arg(keys::SWEPT)
            .arg("PX")
            .arg(millis(self.config.node_epoch_ttl));
        if let Err(e) = self.query::<Value>(&tombstone).await {
            tracing::warn!(node, error = %e, "a dead node not marked as swept; not swept now");
            return Vec::new();
        }
        let mut smembers = redis::cmd("SMEMBERS");
        smembers.arg(keys::node_rooms(node));
        let rooms: Vec<String> = match self.query(&smembers).await {
            Ok(rooms) => rooms,
            Err(e) => {
                tracing::warn!(node, error = %e, "rooms of a dead node not read");
                return Vec::new();
            }
        };
        let results: Vec<Result<Vec<Departure>, StoreError>> = stream::iter(rooms)
            .map(|room| self.sweep_room(node, room))
            .buffer_unordered(CONCURRENT_ROOM_QUERIES)
            .collect()
            .await;
        let mut departures = Vec::new();
        let mut complete = true;
        for result in results {
            match result {
                Ok(d) => departures.extend(d),
                Err(e) => {
                    complete = false;
                    tracing::warn!(node, error = %e, "a room of a dead node not swept");
                }
            }
        }
        if complete {
            let mut left = redis::cmd("SCARD");
            left.arg(keys::node_rooms(node));
            if let Ok(0) = self.query::<i64>(&left).await {
                let mut forget = scripts::FORGET_NODE.key(keys::NODES);
                forget.arg(node);
                if let Err(e) = self.script(&forget).await {
                    tracing::debug!(node, error = %e, "swept node not forgotten yet");
                }
            }
        }
        departures
    }

    /// Lists a restored room again: a daily topic as its day's topic (or,
    /// when another took the day meanwhile, as a plain listing), any other
    /// room whatever the directory's cap (it was counted before the loss).
    async fn relist(&self, listing: Listing) -> Result<(), StoreError> {
        if listing.is_daily_topic {
            let day = listing.created_at.div_euclid(24 * 3600);
            if self
                .list_daily_topic(day, listing.clone(), RESTORED_DAILY_MARK_TTL)
                .await?
            {
                return Ok(());
            }
        }
        self.list_room(listing, usize::MAX).await.map(|_| ())
    }

    /// Member count, 5-minute activity, and whether the room still exists.
    async fn listing_figures(
        &self,
        room_id: &str,
        now_millis: i64,
    ) -> Result<(bool, u32, u32), StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("EXISTS")
            .arg(keys::room(room_id))
            .cmd("HLEN")
            .arg(keys::members(room_id))
            .cmd("ZCOUNT")
            .arg(keys::activity(room_id))
            .arg(now_millis - ACTIVITY_WINDOW_MS)
            .arg("+inf");
        let (exists, members, activity): (i64, i64, i64) = self
            .commands
            .pipeline(self.config.command_timeout, &pipe)
            .await?;
        Ok((
            exists == 1,
            members.clamp(0, u32::MAX as i64) as u32,
            activity.clamp(0, MAX_ACTIVITY_PER_ROOM as i64) as u32,
        ))
    }
}

#[async_trait]
impl RoomStore for RedisEngine {
    async fn create_room(&self, room: NewRoom) -> Result<bool, StoreError> {
        let r = &room.record;
        // A room kept while empty lives until its expiry plus the grace
        // (0: no ttl at all); any other until its creator joins, at most.
        let mut ttl = if room.keep_while_empty {
            u64::MAX
        } else {
            millis(room.unjoined_ttl)
        };
        if r.expires_at > 0 {
            let until_gone_ms = (r.expires_at - crate::unix_secs()).max(0) as u64 * 1000
                + millis(self.config.expired_room_grace);
            ttl = ttl.min(until_gone_ms).max(1);
        } else if room.keep_while_empty {
            ttl = 0;
        }
        let mut create = scripts::CREATE.key(keys::room(&r.id));
        create
            .arg(r.created_at)
            .arg(r.expires_at)
            .arg(r.ephemeral)
            .arg(&r.password_hash)
            .arg(r.capacity)
            .arg(u8::from(r.listed))
            .arg(ttl)
            .arg(u8::from(room.keep_while_empty))
            .arg(&room.owner_hash);
        Ok(int(&self.script(&create).await?) == Some(1))
    }

    async fn owner_hash(&self, room_id: &str) -> Result<Option<String>, StoreError> {
        let mut hmget = redis::cmd("HMGET");
        hmget.arg(keys::room(room_id)).arg("created").arg("owner");
        let values: Vec<Value> = self.query(&hmget).await?;
        if values.first().is_none_or(|v| *v == Value::Nil) {
            return Ok(None);
        }
        let owner = values.get(1).and_then(text).unwrap_or("");
        Ok(Some(owner.to_owned()))
    }

    /// One HMGET of the room record's `created` (whether it exists),
    /// `password` and `owner`.
    async fn secrets(&self, room_id: &str) -> Result<Option<RoomSecrets>, StoreError> {
        let mut hmget = redis::cmd("HMGET");
        hmget
            .arg(keys::room(room_id))
            .arg("created")
            .arg("password")
            .arg("owner");
        let values: Vec<Value> = self.query(&hmget).await?;
        if values.first().is_none_or(|v| *v == Value::Nil) {
            return Ok(None);
        }
        let field = |i: usize| values.get(i).and_then(text).unwrap_or("").to_owned();
        Ok(Some(RoomSecrets {
            password_hash: field(1),
            owner_hash: field(2),
        }))
    }

    async fn update_room_secrets(
        &self,
        room_id: &str,
        owner_hash: &str,
        update: SecretUpdate,
    ) -> Result<SecretOutcome, StoreError> {
        let mut set = scripts::SET_SECRETS.key(keys::room(room_id));
        set.arg(owner_hash)
            .arg(update.password_hash.as_deref().unwrap_or(""))
            .arg(update.owner_hash.as_deref().unwrap_or(""));
        match bytes(&self.script(&set).await?) {
            Some(b"OK") => Ok(SecretOutcome::Updated),
            Some(b"NOT_FOUND") => Ok(SecretOutcome::NotFound),
            Some(b"NOT_OWNER") => Ok(SecretOutcome::NotOwner),
            _ => Err(corrupt("unexpected answer to set_secrets")),
        }
    }

    async fn room(&self, room_id: &str) -> Result<Option<RoomRecord>, StoreError> {
        let mut hmget = redis::cmd("HMGET");
        hmget.arg(keys::room(room_id)).arg(&ROOM_FIELDS[..]);
        let values: Vec<Value> = self.query(&hmget).await?;
        if values.first().is_none_or(|v| *v == Value::Nil) {
            return Ok(None);
        }
        let mut fields = [None; 6];
        for (field, value) in fields.iter_mut().zip(&values) {
            *field = text(value);
        }
        room_record(room_id, fields).map(Some)
    }

    async fn join(
        &self,
        room_id: &str,
        member: MemberRecord,
        password_checked: bool,
        now_secs: i64,
    ) -> Result<Joined, JoinError> {
        let keys = [
            keys::room(room_id),
            keys::members(room_id),
            keys::room_nodes(room_id),
        ];
        let packed = pack_member(&member)?;
        let (mut now, mut grace) = (itoa::Buffer::new(), itoa::Buffer::new());
        let args: [&[u8]; 6] = [
            member.id.as_str().as_bytes(),
            &packed,
            member.node.as_bytes(),
            if password_checked { b"1" } else { b"0" },
            now.format(now_secs).as_bytes(),
            grace
                .format(self.config.expired_room_grace.as_secs())
                .as_bytes(),
        ];
        let reply = self
            .room_script(room_id, &scripts::JOIN, &keys, &args)
            .await?;
        let answer = bytes(&reply).ok_or_else(|| corrupt("join"))?;
        match answer {
            b"NOT_FOUND" => return Err(JoinError::NotFound),
            b"EXPIRED" => return Err(JoinError::Expired),
            b"NEEDS_PASSWORD" => return Err(JoinError::NeedsPassword),
            b"FULL" => return Err(JoinError::Full),
            b"ID_TAKEN" => return Err(JoinError::IdTaken),
            _ => {}
        }
        let answer = read_join_answer(answer).ok_or_else(|| corrupt("join answer"))?;
        let first_of_node = answer.first_of_node;
        let joined = Joined {
            room: room_record(room_id, answer.room.map(Some))?,
            members: member_records(room_id, &answer.members),
        };
        if first_of_node && !self.still_tracked(&member.node, room_id) {
            if let Err(e) = self.track_node_room(&member.node, room_id).await {
                // Untracked, the member would outlive a crash of its relay:
                // undo the join rather than risk a ghost.
                let _ = self.leave(room_id, member.id, &member.node).await;
                return Err(e.into());
            }
            if !self.config.room_linger.is_off() {
                super::lock(&self.node_rooms)
                    .insert((member.node.clone(), room_id.to_owned()), None);
            }
        }
        Ok(joined)
    }

    async fn leave(
        &self,
        room_id: &str,
        member_id: MemberId,
        node: &str,
    ) -> Result<Left, StoreError> {
        let keys = [
            keys::room(room_id),
            keys::members(room_id),
            keys::room_nodes(room_id),
            keys::activity(room_id),
        ];
        let args: [&[u8]; 2] = [member_id.as_str().as_bytes(), node.as_bytes()];
        let reply = self
            .room_script(room_id, &scripts::LEAVE, &keys, &args)
            .await?;
        let flags = int(&reply).ok_or_else(|| corrupt("leave"))?;
        let left = Left {
            was_member: flags & 1 != 0,
            destroyed: flags & 2 != 0,
        };
        if flags & 4 != 0 && !self.linger_tracked(node, room_id) {
            self.untrack_node_room(node, room_id).await;
        }
        if left.destroyed {
            self.unlist(&[room_id.to_owned()]).await;
        }
        Ok(left)
    }

    async fn destroy(&self, room_id: &str) -> Result<(), StoreError> {
        let mut destroy = scripts::DESTROY.key(keys::room(room_id));
        destroy
            .key(keys::members(room_id))
            .key(keys::room_nodes(room_id))
            .key(keys::activity(room_id));
        let nodes = items(self.script(&destroy).await?).unwrap_or_default();
        for node in nodes.iter().filter_map(text) {
            let mut srem = redis::cmd("SREM");
            srem.arg(keys::node_rooms(node)).arg(room_id);
            if let Err(e) = self.query::<Value>(&srem).await {
                tracing::debug!(node, room = room_id, error = %e, "node room set not cleaned");
            }
        }
        self.unlist(&[room_id.to_owned()]).await;
        Ok(())
    }

    async fn list_room(&self, listing: Listing, max_listed: usize) -> Result<bool, StoreError> {
        let daily = listing.is_daily_topic;
        let (room_id, packed) = pack_listing(listing)?;
        let mut list = scripts::LIST_ROOM.key(keys::LISTINGS);
        list.key(keys::LISTED_REGULAR)
            .arg(&room_id)
            .arg(packed)
            .arg(u8::from(daily))
            .arg(max_listed);
        if int(&self.script(&list).await?) != Some(1) {
            return Ok(false);
        }
        let mark = scripts::MARK_LISTED.key(keys::room(&room_id));
        self.script(&mark).await?;
        Ok(true)
    }

    async fn list_daily_topic(
        &self,
        day: i64,
        listing: Listing,
        mark_ttl: Duration,
    ) -> Result<bool, StoreError> {
        let (room_id, packed) = pack_listing(listing)?;
        // Marked first, so activity counts from the first message: a room
        // that loses the race is destroyed by its creator anyway.
        let mark = scripts::MARK_LISTED.key(keys::room(&room_id));
        if int(&self.script(&mark).await?) != Some(1) {
            return Err(StoreError(format!(
                "daily topic room {room_id} does not exist"
            )));
        }
        let mut list = scripts::LIST_DAILY_TOPIC.key(keys::LISTINGS);
        list.key(keys::daily_topic(day))
            .arg(&room_id)
            .arg(packed)
            .arg(millis(mark_ttl));
        Ok(int(&self.script(&list).await?) == Some(1))
    }

    async fn listings(&self, now_millis: i64) -> Result<Vec<ListingView>, StoreError> {
        let mut hgetall = redis::cmd("HGETALL");
        hgetall.arg(keys::LISTINGS);
        let all: HashMap<String, Vec<u8>> = self.query(&hgetall).await?;
        let results: Vec<(String, Vec<u8>, Result<(bool, u32, u32), StoreError>)> =
            stream::iter(all)
                .map(|(room_id, packed)| async move {
                    let figures = self.listing_figures(&room_id, now_millis).await;
                    (room_id, packed, figures)
                })
                .buffer_unordered(CONCURRENT_ROOM_QUERIES)
                .collect()
                .await;
        let mut views = Vec::with_capacity(results.len());
        let mut gone = Vec::new();
        for (room_id, packed, figures) in results {
            let (exists, member_count, message_count_5min) = figures?;
            let stored = unpack_listing(room_id.clone(), &packed);
            match (exists, stored) {
                (true, Some(listing)) => views.push(ListingView {
                    listing,
                    member_count,
                    message_count_5min,
                }),
                (true, None) => {
                    tracing::warn!(room = %room_id, "an unreadable listing was removed");
                    gone.push(room_id);
                }
                (false, _) => gone.push(room_id),
            }
        }
        self.unlist(&gone).await;
        Ok(views)
    }

    async fn count_activity(&self, room_id: &str, now_millis: i64) -> Result<(), StoreError> {
        let token = format!("{now_millis}-{:016x}", rand::random::<u64>());
        let mut count = scripts::COUNT_ACTIVITY.key(keys::room(room_id));
        count
            .key(keys::activity(room_id))
            .arg(now_millis)
            .arg(token)
            .arg(ACTIVITY_WINDOW_MS)
            .arg(MAX_ACTIVITY_PER_ROOM);
        self.script(&count).await.map(|_| ())
    }

    async fn hit(&self, key: &str, n: u64, window: Duration) -> Result<u64, StoreError> {
        let mut hit = scripts::HIT.key(keys::counter(key));
        hit.arg(n)
            .arg(window.as_millis().min(u64::MAX as u128) as u64);
        let v = int(&self.script(&hit).await?).ok_or_else(|| corrupt("hit"))?;
        Ok(v.max(0) as u64)
    }

    async fn take(&self, key: &str, limit: u64, window: Duration) -> Result<bool, StoreError> {
        self.take_budget(key, limit, window).await
    }

    async fn give_back(&self, key: &str) -> Result<(), StoreError> {
        self.give_back_budget(key).await
    }

    async fn reserve_guess(
        &self,
        room_id: &str,
        client: &str,
        client_limit: u64,
        window: Duration,
    ) -> Result<RoomGuess, StoreError> {
        self.reserve_room_guess(room_id, client, client_limit, window)
            .await
    }

    async fn release_guess(&self, room_id: &str, client: &str) -> Result<(), StoreError> {
        self.release_room_guess(room_id, client).await
    }

    async fn member_count(&self, room_id: &str) -> Result<Option<u32>, StoreError> {
        self.room_member_count(room_id).await
    }

    async fn claim_once(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut set = redis::cmd("SET");
        set.arg(keys::claim(key))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl));
        let reply: Value = self.query(&set).await?;
        Ok(reply != Value::Nil)
    }

    async fn heartbeat(
        &self,
        node_id: &str,
        ttl: Duration,
        connections: u64,
    ) -> Result<(), StoreError> {
        let ttl_ms = millis(ttl);
        let mut beat = scripts::HEARTBEAT.key(keys::NODES);
        beat.key(keys::ONLINE)
            .arg(node_id)
            .arg(ttl_ms)
            .arg("set")
            .arg(connections);
        let sent = Instant::now();
        let reply = self.script(&beat).await?;
        self.note_registered(node_id, sent, &reply);
        let deadline = items(reply)
            .and_then(|parts| parts.first().and_then(int))
            .unwrap_or(0);
        let mut set = redis::cmd("SET");
        set.arg(keys::node(node_id))
            .arg(deadline)
            .arg("PX")
            .arg(ttl_ms);
        self.query::<Value>(&set).await?;
        // The heartbeat also tidies the node's room set.
        self.untrack_lingered().await;
        Ok(())
    }

    async fn online(&self) -> Result<u64, StoreError> {
        let mut online = scripts::ONLINE.key(keys::NODES);
        online.key(keys::ONLINE);
        Ok(int(&self.script(&online).await?).unwrap_or(0).max(0) as u64)
    }

    async fn live_nodes(&self) -> Result<u64, StoreError> {
        let live = scripts::LIVE_NODES.key(keys::NODES);
        Ok(int(&self.script(&live).await?).unwrap_or(0).max(0) as u64)
    }

    async fn relays_holding(&self, room_id: &str) -> Result<u64, StoreError> {
        let mut hlen = redis::cmd("HLEN");
        hlen.arg(keys::room_nodes(room_id));
        Ok(self.query::<u64>(&hlen).await?)
    }

    async fn node_state(&self, node_id: &str) -> Result<NodeState, StoreError> {
        let mut check = scripts::NODE_EPOCH.key(keys::node_epoch(node_id));
        check
            .arg(&self.epoch)
            .arg(millis(self.config.node_epoch_ttl));
        match text(&self.script(&check).await?) {
            Some("known") => Ok(NodeState::Known),
            Some("swept") => Ok(NodeState::Swept),
            Some("lost") => Ok(NodeState::Lost),
            _ => Err(corrupt("node epoch")),
        }
    }

    async fn restore_room(&self, restore: RoomRestore) -> Result<Restored, StoreError> {
        let r = &restore.record;
        let room_id = r.id.as_str();
        let keep_while_empty = restore.listing.as_ref().is_some_and(|l| l.is_daily_topic);
        let mut script = scripts::RESTORE.key(keys::room(room_id));
        script
            .key(keys::members(room_id))
            .key(keys::room_nodes(room_id))
            .arg(&restore.node)
            .arg(restore.now_secs)
            .arg(self.config.expired_room_grace.as_secs())
            .arg(r.created_at)
            .arg(r.expires_at)
            .arg(r.ephemeral)
            .arg(&r.password_hash)
            .arg(r.capacity)
            .arg(u8::from(r.listed))
            .arg(u8::from(keep_while_empty))
            .arg(&restore.owner_hash);
        for m in &restore.members {
            script
                .arg(m.id.as_str())
                .arg(pack_member(m)?)
                .arg(m.joined_at);
        }
        let reply = items(self.script(&script).await?).ok_or_else(|| corrupt("restore"))?;
        let mut reply = reply.into_iter();
        match reply.next().as_ref().and_then(text) {
            Some("OK") => {}
            Some("EXPIRED") => {
                return Ok(Restored {
                    room: RoomRestored::Expired,
                    members: Vec::new(),
                    joined_since_loss: Vec::new(),
                })
            }
            _ => return Err(corrupt("restore status")),
        }
        let recreated = reply.next().as_ref().and_then(int) == Some(1);
        let outcomes = reply.next().and_then(items).unwrap_or_default();
        let joined_since_loss: Vec<MemberId> = reply
            .next()
            .and_then(items)
            .unwrap_or_default()
            .iter()
            .filter_map(|id| text(id).and_then(MemberId::parse))
            .collect();
        if outcomes.len() != restore.members.len() {
            return Err(corrupt("restore outcomes"));
        }
        let members: Vec<(MemberId, MemberRestored)> = restore
            .members
            .iter()
            .zip(&outcomes)
            .map(|(m, outcome)| {
                let outcome = match text(outcome) {
                    Some("present") => MemberRestored::Present,
                    Some("added") => MemberRestored::Added,
                    Some("full") => MemberRestored::Full,
                    _ => MemberRestored::IdTaken,
                };
                (m.id, outcome)
            })
            .collect();
        let holds_any = members
            .iter()
            .any(|(_, o)| matches!(o, MemberRestored::Present | MemberRestored::Added));
        if holds_any {
            // The node's room set and registration, as a first join makes them.
            self.track_node_room(&restore.node, room_id).await?;
            if !self.config.room_linger.is_off() {
                super::lock(&self.node_rooms)
                    .insert((restore.node.clone(), room_id.to_owned()), None);
            }
        }
        if recreated {
            if let Some(listing) = restore.listing {
                self.relist(listing).await?;
            }
        }
        Ok(Restored {
            room: if recreated {
                RoomRestored::Recreated
            } else {
                RoomRestored::Kept
            },
            members,
            joined_since_loss,
        })
    }

    async fn listing(&self, room_id: &str) -> Result<Option<Listing>, StoreError> {
        let mut hget = redis::cmd("HGET");
        hget.arg(keys::LISTINGS).arg(room_id);
        let packed: Option<Vec<u8>> = self.query(&hget).await?;
        Ok(packed.and_then(|p| unpack_listing(room_id.to_owned(), &p)))
    }

    async fn sweep_dead_nodes(&self) -> Result<Vec<Departure>, StoreError> {
        let mut dead = scripts::DEAD_NODES.key(keys::NODES);
        dead.arg(self.config.sweep_max_nodes.max(1));
        let nodes: Vec<String> = items(self.script(&dead).await?)
            .unwrap_or_default()
            .iter()
            .filter_map(|n| text(n).map(str::to_owned))
            .collect();
        let mut departures = Vec::new();
        for node in nodes {
            tracing::info!(node = %node, "sweeping a relay whose heartbeat lapsed");
            departures.extend(self.sweep_node(&node).await);
        }
        Ok(departures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: MemberId) -> MemberRecord {
        MemberRecord {
            id,
            name: "Ann é".into(),
            color: "#40a0c1".into(),
            node: "relay-7".into(),
            joined_at: 1_764_000_000_123,
        }
    }

    #[test]
    fn a_stored_member_reads_back_as_written() {
        let id = MemberId::parse("3f2a9c1b").expect("id");
        let mut stored = b"42:".to_vec();
        stored.extend(pack_member(&record(id)).expect("packed"));
        assert_eq!(unpack_member(id, &stored), Some((42, record(id))));
    }

    #[test]
    fn a_damaged_member_record_is_refused() {
        let id = MemberId::parse("3f2a9c1b").expect("id");
        let packed = pack_member(&record(id)).expect("packed");
        let mut with_seq = b"7:".to_vec();
        with_seq.extend(&packed);
        for cut in 2..with_seq.len() {
            assert_eq!(unpack_member(id, &with_seq[..cut]), None, "cut at {cut}");
        }
        let mut longer = with_seq.clone();
        longer.push(0);
        assert_eq!(unpack_member(id, &longer), None);
        assert_eq!(unpack_member(id, b"x:"), None);
        assert_eq!(unpack_member(id, b""), None);
    }

    /// join.lua's answer as Redis's cmsgpack writes it: every Lua string a
    /// msgpack string (fixstr, str8, str16), the member records' binary
    /// msgpack included.
    fn cmsgpack_answer(record: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let string = |out: &mut Vec<u8>, bytes: &[u8]| {
            rmp::encode::write_str_len(out, bytes.len() as u32).expect("length");
            out.extend_from_slice(bytes);
        };
        rmp::encode::write_array_len(&mut out, 8).expect("array");
        rmp::encode::write_uint(&mut out, 1).expect("first");
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        for field in ["1764000000", "0", "1", hash, "10", "0"] {
            string(&mut out, field.as_bytes());
        }
        rmp::encode::write_array_len(&mut out, 4).expect("members");
        string(&mut out, b"3f2a9c1b");
        string(&mut out, record);
        string(&mut out, b"0badf00d");
        // A long record: str16.
        string(&mut out, &[b'x'; 300]);
        out
    }

    #[test]
    fn a_join_answer_reads_back_as_cmsgpack_wrote_it() {
        let id = MemberId::parse("3f2a9c1b").expect("id");
        let mut stored = b"42:".to_vec();
        stored.extend(pack_member(&record(id)).expect("packed"));
        let answer = cmsgpack_answer(&stored);
        let read = read_join_answer(&answer).expect("an answer");
        assert!(read.first_of_node);
        assert_eq!(read.room[0], "1764000000");
        assert!(read.room[3].starts_with("$argon2id$"));
        assert_eq!(read.room[4], "10");
        assert_eq!(read.members.len(), 4);
        assert_eq!(read.members[1], stored.as_slice());
        assert_eq!(read.members[3], [b'x'; 300].as_slice());
        let members = member_records("r", &read.members);
        assert_eq!(members.len(), 1, "the unreadable record is skipped");
        assert_eq!(members[0], record(id));
        // msgpack binaries are taken too.
        let mut bin = Vec::new();
        rmp::encode::write_bin(&mut bin, b"\x00\xff").expect("bin");
        assert_eq!(raw(&mut bin.as_slice()), Some(b"\x00\xff".as_slice()));
    }

    #[test]
    fn a_damaged_join_answer_is_refused() {
        let answer = cmsgpack_answer(b"7:record");
        for cut in 0..answer.len() {
            assert_eq!(read_join_answer(&answer[..cut]), None, "cut at {cut}");
        }
        let mut longer = answer.clone();
        longer.push(0xc0);
        assert_eq!(read_join_answer(&longer), None);
        let mut seven = answer.clone();
        seven[0] = 0x97;
        assert_eq!(read_join_answer(&seven), None);
        // A member count far beyond the bytes reserves nothing, reads nothing.
        let mut huge = Vec::new();
        rmp::encode::write_array_len(&mut huge, 8).expect("array");
        rmp::encode::write_uint(&mut huge, 0).expect("first");
        for _ in 0..6 {
            rmp::encode::write_str(&mut huge, "").expect("field");
        }
        rmp::encode::write_array_len(&mut huge, u32::MAX).expect("members");
        assert_eq!(read_join_answer(&huge), None);
    }
}
