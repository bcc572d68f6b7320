//! Lax field access on a decoded `data` map, with the reference server's
//! conversions: any integer width is an integer, a float is 0, str and bin
//! are distinct, and a missing or mistyped field reads as its zero value.

use rmpv::ValueRef;

/// A `data` value that turned out to be a map, with string keys.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields<'v, 'a> {
    entries: &'v [(ValueRef<'a>, ValueRef<'a>)],
}

impl<'v, 'a> Fields<'v, 'a> {
    /// The map behind `data`, or `None` when `data` is not a map.
    pub(crate) fn of(data: &'v ValueRef<'a>) -> Option<Fields<'v, 'a>> {
        match data {
            ValueRef::Map(entries) => Some(Fields { entries }),
            _ => None,
        }
    }

    fn get(&self, key: &str) -> Option<&'v ValueRef<'a>> {
        // The last occurrence wins, as in a Go map decode.
        self.entries.iter().rev().find_map(|(k, v)| match k {
            ValueRef::String(s) if s.as_bytes() == key.as_bytes() => Some(v),
            _ => None,
        })
    }

    /// A msgpack **str** field; "" when missing, not a str, or not UTF-8.
    pub(crate) fn str(&self, key: &str) -> &'a str {
        match self.get(key) {
            Some(ValueRef::String(s)) => s.into_str().unwrap_or(""),
            _ => "",
        }
    }

    /// A msgpack **str** field, distinguishing "absent or not a string" (`None`).
    pub(crate) fn opt_str(&self, key: &str) -> Option<&'a str> {
        match self.get(key) {
            Some(ValueRef::String(s)) => s.into_str(),
            _ => None,
        }
    }

    /// A msgpack **bin** field; empty when missing or not bin.
    pub(crate) fn bin(&self, key: &str) -> &'a [u8] {
        match self.get(key) {
            Some(ValueRef::Binary(b)) => b,
            _ => &[],
        }
    }

    /// Any integer; floats, other types and missing read as 0.
    pub(crate) fn int(&self, key: &str) -> i64 {
        self.get(key).map(int_of).unwrap_or(0)
    }

    /// A msgpack bool; false when missing or of another type.
    pub(crate) fn bool(&self, key: &str) -> bool {
        matches!(self.get(key), Some(ValueRef::Boolean(true)))
    }

    /// An array of str; non-string elements are dropped.
    pub(crate) fn str_array(&self, key: &str) -> Vec<&'a str> {
        match self.get(key) {
            Some(ValueRef::Array(items)) => items
                .iter()
                .filter_map(|v| match v {
                    ValueRef::String(s) => s.into_str(),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// The reference's "any int" conversion: integers of every width (saturated
/// into `i64`), everything else 0.
fn int_of(v: &ValueRef<'_>) -> i64 {
    match v {
        ValueRef::Integer(i) => i
            .as_i64()
            .or_else(|| i.as_u64().map(|_| i64::MAX))
            .unwrap_or(0),
        _ => 0,
    }
}
