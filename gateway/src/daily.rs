//! The daily topic: one public room per UTC day, made by the server
//! (PROTOCOL.md §9 "Daily topic").
//!
//! Every gateway replica runs [`DailyTopics::run`]. Each UTC day the room is
//! created with a server-generated key (32 random bytes, base64url: the key
//! is published in the directory with the share code, as for every public
//! room), no password, not ephemeral, expiring at the next 00:00 UTC, tagged
//! `daily-topic` plus the topic's own tags. It is listed outside the
//! public-room cap and kept while empty, so it is there all day whoever
//! comes and goes.
//!
//! **Exactly once per day, however many replicas.** A replica creates its
//! own candidate room first, then asks the store to list it as the day's
//! topic ([`store::RoomStore::list_daily_topic`]): that call sets the day's
//! mark and the listing atomically (one Redis script in the directory's
//! slot; one lock in memory), so of any number of racing replicas exactly
//! one wins. A loser destroys its candidate. No lock is held across the
//! steps, so a replica that dies half-way blocks nobody: its unlisted room
//! nobody knows the key of just expires with the day.
//!
//! **When.** At start-up, then shortly after each 00:00 UTC (re-checked at
//! least hourly, as the reference does). A failed attempt is retried after
//! 5, 10, 20 and then every 30 minutes, the reference's schedule. If an
//! attempt fails after the store may already have listed the room (a
//! timeout), the candidate is left alone rather than destroyed: the retry
//! finds the day's mark and stands down if it was listed after all.
//!
//! **Which topic.** Days since 2026-01-01 modulo the list in
//! `gateway/data/daily-topics.json` (topics written for this project; each
//! is checked against the directory's validation rules when loaded).
//!
//! Time comes from a [`store::Clock`], so tests put "now" anywhere (a second
//! before midnight) without waiting.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use store::{Listing, NewRoom, RoomRecord, SharedClock, StoreError};
use tokio::task::JoinHandle;

use crate::listing;
use crate::rooms::{new_room_id, Gateway};

/// The tag every daily topic carries first.
pub const DAILY_TOPIC_TAG: &str = "daily-topic";
/// Seconds in a UTC day (no leap seconds in Unix time).
pub const SECS_PER_DAY: i64 = 86_400;
/// 2026-01-01T00:00:00Z in days since the Unix epoch: day 0 of the rotation.
pub const ROTATION_START_DAY: i64 = 20_454;
/// Re-check at least this often, even when the day's topic is done.
pub const RECHECK: Duration = Duration::from_secs(3_600);
/// Wait after 00:00 UTC before making the new day's topic (replicas'
/// clocks differ a little; the atomic listing settles who wins anyway).
pub const AFTER_MIDNIGHT: Duration = Duration::from_secs(1);
/// Delays before the 1st, 2nd, 3rd and every later retry after a failure.
pub const RETRY_DELAYS: [Duration; 4] = [
    Duration::from_secs(5 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(20 * 60),
    Duration::from_secs(30 * 60),
];

/// The built-in topic list.
const TOPICS_JSON: &str = include_str!("../data/daily-topics.json");
/// Bytes of a daily topic's room key (AES-256).
const KEY_BYTES: usize = 32;
/// Attempts at a fresh room id.
const ROOM_ID_ATTEMPTS: usize = 3;

/// One topic of the list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topic {
    /// The room's title (the directory's rules: 1–50 characters).
    pub title: String,
    /// The room's description (up to 200 characters).
    #[serde(default)]
    pub description: String,
    /// Tags after `daily-topic` (up to 4: a listing has at most 5).
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Topic {
    /// The listing's tags: `daily-topic`, then the topic's.
    pub fn listing_tags(&self) -> Vec<String> {
        std::iter::once(DAILY_TOPIC_TAG.to_owned())
            .chain(self.tags.iter().cloned())
            .collect()
    }
}

/// Why a topic list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicsError {
    #[error("the daily topic list is not valid: {0}")]
    Format(String),
    #[error("the daily topic list is empty")]
    Empty,
    #[error("daily topic {index} ({title:?}): {reason}")]
    Invalid {
        index: usize,
        title: String,
        reason: String,
    },
}

/// Parses a topic list (a JSON array of `{title, description, tags}`) and
/// checks each topic against the directory's rules, `daily-topic` included
/// in the tags; a title or description that sanitising would change is
/// refused too (the file is ours: it should say what is shown).
pub fn parse_topics(json: &str) -> Result<Vec<Topic>, TopicsError> {
    let topics: Vec<Topic> =
        serde_json::from_str(json).map_err(|e| TopicsError::Format(e.to_string()))?;
    check_topics(&topics)?;
    Ok(topics)
}

/// [`parse_topics`]'s checks on a list already in memory.
pub fn check_topics(topics: &[Topic]) -> Result<(), TopicsError> {
    if topics.is_empty() {
        return Err(TopicsError::Empty);
    }
    for (index, topic) in topics.iter().enumerate() {
        let invalid = |reason: String| TopicsError::Invalid {
            index,
            title: topic.title.clone(),
            reason,
        };
        let tags = topic.listing_tags();
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        let text = listing::validate(&topic.title, &topic.description, &tags)
            .map_err(|reject| invalid(reject.msg.into_owned()))?;
        if text.title != topic.title || text.description != topic.description {
            return Err(invalid(
                "markup, control characters or surrounding space".into(),
            ));
        }
    }
    Ok(())
}

/// The topics shipped with the gateway (`gateway/data/daily-topics.json`).
pub fn builtin_topics() -> Result<Vec<Topic>, TopicsError> {
    parse_topics(TOPICS_JSON)
}

/// The UTC day of `secs` (days since the Unix epoch).
pub fn utc_day(secs: i64) -> i64 {
    secs.div_euclid(SECS_PER_DAY)
}

/// The first 00:00 UTC strictly after `secs`.
pub fn next_utc_midnight(secs: i64) -> i64 {
    (utc_day(secs) + 1) * SECS_PER_DAY
}

/// The topic of UTC day `day`: days since 2026-01-01 modulo the list.
/// `topics` must not be empty.
pub fn topic_for_day(topics: &[Topic], day: i64) -> &Topic {
    let len = topics.len().max(1) as i64;
    let index = (day - ROTATION_START_DAY).rem_euclid(len) as usize;
    &topics[index.min(topics.len().saturating_sub(1))]
}

/// How long to wait before the next attempt: after `failures` failures in a
/// row the retry schedule; otherwise until just after the next 00:00 UTC,
/// at most [`RECHECK`].
pub fn next_attempt_in(now_secs: i64, failures: usize) -> Duration {
    if failures > 0 {
        return RETRY_DELAYS[(failures - 1).min(RETRY_DELAYS.len() - 1)];
    }
    let until_midnight = (next_utc_midnight(now_secs) - now_secs).max(0) as u64;
    (Duration::from_secs(until_midnight) + AFTER_MIDNIGHT).min(RECHECK)
}

/// What one attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// This replica created and listed the day's topic.
    Created { day: i64, room_id: String },
    /// The day had its topic already (another replica, or an earlier run).
    Exists { day: i64 },
}

impl Outcome {
    /// The UTC day the attempt was for.
    pub fn day(&self) -> i64 {
        match self {
            Outcome::Created { day, .. } | Outcome::Exists { day } => *day,
        }
    }
}

/// Makes the daily topic over a [`Gateway`]'s store.
#[derive(Clone)]
pub struct DailyTopics {
    /// Its store and room limits.
    gateway: Gateway,
    /// Where "now" comes from.
    clock: SharedClock,
    /// The rotation (never empty).
    topics: Arc<[Topic]>,
}

impl DailyTopics {
    /// Daily topics from `topics` (checked with [`check_topics`]).
    pub fn new(
        gateway: Gateway,
        clock: SharedClock,
        topics: Vec<Topic>,
    ) -> Result<DailyTopics, TopicsError> {
        check_topics(&topics)?;
        Ok(DailyTopics {
            gateway,
            clock,
            topics: topics.into(),
        })
    }

    /// Daily topics from the built-in list.
    pub fn builtin(gateway: Gateway, clock: SharedClock) -> Result<DailyTopics, TopicsError> {
        DailyTopics::new(gateway, clock, builtin_topics()?)
    }

    /// The topic of UTC day `day`.
    pub fn topic(&self, day: i64) -> &Topic {
        topic_for_day(&self.topics, day)
    }

    /// One attempt at today's topic: creates a candidate room and lists it
    /// unless the day has its topic already (then the candidate goes).
    pub async fn ensure_today(&self) -> Result<Outcome, StoreError> {
        let store = self.gateway.store();
        let now = self.clock.now_secs();
        let day = utc_day(now);
        let expires_at = next_utc_midnight(now);
        let topic = self.topic(day);
        let lifetime = Duration::from_secs((expires_at - now).max(1) as u64);

        let mut record = RoomRecord {
            id: String::new(),
            created_at: now,
            expires_at,
            ephemeral: 0,
            password_hash: String::new(),
            capacity: self.gateway.config().max_room_members,
            listed: true,
        };
        let mut created = false;
        for _ in 0..ROOM_ID_ATTEMPTS {
            record.id = new_room_id();
            let room = NewRoom {
                record: record.clone(),
                unjoined_ttl: lifetime,
                keep_while_empty: true,
                owner_hash: String::new(),
            };
            if store.create_room(room).await? {
                created = true;
                break;
            }
        }
        if !created {
            return Err(StoreError("no free room id for the daily topic".into()));
        }

        let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(rand::random::<[u8; KEY_BYTES]>());
        let listing = Listing {
            room_id: record.id.clone(),
            title: topic.title.clone(),
            description: topic.description.clone(),
            tags: topic.listing_tags(),
            share_code: format!("{}:{key}:0:{expires_at}", record.id),
            has_password: false,
            created_at: now,
            expires_at,
            is_daily_topic: true,
        };
        // The mark outlives the day, so a replica whose clock lags a little
        // behind cannot make a second topic for it.
        let mark_ttl = lifetime + Duration::from_secs(SECS_PER_DAY as u64);
        // An error here may come after the store listed the room (a
        // timeout): the candidate stays, and the retry settles it.
        if store.list_daily_topic(day, listing, mark_ttl).await? {
            return Ok(Outcome::Created {
                day,
                room_id: record.id,
            });
        }
        if let Err(e) = store.destroy(&record.id).await {
            tracing::warn!(room = %record.id, error = %e, "a spare daily topic room was not destroyed; it expires with the day");
        }
        Ok(Outcome::Exists { day })
    }

    /// Makes each day's topic until the task is dropped: at start-up, just
    /// after every 00:00 UTC, and on the retry schedule after a failure.
    pub async fn run(self) {
        let mut failures = 0usize;
        let mut done: Option<i64> = None;
        loop {
            let today = utc_day(self.clock.now_secs());
            if done != Some(today) {
                match self.ensure_today().await {
                    Ok(outcome) => {
                        failures = 0;
                        done = Some(outcome.day());
                        match &outcome {
                            Outcome::Created { day, room_id } => tracing::info!(
                                room = %room_id,
                                day,
                                title = %self.topic(*day).title,
                                "daily topic created"
                            ),
                            Outcome::Exists { day } => {
                                tracing::info!(day, "daily topic exists already")
                            }
                        }
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        tracing::warn!(
                            error = %e,
                            retry_in_secs = next_attempt_in(0, failures).as_secs(),
                            "daily topic not created"
                        );
                    }
                }
            }
            tokio::time::sleep(next_attempt_in(self.clock.now_secs(), failures)).await;
        }
    }
}

/// Starts [`DailyTopics::run`] with the built-in topics on the current
/// runtime.
pub fn spawn(gateway: Gateway, clock: SharedClock) -> Result<JoinHandle<()>, TopicsError> {
    let daily = DailyTopics::builtin(gateway, clock)?;
    Ok(tokio::spawn(daily.run()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::PasswordConfig;
    use crate::GatewayConfig;
    use protocol::member::MemberId;
    use store::memory::{MemoryEngine, MemoryLimits};
    use store::{ManualClock, MemberRecord};

    /// 2026-03-14T15:09:26Z.
    const PI_DAY: i64 = 1_773_500_966;
    /// 2026-03-15T00:00:00Z.
    const PI_DAY_MIDNIGHT: i64 = 1_773_532_800;

    fn daily(config: GatewayConfig, clock: &Arc<ManualClock>) -> DailyTopics {
        let config = GatewayConfig {
            password: PasswordConfig {
                memory_kib: 64,
                iterations: 1,
                ..PasswordConfig::default()
            },
            ..config
        };
        let gateway = Gateway::new(MemoryEngine::new(MemoryLimits::default()), config).unwrap();
        DailyTopics::builtin(gateway, clock.clone()).unwrap()
    }

    async fn listed(d: &DailyTopics, now_secs: i64) -> Vec<store::ListingView> {
        d.gateway.store().listings(now_secs * 1000).await.unwrap()
    }

    #[test]
    fn the_builtin_list_has_over_sixty_distinct_valid_topics() {
        let topics = builtin_topics().unwrap();
        assert!(topics.len() >= 60, "{} topics", topics.len());
        let titles: std::collections::HashSet<&str> =
            topics.iter().map(|t| t.title.as_str()).collect();
        assert_eq!(titles.len(), topics.len(), "titles are distinct");
        for t in &topics {
            assert!(!t.tags.is_empty(), "{:?} has tags of its own", t.title);
            assert!(!t.description.is_empty(), "{:?} has a description", t.title);
        }
    }

    #[test]
    fn invalid_topic_lists_are_refused_with_the_directory_texts() {
        assert_eq!(parse_topics("[]"), Err(TopicsError::Empty));
        assert!(matches!(parse_topics("{"), Err(TopicsError::Format(_))));
        assert!(matches!(
            parse_topics(r#"[{"title":"x","extra":1}]"#),
            Err(TopicsError::Format(_))
        ));
        let five = r#"[{"title":"t","tags":["a","b","c","d","e"]}]"#;
        assert_eq!(
            parse_topics(five),
            Err(TopicsError::Invalid {
                index: 0,
                title: "t".into(),
                reason: "maximum 5 tags allowed".into()
            })
        );
        let bad = r#"[{"title":"ok"},{"title":"","tags":["a"]}]"#;
        assert!(
            matches!(parse_topics(bad), Err(TopicsError::Invalid { index: 1, reason, .. }) if reason == "title is required")
        );
        let markup = r#"[{"title":"<b>bold</b>"}]"#;
        assert!(matches!(
            parse_topics(markup),
            Err(TopicsError::Invalid { .. })
        ));
    }

    #[test]
    fn days_and_midnights_are_utc() {
        assert_eq!(utc_day(PI_DAY), 20_526);
        assert_eq!(next_utc_midnight(PI_DAY), PI_DAY_MIDNIGHT);
        assert_eq!(
            next_utc_midnight(PI_DAY_MIDNIGHT),
            PI_DAY_MIDNIGHT + SECS_PER_DAY,
            "at 00:00:00 the day has just begun"
        );
        assert_eq!(next_utc_midnight(PI_DAY_MIDNIGHT - 1), PI_DAY_MIDNIGHT);
        assert_eq!(utc_day(-1), -1);
        assert_eq!(next_utc_midnight(-1), 0);
        assert_eq!(ROTATION_START_DAY * SECS_PER_DAY, 1_767_225_600); // 2026-01-01
    }

    #[test]
    fn the_rotation_starts_on_2026_01_01_and_wraps() {
        let topics = builtin_topics().unwrap();
        let n = topics.len() as i64;
        assert_eq!(topic_for_day(&topics, ROTATION_START_DAY), &topics[0]);
        assert_eq!(topic_for_day(&topics, ROTATION_START_DAY + 1), &topics[1]);
        assert_eq!(topic_for_day(&topics, ROTATION_START_DAY + n), &topics[0]);
        assert_eq!(
            topic_for_day(&topics, ROTATION_START_DAY - 1),
            &topics[topics.len() - 1]
        );
    }

    #[test]
    fn attempts_follow_midnight_and_the_retry_schedule() {
        let min = |m: u64| Duration::from_secs(m * 60);
        assert_eq!(next_attempt_in(PI_DAY, 1), min(5));
        assert_eq!(next_attempt_in(PI_DAY, 2), min(10));
        assert_eq!(next_attempt_in(PI_DAY, 3), min(20));
        assert_eq!(next_attempt_in(PI_DAY, 4), min(30));
        assert_eq!(next_attempt_in(PI_DAY, 99), min(30));
        assert_eq!(next_attempt_in(PI_DAY, 0), RECHECK, "hourly at most");
        assert_eq!(
            next_attempt_in(PI_DAY_MIDNIGHT - 10, 0),
            Duration::from_secs(10) + AFTER_MIDNIGHT,
            "just after midnight"
        );
    }

    #[tokio::test]
    async fn the_daily_topic_expires_at_the_next_midnight_utc() {
        let clock = ManualClock::at_secs(PI_DAY);
        let d = daily(GatewayConfig::default(), &clock);
        let Outcome::Created { day, room_id } = d.ensure_today().await.unwrap() else {
            panic!("the first attempt creates the topic");
        };
        assert_eq!(day, utc_day(PI_DAY));
        let room = d.gateway.store().room(&room_id).await.unwrap().unwrap();
        assert_eq!(room.expires_at, PI_DAY_MIDNIGHT);
        assert_eq!(room.created_at, PI_DAY);
        assert!(!room.has_password());
        assert_eq!((room.ephemeral, room.capacity), (0, 50));
        assert!(room.listed);

        let views = listed(&d, PI_DAY).await;
        assert_eq!(views.len(), 1);
        let l = &views[0].listing;
        let topic = d.topic(day);
        assert!(l.is_daily_topic);
        assert!(!l.has_password);
        assert_eq!((l.created_at, l.expires_at), (PI_DAY, PI_DAY_MIDNIGHT));
        assert_eq!(l.title, topic.title);
        assert_eq!(l.description, topic.description);
        assert_eq!(l.tags[0], DAILY_TOPIC_TAG);
        assert_eq!(&l.tags[1..], topic.tags.as_slice());
        let parts: Vec<&str> = l.share_code.split(':').collect();
        assert_eq!(parts.len(), 4, "{}", l.share_code);
        assert_eq!(parts[0], room_id);
        let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap();
        assert_eq!((parts[1].len(), key.len()), (43, 32));
        assert_eq!(parts[2..], ["0", "1773532800"]);

        // A second before midnight: the room lives one second.
        let late = ManualClock::at_secs(PI_DAY_MIDNIGHT - 1);
        let d = daily(GatewayConfig::default(), &late);
        let Outcome::Created { room_id, .. } = d.ensure_today().await.unwrap() else {
            panic!("created");
        };
        let room = d.gateway.store().room(&room_id).await.unwrap().unwrap();
        assert_eq!(room.expires_at - room.created_at, 1);
    }

    #[tokio::test]
    async fn a_day_gets_one_topic_and_the_next_day_the_next() {
        let clock = ManualClock::at_secs(PI_DAY);
        let d = daily(GatewayConfig::default(), &clock);
        let first = d.ensure_today().await.unwrap();
        let again = d.ensure_today().await.unwrap();
        assert_eq!(again, Outcome::Exists { day: first.day() });
        let views = listed(&d, PI_DAY).await;
        assert_eq!(views.len(), 1, "one topic for the day");
        let rooms_before = views[0].listing.room_id.clone();

        clock.set_secs(PI_DAY_MIDNIGHT + 2);
        let next = d.ensure_today().await.unwrap();
        let Outcome::Created { day, room_id } = next else {
            panic!("a new day, a new topic");
        };
        assert_eq!(day, first.day() + 1);
        assert_ne!(room_id, rooms_before);
        let today: Vec<_> = listed(&d, PI_DAY_MIDNIGHT + 2)
            .await
            .into_iter()
            .filter(|v| v.listing.expires_at >= PI_DAY_MIDNIGHT + 2)
            .collect();
        assert_eq!(today.len(), 1);
        assert_eq!(today[0].listing.title, d.topic(day).title);
        assert_ne!(d.topic(day).title, d.topic(day - 1).title);
    }

    #[tokio::test]
    async fn the_daily_topic_is_listed_outside_the_public_room_cap() {
        let clock = ManualClock::at_secs(PI_DAY);
        let config = GatewayConfig {
            max_public_rooms: 0,
            ..GatewayConfig::default()
        };
        let d = daily(config, &clock);
        assert!(matches!(
            d.ensure_today().await.unwrap(),
            Outcome::Created { .. }
        ));
        assert_eq!(listed(&d, PI_DAY).await.len(), 1);
    }

    #[tokio::test]
    async fn the_daily_topic_survives_while_empty() {
        let clock = ManualClock::at_secs(PI_DAY);
        let d = daily(GatewayConfig::default(), &clock);
        let Outcome::Created { room_id, .. } = d.ensure_today().await.unwrap() else {
            panic!("created");
        };
        let store = d.gateway.store();
        let member = MemberRecord {
            id: MemberId::from_random(7),
            name: "visitor".into(),
            color: "#404040".into(),
            node: "local".into(),
            joined_at: 0,
        };
        store.join(&room_id, member, false, PI_DAY).await.unwrap();
        let left = store
            .leave(&room_id, MemberId::from_random(7), "local")
            .await
            .unwrap();
        assert!(left.was_member && !left.destroyed);
        let views = listed(&d, PI_DAY).await;
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].member_count, 0);
        assert!(store.room(&room_id).await.unwrap().is_some());
    }
}
