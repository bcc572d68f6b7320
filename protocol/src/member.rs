//! Member ids and colours, as the reference server makes them.

/// The reference colour of a member: fold the id's code points with
/// `h = h * 31 + c` in `u32`, then each of R, G, B (bits 16–23, 8–15, 0–7)
/// is OR-ed with 0x40, formatted `#rrggbb`.
pub fn member_color(id: &str) -> String {
    let h = id
        .chars()
        .fold(0u32, |h, c| h.wrapping_mul(31).wrapping_add(c as u32));
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut color = String::with_capacity(7);
    color.push('#');
    for shift in [16, 8, 0] {
        let channel = ((h >> shift) & 0xff) | 0x40;
        color.push(char::from(HEX[(channel >> 4) as usize]));
        color.push(char::from(HEX[(channel & 0xf) as usize]));
    }
    color
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_matches_the_reference_fold() {
        // "a" = 97: h = 97 -> r=0x40, g=0x40, b=0x61|0x40=0x61
        assert_eq!(member_color("a"), "#404061");
        // the same as formatting the channels, for any id
        for id in ["", "a", "3f2a9c1b", "ffffffff", "00000000", "ÿ€"] {
            let h = id
                .chars()
                .fold(0u32, |h, c| h.wrapping_mul(31).wrapping_add(c as u32));
            let [r, g, b] = [16, 8, 0].map(|s| ((h >> s) & 0xff) | 0x40);
            assert_eq!(member_color(id), format!("#{r:02x}{g:02x}{b:02x}"), "{id}");
        }
        // every channel has bit 6 set
        let c = member_color("3f2a9c1b");
        assert_eq!(c.len(), 7);
        for i in [1, 3, 5] {
            let v = u8::from_str_radix(&c[i..i + 2], 16).unwrap();
            assert_eq!(v & 0x40, 0x40);
        }
    }
}

/// A member id: 8 lowercase hex characters, the shape of the first 8
/// characters of a UUIDv4 that clients expect. `Copy`, so a bus routing
/// header needs no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MemberId([u8; 8]);

impl MemberId {
    /// The id for 32 random bits.
    pub fn from_random(random: u32) -> MemberId {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut id = [0u8; 8];
        for (i, b) in id.iter_mut().enumerate() {
            *b = HEX[((random >> (28 - 4 * i)) & 0xf) as usize];
        }
        MemberId(id)
    }

    /// Parses an id from text: exactly 8 lowercase hex characters.
    pub fn parse(s: &str) -> Option<MemberId> {
        let bytes: [u8; 8] = s.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            .then_some(MemberId(bytes))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only hex ASCII is ever stored (from_random, parse).
        std::str::from_utf8(&self.0).unwrap_or("00000000")
    }

    /// The raw 8 bytes (for routing headers).
    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }
}

impl std::fmt::Debug for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod id_tests {
    use super::*;

    #[test]
    fn member_id_round_trips_through_text() {
        let id = MemberId::from_random(0x3f2a9c1b);
        assert_eq!(id.as_str(), "3f2a9c1b");
        assert_eq!(MemberId::parse("3f2a9c1b"), Some(id));
        assert_eq!(MemberId::parse("3F2A9C1B"), None);
        assert_eq!(MemberId::parse("3f2a9c1"), None);
    }
}
