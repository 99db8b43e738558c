//! Names and limits, shared by the HTTP API (which rejects bad input with 400/422) and the
//! materializer (which refuses events that break them). Limits follow the reference API.

use crate::hive::{Setting, SettingKey};

pub type Result = std::result::Result<(), String>;

fn charset(s: &str, extra_upper: bool) -> bool {
    s.bytes().all(|b| {
        b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || b == b'_'
            || b == b'-'
            || (extra_upper && b.is_ascii_uppercase())
    })
}

/// Agent names: 2–32 characters of `[A-Za-z0-9_-]`.
pub fn agent_name(s: &str) -> Result {
    if !(2..=32).contains(&s.len()) || !charset(s, true) {
        return Err("name must be 2-32 characters of A-Z a-z 0-9 _ -".into());
    }
    Ok(())
}

/// Hive names: 2–32 characters of `[a-z0-9_-]`.
pub fn hive_name(s: &str) -> Result {
    if !(2..=32).contains(&s.len()) || !charset(s, false) {
        return Err("name must be 2-32 characters of a-z 0-9 _ -".into());
    }
    Ok(())
}

/// True for a character refused in any text a person or peer gives us (names, titles,
/// descriptions, content): the C0 controls except tab and newline, DEL, the C1 controls,
/// and the bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069),
/// which make text display other than it reads. A carriage return is refused here too;
/// [`text`] accepts it only as part of a `\r\n` line break.
pub fn is_forbidden_char(c: char) -> bool {
    match c {
        '\t' | '\n' => false,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        _ => false,
    }
}

/// The one rule for control characters in text: none but tab, newline and `\r\n` line
/// breaks (see [`is_forbidden_char`]). `what` names the field in the message.
pub fn text(s: &str, what: &str) -> Result {
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' && chars.peek() == Some(&'\n') {
            continue;
        }
        if is_forbidden_char(c) {
            return Err(format!(
                "{what} must not contain control characters (U+{:04X}); only tab and newline are allowed",
                c as u32
            ));
        }
    }
    Ok(())
}

fn max_chars(s: &str, max: usize, what: &str) -> Result {
    if s.chars().count() > max {
        return Err(format!("{what} must be at most {max} characters"));
    }
    text(s, what)
}

pub fn agent_description(s: &str) -> Result {
    max_chars(s, 500, "description")
}

pub fn hive_description(s: &str) -> Result {
    max_chars(s, 1000, "description")
}

pub fn post_title(s: &str) -> Result {
    if s.trim().is_empty() {
        return Err("title must not be empty".into());
    }
    max_chars(s, 300, "title")
}

pub fn post_content(s: &str) -> Result {
    max_chars(s, 40_000, "content")
}

pub fn comment_content(s: &str) -> Result {
    if s.trim().is_empty() {
        return Err("content must not be empty".into());
    }
    max_chars(s, 10_000, "content")
}

/// Display names of peers and instances (the admin's peer names, the `instance_name` a
/// handshake announces): 1–100 characters, not blank, no control characters.
pub fn display_name(s: &str, what: &str) -> Result {
    if s.trim().is_empty() || s.chars().count() > 100 {
        return Err(format!("{what} must be 1-100 characters"));
    }
    text(s, what)
}

/// http(s) URLs only, at most 2000 characters.
pub fn url(s: &str) -> Result {
    let ok = (s.starts_with("http://") || s.starts_with("https://"))
        && s.len() > 8
        && s.len() <= 2000
        && !s.chars().any(|c| c.is_whitespace() || is_forbidden_char(c));
    if ok {
        Ok(())
    } else {
        Err("url must be an http(s) URL".into())
    }
}

/// A hive setting key with a value of its type (see [`Setting`]) and within its limits.
pub fn setting(key: &str, value: &serde_json::Value) -> Result {
    let key = SettingKey::parse(key).map_err(|_| format!("invalid setting {key}"))?;
    match Setting::from_json(key, value)? {
        Setting::Description(s) => hive_description(&s),
        Setting::IsPublic(_)
        | Setting::RequireVerification(_)
        | Setting::AllowAnonymousRead(_)
        | Setting::PostPermissions(_)
        | Setting::OwnerSuccessionSecs(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(agent_name("Al").is_ok());
        assert!(agent_name("a").is_err());
        assert!(agent_name("a b").is_err());
        assert!(hive_name("eng-1").is_ok());
        assert!(hive_name("Eng").is_err());
        assert!(hive_name(&"a".repeat(33)).is_err());
    }

    #[test]
    fn settings_are_typed() {
        assert!(setting("is_public", &serde_json::json!(true)).is_ok());
        assert!(setting("is_public", &serde_json::json!("yes")).is_err());
        assert!(setting("post_permissions", &serde_json::json!("mods")).is_ok());
        assert_eq!(
            setting("post_permissions", &serde_json::json!("kings")),
            Err("post_permissions must be all, members or mods".into())
        );
        assert_eq!(
            setting("owner", &serde_json::json!("x")),
            Err("invalid setting owner".into())
        );
        assert!(setting("description", &serde_json::json!("d".repeat(1000))).is_ok());
        assert!(setting("description", &serde_json::json!("d".repeat(1001))).is_err());
        assert!(setting("owner", &serde_json::json!("x")).is_err());
    }

    #[test]
    fn control_characters_are_refused_except_tab_and_newlines() {
        for bad in [
            "a\u{0}b",
            "a\u{1}",
            "\u{1b}[31m",
            "x\u{7f}",
            "x\u{85}",
            "x\u{9f}",
            "\u{202a}x",
            "\u{202e}x",
            "\u{2066}x",
            "\u{2069}",
            "a\rb",
            "a\r",
        ] {
            assert!(text(bad, "title").is_err(), "{bad:?}");
            assert!(post_title(bad).is_err(), "{bad:?}");
            assert!(post_content(bad).is_err(), "{bad:?}");
            assert!(comment_content(bad).is_err(), "{bad:?}");
            assert!(hive_description(bad).is_err(), "{bad:?}");
            assert!(agent_description(bad).is_err(), "{bad:?}");
            assert!(display_name(bad, "name").is_err(), "{bad:?}");
        }
        for good in [
            "a\tb",
            "line\nline",
            "crlf\r\nline",
            "héllo wörld ✓",
            "\u{200f}rlm",
        ] {
            assert!(text(good, "content").is_ok(), "{good:?}");
            assert!(post_content(good).is_ok(), "{good:?}");
            assert!(comment_content(good).is_ok(), "{good:?}");
        }
        assert_eq!(
            text("a\u{202e}b", "title"),
            Err("title must not contain control characters (U+202E); only tab and newline are allowed".into())
        );
        assert!(setting("description", &serde_json::json!("a\u{0}")).is_err());
        assert!(display_name("  ", "name").is_err());
        assert!(display_name("Peer B", "name").is_ok());
    }

    #[test]
    fn urls() {
        assert!(url("https://example.org/x").is_ok());
        assert!(url("javascript:alert(1)").is_err());
    }
}
