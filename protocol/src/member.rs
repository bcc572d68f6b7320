//! Member ids and colours, as the reference server makes them.

/// Formats 32 random bits as a member id: 8 lowercase hex characters, the
/// shape of the first 8 characters of a UUIDv4 that clients expect.
pub fn member_id(random: u32) -> String {
    format!("{random:08x}")
}

/// The reference colour of a member: fold the id's code points with
/// `h = h * 31 + c` in `u32`, then each of R, G, B (bits 16–23, 8–15, 0–7)
/// is OR-ed with 0x40, formatted `#rrggbb`.
pub fn member_color(id: &str) -> String {
    let h = id
        .chars()
        .fold(0u32, |h, c| h.wrapping_mul(31).wrapping_add(c as u32));
    let r = ((h >> 16) & 0xff) | 0x40;
    let g = ((h >> 8) & 0xff) | 0x40;
    let b = (h & 0xff) | 0x40;
    format!("#{r:02x}{g:02x}{b:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_id_is_eight_lowercase_hex() {
        assert_eq!(member_id(0x3f2a9c1b), "3f2a9c1b");
        assert_eq!(member_id(1), "00000001");
    }

    #[test]
    fn colour_matches_the_reference_fold() {
        // "a" = 97: h = 97 -> r=0x40, g=0x40, b=0x61|0x40=0x61
        assert_eq!(member_color("a"), "#404061");
        // every channel has bit 6 set
        let c = member_color("3f2a9c1b");
        assert_eq!(c.len(), 7);
        for i in [1, 3, 5] {
            let v = u8::from_str_radix(&c[i..i + 2], 16).unwrap();
            assert_eq!(v & 0x40, 0x40);
        }
    }
}
