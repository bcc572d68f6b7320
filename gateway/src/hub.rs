//! The public room directory (`/api/hub`): query parsing, filtering,
//! sorting and paging, exactly as the reference server does it
//! (PROTOCOL.md §9). Pure functions over [`store::ListingView`]s, so every
//! gateway replica reading the same store answers the same page.
//!
//! The reference writes its errors through Go's `http.Error`: the body is
//! JSON-looking text plus a newline, served as `text/plain`. We copy that
//! (clients written against it parse the body, not the type).

use crate::server::unescape;
use serde::Serialize;
use store::ListingView;

/// Rooms per page when `limit` is absent or 0.
pub const DEFAULT_LIMIT: usize = 50;
/// Largest `limit` accepted.
pub const MAX_LIMIT: usize = 100;

/// How the rooms are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// 5-minute message count desc, then members desc.
    Active,
    /// Members desc, then 5-minute message count desc.
    People,
    /// createdAt desc.
    Newest,
    /// Anything else: members desc, then createdAt desc.
    Default,
}

/// A parsed `/api/hub` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubQuery {
    /// Case-insensitive exact tag match ("" = any).
    pub tag: String,
    /// Case-insensitive substring of title or description ("" = any).
    pub q: String,
    /// `isDailyTopic=true|false`; anything else = no filter.
    pub is_daily_topic: Option<bool>,
    pub sort: Sort,
    pub limit: usize,
    pub offset: usize,
}

/// Why a query was refused (400), with the reference's exact texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("invalid limit parameter")]
    InvalidLimit,
    #[error("limit must not exceed 100")]
    LimitTooLarge,
    #[error("invalid offset parameter")]
    InvalidOffset,
}

/// The first value of `key` in a raw query string, with Go's
/// `url.ParseQuery` rules: pairs split on `&`, pairs with a `;` or a bad
/// escape skipped, a key without `=` has the value "".
pub fn query_value(raw_query: &str, key: &str) -> Option<String> {
    for pair in raw_query.split('&') {
        if pair.is_empty() || pair.contains(';') {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (unescape(k), unescape(v)) else {
            continue;
        };
        if k == key {
            return Some(v);
        }
    }
    None
}

/// Go's `strconv.Atoi` on a 64-bit int: optional sign, decimal digits.
fn atoi(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Parses the query string of an `/api/hub` request.
pub fn parse_query(raw_query: &str) -> Result<HubQuery, QueryError> {
    let get = |key| query_value(raw_query, key).unwrap_or_default();
    let limit = match get("limit").as_str() {
        "" => DEFAULT_LIMIT,
        text => match atoi(text) {
            Some(n) if n < 0 => return Err(QueryError::InvalidLimit),
            None => return Err(QueryError::InvalidLimit),
            Some(n) if n > MAX_LIMIT as i64 => return Err(QueryError::LimitTooLarge),
            Some(0) => DEFAULT_LIMIT,
            Some(n) => n as usize,
        },
    };
    let offset = match get("offset").as_str() {
        "" => 0,
        text => match atoi(text) {
            Some(n) if n >= 0 => usize::try_from(n).unwrap_or(usize::MAX),
            _ => return Err(QueryError::InvalidOffset),
        },
    };
    let sort = match get("sort").as_str() {
        "active" => Sort::Active,
        "people" => Sort::People,
        "newest" => Sort::Newest,
        _ => Sort::Default,
    };
    let is_daily_topic = match get("isDailyTopic").as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    };
    Ok(HubQuery {
        tag: get("tag"),
        q: get("q"),
        is_daily_topic,
        sort,
        limit,
        offset,
    })
}

/// One room of the directory, in the reference's key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HubRoom {
    pub room_id: String,
    pub share_code: String,
    pub title: String,
    pub description: String,
    /// JSON null when the room has no tags.
    pub tags: Option<Vec<String>>,
    pub member_count: u32,
    pub has_password: bool,
    pub created_at: i64,
    pub expires_at: i64,
    /// Present only when true.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub is_daily_topic: bool,
    #[serde(rename = "messageCount5min")]
    pub message_count_5min: u32,
}

impl From<ListingView> for HubRoom {
    fn from(view: ListingView) -> HubRoom {
        let l = view.listing;
        HubRoom {
            room_id: l.room_id,
            share_code: l.share_code,
            title: l.title,
            description: l.description,
            tags: if l.tags.is_empty() {
                None
            } else {
                Some(l.tags)
            },
            member_count: view.member_count,
            has_password: l.has_password,
            created_at: l.created_at,
            expires_at: l.expires_at,
            is_daily_topic: l.is_daily_topic,
            message_count_5min: view.message_count_5min,
        }
    }
}

/// A page of the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HubPage {
    pub rooms: Vec<HubRoom>,
    /// Matching rooms before paging.
    pub total: usize,
    pub limit: usize,
    pub offset: usize,
    /// Connected WebSockets.
    pub total_online: u64,
}

/// `/api/hub/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HubStats {
    pub online: u64,
    pub match_enabled: bool,
    pub match_queue_size: u64,
}

fn matches(view: &ListingView, query: &HubQuery) -> bool {
    let l = &view.listing;
    if let Some(daily) = query.is_daily_topic {
        if l.is_daily_topic != daily {
            return false;
        }
    }
    if !query.tag.is_empty() {
        let tag = query.tag.to_lowercase();
        if !l.tags.iter().any(|t| t.to_lowercase() == tag) {
            return false;
        }
    }
    if !query.q.is_empty() {
        let q = query.q.to_lowercase();
        if !l.title.to_lowercase().contains(&q) && !l.description.to_lowercase().contains(&q) {
            return false;
        }
    }
    true
}

/// Filters, sorts (stable, after a deterministic base order of createdAt
/// then room id, so replicas agree on ties) and pages the listings.
pub fn page(mut views: Vec<ListingView>, query: &HubQuery, total_online: u64) -> HubPage {
    views.retain(|v| matches(v, query));
    views.sort_by(|a, b| {
        (a.listing.created_at, &a.listing.room_id).cmp(&(b.listing.created_at, &b.listing.room_id))
    });
    match query.sort {
        Sort::Active => views.sort_by(|a, b| {
            (b.message_count_5min, b.member_count).cmp(&(a.message_count_5min, a.member_count))
        }),
        Sort::People => views.sort_by(|a, b| {
            (b.member_count, b.message_count_5min).cmp(&(a.member_count, a.message_count_5min))
        }),
        Sort::Newest => views.sort_by_key(|v| std::cmp::Reverse(v.listing.created_at)),
        Sort::Default => views.sort_by(|a, b| {
            (b.member_count, b.listing.created_at).cmp(&(a.member_count, a.listing.created_at))
        }),
    }
    let total = views.len();
    let rooms = views
        .into_iter()
        .skip(query.offset)
        .take(query.limit)
        .map(HubRoom::from)
        .collect();
    HubPage {
        rooms,
        total,
        limit: query.limit,
        offset: query.offset,
        total_online,
    }
}

/// Drops listings whose room has expired (`now > expiresAt`): they cannot
/// be joined (E007) and go at the next sweep anyway; at 00:00 UTC this is
/// what takes yesterday's daily topic off the directory at once.
pub fn drop_expired(views: &mut Vec<ListingView>, now_secs: i64) {
    views.retain(|v| v.listing.expires_at == 0 || now_secs <= v.listing.expires_at);
}

/// The reference's error body: `{"error":"..."}` plus a newline.
pub fn error_body(text: &str) -> String {
    let mut body = serde_json::json!({ "error": text }).to_string();
    body.push('\n');
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::Listing;

    fn view(id: &str, created: i64, members: u32, messages: u32) -> ListingView {
        ListingView {
            listing: Listing {
                room_id: id.into(),
                title: format!("Room {id}"),
                description: String::new(),
                tags: vec![],
                share_code: format!("{id}:k:0:0"),
                has_password: false,
                created_at: created,
                expires_at: 0,
                is_daily_topic: false,
            },
            member_count: members,
            message_count_5min: messages,
        }
    }

    fn ids(page: &HubPage) -> Vec<&str> {
        page.rooms.iter().map(|r| r.room_id.as_str()).collect()
    }

    fn q(raw: &str) -> HubQuery {
        parse_query(raw).unwrap()
    }

    #[test]
    fn defaults_apply_to_an_empty_query() {
        let query = q("");
        assert_eq!(query.limit, 50);
        assert_eq!(query.offset, 0);
        assert_eq!(query.sort, Sort::Default);
        assert_eq!(query.is_daily_topic, None);
        assert_eq!(q("limit=0").limit, 50);
        assert_eq!(q("limit=100&offset=7").limit, 100);
        assert_eq!(q("limit=%2B5").limit, 5);
    }

    #[test]
    fn bad_limits_and_offsets_get_the_reference_texts() {
        for raw in [
            "limit=-1",
            "limit=x",
            "limit=1.5",
            "limit=99999999999999999999",
        ] {
            assert_eq!(parse_query(raw), Err(QueryError::InvalidLimit), "{raw}");
        }
        assert_eq!(parse_query("limit=101"), Err(QueryError::LimitTooLarge));
        for raw in ["offset=-1", "offset=abc", "offset= 1"] {
            assert_eq!(parse_query(raw), Err(QueryError::InvalidOffset), "{raw}");
        }
        assert_eq!(
            QueryError::InvalidLimit.to_string(),
            "invalid limit parameter"
        );
        assert_eq!(
            QueryError::LimitTooLarge.to_string(),
            "limit must not exceed 100"
        );
        assert_eq!(
            QueryError::InvalidOffset.to_string(),
            "invalid offset parameter"
        );
        // limit is checked before offset
        assert_eq!(
            parse_query("offset=-1&limit=-1"),
            Err(QueryError::InvalidLimit)
        );
    }

    #[test]
    fn query_values_are_url_decoded_and_the_first_wins() {
        assert_eq!(
            query_value("q=hello+world%21", "q").as_deref(),
            Some("hello world!")
        );
        assert_eq!(query_value("q=a&q=b", "q").as_deref(), Some("a"));
        assert_eq!(query_value("q=%zz&q=ok", "q").as_deref(), Some("ok"));
        assert_eq!(query_value("q;x=1&q=2", "q").as_deref(), Some("2"));
        assert_eq!(query_value("flag", "flag").as_deref(), Some(""));
        assert_eq!(query_value("", "q"), None);
        assert_eq!(q("isDailyTopic=true").is_daily_topic, Some(true));
        assert_eq!(q("isDailyTopic=false").is_daily_topic, Some(false));
        assert_eq!(q("isDailyTopic=yes").is_daily_topic, None);
        assert_eq!(q("sort=active").sort, Sort::Active);
        assert_eq!(q("sort=people").sort, Sort::People);
        assert_eq!(q("sort=newest").sort, Sort::Newest);
        assert_eq!(q("sort=ACTIVE").sort, Sort::Default);
    }

    #[test]
    fn default_sort_is_members_then_newest() {
        let views = vec![view("a", 1, 2, 0), view("b", 2, 5, 0), view("c", 3, 2, 0)];
        assert_eq!(ids(&page(views, &q(""), 0)), ["b", "c", "a"]);
    }

    #[test]
    fn active_sort_is_messages_then_members() {
        let views = vec![view("a", 1, 9, 1), view("b", 2, 1, 5), view("c", 3, 3, 1)];
        assert_eq!(ids(&page(views, &q("sort=active"), 0)), ["b", "a", "c"]);
    }

    #[test]
    fn people_sort_is_members_then_messages() {
        let views = vec![view("a", 1, 2, 1), view("b", 2, 2, 7), view("c", 3, 9, 0)];
        assert_eq!(ids(&page(views, &q("sort=people"), 0)), ["c", "b", "a"]);
    }

    #[test]
    fn newest_sort_is_created_desc_and_ties_are_deterministic() {
        let views = vec![view("z", 5, 0, 0), view("a", 5, 0, 0), view("m", 9, 0, 0)];
        assert_eq!(
            ids(&page(views.clone(), &q("sort=newest"), 0)),
            ["m", "a", "z"]
        );
        let mut reversed = views;
        reversed.reverse();
        assert_eq!(ids(&page(reversed, &q("sort=newest"), 0)), ["m", "a", "z"]);
    }

    #[test]
    fn filters_match_tags_exactly_and_text_as_substring_ignoring_case() {
        let mut a = view("a", 1, 0, 0);
        a.listing.tags = vec!["Rust-Lang".into()];
        a.listing.description = "systems programming".into();
        let mut b = view("b", 2, 0, 0);
        b.listing.tags = vec!["rust".into()];
        b.listing.is_daily_topic = true;
        let views = vec![a, b];
        assert_eq!(ids(&page(views.clone(), &q("tag=RUST"), 0)), ["b"]);
        assert_eq!(ids(&page(views.clone(), &q("q=PROGRAM"), 0)), ["a"]);
        assert_eq!(ids(&page(views.clone(), &q("q=room"), 0)).len(), 2);
        assert_eq!(ids(&page(views.clone(), &q("isDailyTopic=true"), 0)), ["b"]);
        assert_eq!(ids(&page(views, &q("isDailyTopic=false"), 0)), ["a"]);
    }

    #[test]
    fn paging_counts_the_total_before_slicing() {
        let views: Vec<_> = (0..5).map(|i| view(&format!("r{i}"), i, 0, 0)).collect();
        let p = page(views.clone(), &q("limit=2&offset=1&sort=newest"), 7);
        assert_eq!(ids(&p), ["r3", "r2"]);
        assert_eq!((p.total, p.limit, p.offset, p.total_online), (5, 2, 1, 7));
        let past = page(views, &q("offset=99"), 0);
        assert!(past.rooms.is_empty());
        assert_eq!(past.total, 5);
    }

    #[test]
    fn room_objects_have_the_reference_shape() {
        let mut daily = view("d", 1, 3, 4);
        daily.listing.is_daily_topic = true;
        daily.listing.tags = vec!["daily-topic".into()];
        let p = page(vec![view("a", 2, 1, 0), daily], &q(""), 2);
        let json = serde_json::to_value(&p).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 5);
        for key in ["rooms", "total", "limit", "offset", "totalOnline"] {
            assert!(keys.contains(&key), "{key}");
        }
        let daily = &json["rooms"][0];
        assert_eq!(daily["isDailyTopic"], true);
        assert_eq!(daily["tags"], serde_json::json!(["daily-topic"]));
        assert_eq!(daily["messageCount5min"], 4);
        let plain = &json["rooms"][1];
        assert!(plain["tags"].is_null());
        assert!(plain.get("isDailyTopic").is_none());
        assert_eq!(
            serde_json::to_string(&p.rooms[1]).unwrap(),
            r#"{"roomId":"a","shareCode":"a:k:0:0","title":"Room a","description":"","tags":null,"memberCount":1,"hasPassword":false,"createdAt":2,"expiresAt":0,"messageCount5min":0}"#
        );
    }

    #[test]
    fn expired_listings_are_dropped_and_the_last_second_is_kept() {
        let mut forever = view("f", 1, 0, 0);
        forever.listing.expires_at = 0;
        let mut ending = view("e", 1, 0, 0);
        ending.listing.expires_at = 100;
        let mut views = vec![forever, ending];
        drop_expired(&mut views, 100);
        assert_eq!(views.len(), 2, "at expiresAt the room is still alive");
        drop_expired(&mut views, 101);
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].listing.room_id, "f");
    }

    #[test]
    fn error_bodies_are_json_text_with_a_newline() {
        assert_eq!(
            error_body("method not allowed"),
            "{\"error\":\"method not allowed\"}\n"
        );
    }
}
