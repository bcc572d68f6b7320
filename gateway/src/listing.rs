//! The public directory's rules (PROTOCOL.md §9): sanitising and validating
//! a creator's title, description and tags, with the reference's texts.

use protocol::{ErrorCode, Reject};

/// Longest title, in runes.
pub const MAX_TITLE_RUNES: usize = 50;
/// Longest description, in runes.
pub const MAX_DESCRIPTION_RUNES: usize = 200;
/// Most tags on a listing.
pub const MAX_TAGS: usize = 5;
/// Longest tag, in bytes.
pub const MAX_TAG_BYTES: usize = 20;
/// Longest `keyEncoded` (a room key's base64url is 43 characters; it is
/// stored in the listing's share code, so it is bounded before that).
pub const MAX_KEY_ENCODED_BYTES: usize = 128;

/// Removes HTML-like tags `<…>` and control characters (newline and tab
/// excepted), then trims surrounding white space.
///
/// Linear in the input: a `<` is a tag only when a `>` follows it, and once
/// a search for `>` has failed no later `<` can succeed, so the rest is not
/// searched again (a text of many `<` and no `>` would otherwise cost a
/// search per `<`, quadratic in a 100 KB frame).
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut closing_ahead = true;
    while let Some(c) = rest.chars().next() {
        if c == '<' && closing_ahead {
            match rest.find('>') {
                Some(end) => {
                    rest = &rest[end + 1..];
                    continue;
                }
                None => closing_ahead = false,
            }
        }
        if !c.is_control() || c == '\n' || c == '\t' {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out.trim().to_owned()
}

/// A listing's text after sanitising and validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingText {
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
}

fn invalid(msg: impl Into<String>) -> Reject {
    Reject::owned(ErrorCode::InvalidListing, msg.into())
}

/// Sanitises and validates; the error is E011 with the reference's text.
pub fn validate(title: &str, description: &str, tags: &[&str]) -> Result<ListingText, Reject> {
    let title = sanitize(title);
    let description = sanitize(description);
    if title.is_empty() {
        return Err(invalid("title is required"));
    }
    if title.chars().count() > MAX_TITLE_RUNES {
        return Err(invalid("title must be 50 characters or less"));
    }
    if description.chars().count() > MAX_DESCRIPTION_RUNES {
        return Err(invalid("description must be 200 characters or less"));
    }
    if tags.len() > MAX_TAGS {
        return Err(invalid("maximum 5 tags allowed"));
    }
    for tag in tags {
        if tag.is_empty() || tag.len() > MAX_TAG_BYTES {
            return Err(invalid("each tag must be 1-20 characters"));
        }
        if !tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(invalid(format!(
                "tag \"{tag}\" contains invalid characters (alphanumeric and hyphens only)"
            )));
        }
    }
    Ok(ListingText {
        title,
        description,
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_strips_tags_and_controls_and_trims() {
        assert_eq!(sanitize("  <b>Hi</b>\u{7}\tthere\n "), "Hi\tthere");
        assert_eq!(sanitize("a < b"), "a < b");
        assert_eq!(sanitize("<script>x</script>"), "x");
    }

    #[test]
    fn sanitising_is_linear_in_the_input() {
        // Quadratic, this took minutes; linear, milliseconds.
        let hostile = "<".repeat(200_000) + "x";
        let started = std::time::Instant::now();
        assert_eq!(sanitize(&hostile), hostile);
        let nested = "<a".repeat(100_000) + ">b";
        assert_eq!(sanitize(&nested), "b");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn validation_texts_match_the_reference() {
        let msg = |r: Result<ListingText, Reject>| r.unwrap_err().msg.into_owned();
        assert_eq!(msg(validate("<i></i>", "", &[])), "title is required");
        assert_eq!(
            msg(validate(&"é".repeat(51), "", &[])),
            "title must be 50 characters or less"
        );
        assert!(validate(&"é".repeat(50), "", &[]).is_ok());
        assert_eq!(
            msg(validate("t", &"d".repeat(201), &[])),
            "description must be 200 characters or less"
        );
        assert_eq!(msg(validate("t", "", &["a"; 6])), "maximum 5 tags allowed");
        assert_eq!(
            msg(validate("t", "", &[""])),
            "each tag must be 1-20 characters"
        );
        assert_eq!(
            msg(validate("t", "", &["é".repeat(11).as_str()])),
            "each tag must be 1-20 characters"
        );
        assert_eq!(
            msg(validate("t", "", &["a_b"])),
            "tag \"a_b\" contains invalid characters (alphanumeric and hyphens only)"
        );
        assert_eq!(validate(" t ", " d ", &["rust-lang"]).unwrap().title, "t");
    }
}
