//! MessagePack helpers, written with `rmpv` on purpose: the suite never uses the server's own
//! protocol crate, so a codec bug there shows up here instead of cancelling out.

use rmpv::Value;

/// Builds a msgpack map: `map! {"iv" => "abc", "index" => 3, "data" => vec![1u8, 2]}`.
/// Values go through `rmpv::Value::from`, so `&str`/`String` become str, `Vec<u8>`/`&[u8]`
/// become bin, integers become ints, and a `Value` stays as it is.
#[macro_export]
macro_rules! map {
    () => { rmpv::Value::Map(Vec::new()) };
    ($($k:expr => $v:expr),+ $(,)?) => {
        rmpv::Value::Map(vec![$( (rmpv::Value::from($k), rmpv::Value::from($v)) ),+])
    };
}

/// An array of strings as a msgpack value.
pub fn str_array(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::from(*s)).collect())
}

/// Encodes an envelope `{type, data}`.
pub fn envelope(ty: u8, data: Value) -> Vec<u8> {
    encode(&Value::Map(vec![
        (Value::from("type"), Value::from(ty)),
        (Value::from("data"), data),
    ]))
}

/// Encodes any value.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut buf = Vec::new();
    rmpv::encode::write_value(&mut buf, value).expect("encoding into a Vec cannot fail");
    buf
}

/// Encodes an envelope in which the str value `placeholder` (somewhere inside `data`) is
/// replaced by the raw msgpack bytes `raw`. This is how tests send integers of a chosen width
/// (`rmpv` always writes the smallest form) or other hand-made encodings.
pub fn envelope_with_raw(ty: u8, data: Value, placeholder: &str, raw: &[u8]) -> Vec<u8> {
    let bytes = envelope(ty, data);
    let needle = encode(&Value::from(placeholder));
    let pos = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .unwrap_or_else(|| panic!("placeholder {placeholder:?} not found in the envelope"));
    let mut out = bytes[..pos].to_vec();
    out.extend_from_slice(raw);
    out.extend_from_slice(&bytes[pos + needle.len()..]);
    out
}

/// Decodes one envelope into `(type, data)`; `Err` says what is wrong with it.
pub fn decode_envelope(bytes: &[u8]) -> Result<(u8, Value), String> {
    let mut rd = bytes;
    let value = rmpv::decode::read_value(&mut rd).map_err(|e| format!("not msgpack: {e}"))?;
    if !rd.is_empty() {
        return Err(format!("{} trailing bytes after the envelope", rd.len()));
    }
    let ty = value
        .get_opt("type")
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("envelope without an integer `type`: {value}"))?;
    let ty = u8::try_from(ty).map_err(|_| format!("envelope type {ty} does not fit u8"))?;
    let data = value.get_opt("data").cloned().unwrap_or(Value::Nil);
    Ok((ty, data))
}

/// Strict, panicking accessors for the fields of a decoded message: a wrong msgpack type
/// (bin where str is expected, ...) fails the test with the whole value in the message.
pub trait ValueExt {
    /// The field `key` of a map, if present.
    fn get_opt(&self, key: &str) -> Option<&Value>;
    /// The field `key`; panics when absent.
    fn field(&self, key: &str) -> &Value;
    /// True when the map has `key`.
    fn has(&self, key: &str) -> bool;
    /// The msgpack **str** `key`.
    fn str(&self, key: &str) -> &str;
    /// The msgpack **bin** `key`.
    fn bin(&self, key: &str) -> &[u8];
    /// The integer `key` (any width).
    fn int(&self, key: &str) -> i64;
    /// The bool `key`.
    fn boolean(&self, key: &str) -> bool;
    /// The array `key`.
    fn array(&self, key: &str) -> &[Value];
    /// The keys of a map, in order.
    fn keys(&self) -> Vec<String>;
}

impl ValueExt for Value {
    fn get_opt(&self, key: &str) -> Option<&Value> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    fn field(&self, key: &str) -> &Value {
        self.get_opt(key)
            .unwrap_or_else(|| panic!("field {key:?} missing in {self}"))
    }

    fn has(&self, key: &str) -> bool {
        self.get_opt(key).is_some()
    }

    fn str(&self, key: &str) -> &str {
        match self.field(key) {
            Value::String(s) => s
                .as_str()
                .unwrap_or_else(|| panic!("field {key:?} is not valid UTF-8 in {self}")),
            other => panic!("field {key:?} should be a msgpack str, got {other:?} in {self}"),
        }
    }

    fn bin(&self, key: &str) -> &[u8] {
        match self.field(key) {
            Value::Binary(b) => b,
            other => panic!("field {key:?} should be a msgpack bin, got {other:?} in {self}"),
        }
    }

    fn int(&self, key: &str) -> i64 {
        let v = self.field(key);
        v.as_i64().unwrap_or_else(|| {
            panic!("field {key:?} should be an integer (i64), got {v:?} in {self}")
        })
    }

    fn boolean(&self, key: &str) -> bool {
        let v = self.field(key);
        v.as_bool()
            .unwrap_or_else(|| panic!("field {key:?} should be a bool, got {v:?} in {self}"))
    }

    fn array(&self, key: &str) -> &[Value] {
        let v = self.field(key);
        v.as_array()
            .unwrap_or_else(|| panic!("field {key:?} should be an array, got {v:?} in {self}"))
    }

    fn keys(&self) -> Vec<String> {
        self.as_map()
            .unwrap_or_else(|| panic!("expected a map, got {self}"))
            .iter()
            .map(|(k, _)| k.as_str().unwrap_or("<non-str key>").to_string())
            .collect()
    }
}

/// The member colour of PROTOCOL.md §1: fold the id's code points with h = h*31 + c (u32,
/// wrapping); R, G, B are bits 16-23, 8-15, 0-7, each OR 0x40; `#rrggbb` lowercase.
pub fn member_color(id: &str) -> String {
    let h = id
        .chars()
        .fold(0u32, |h, c| h.wrapping_mul(31).wrapping_add(c as u32));
    let r = ((h >> 16) & 0xff) | 0x40;
    let g = ((h >> 8) & 0xff) | 0x40;
    let b = (h & 0xff) | 0x40;
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// True for a member id: exactly 8 lowercase hex characters.
pub fn is_member_id(id: &str) -> bool {
    id.len() == 8
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// True for a room id: a 21-character NanoID over `A-Z a-z 0-9 _ -`.
pub fn is_room_id(id: &str) -> bool {
    id.len() == 21
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Current unix time in milliseconds.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(d.as_millis()).expect("time fits i64")
}

/// Current unix time in seconds.
pub fn now_secs() -> i64 {
    now_ms() / 1000
}

/// Lowercase hex SHA-256 of a password, as the web client sends it.
pub fn password_hash(password: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(password.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The map must have exactly these keys (in any order: clients do not depend on key order).
pub fn assert_keys(value: &Value, expected: &[&str]) {
    let mut got = value.keys();
    got.sort();
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "unexpected set of keys in {value}");
}

/// Encodes an envelope whose `type` is written as the given raw msgpack bytes.
pub fn envelope_raw_type(raw_type: &[u8], data: Value) -> Vec<u8> {
    let placeholder = "\u{1}raw-type\u{1}";
    let bytes = encode(&Value::Map(vec![
        (Value::from("type"), Value::from(placeholder)),
        (Value::from("data"), data),
    ]));
    let needle = encode(&Value::from(placeholder));
    let pos = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("placeholder is in the envelope");
    let mut out = bytes[..pos].to_vec();
    out.extend_from_slice(raw_type);
    out.extend_from_slice(&bytes[pos + needle.len()..]);
    out
}
