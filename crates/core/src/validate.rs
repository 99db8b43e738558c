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

fn max_chars(s: &str, max: usize, what: &str) -> Result {
    if s.chars().count() > max {
        return Err(format!("{what} must be at most {max} characters"));
    }
    Ok(())
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

/// http(s) URLs only, at most 2000 characters.
pub fn url(s: &str) -> Result {
    let ok = (s.starts_with("http://") || s.starts_with("https://"))
        && s.len() > 8
        && s.len() <= 2000
        && !s.chars().any(char::is_whitespace);
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
        | Setting::PostPermissions(_) => Ok(()),
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
    fn urls() {
        assert!(url("https://example.org/x").is_ok());
        assert!(url("javascript:alert(1)").is_err());
    }
}
