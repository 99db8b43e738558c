//! The closed vocabularies of a hive's state: its setting keys (and their typed values),
//! who may post in it, and an agent's membership state.
//!
//! Each is the one definition of its strings. They travel and are stored as those strings
//! (event payloads, `state_candidates`, `hives.post_permissions`, `memberships.state`);
//! in Rust they are these types, turned into text only where they are written out
//! ([`as_str`](PostPermissions::as_str), `Serialize`) and back only through `parse`
//! (and `Deserialize`, which uses it), which refuses any other value.

use crate::payload::MembershipAction;

/// A value outside a closed vocabulary. Its message names what was expected, never the
/// value itself (which may come from anywhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be {expected}")]
pub struct UnknownValue {
    /// What the value was for (`post_permissions`, ...).
    pub what: &'static str,
    /// The accepted values, in words (`all, members or mods`).
    pub expected: &'static str,
}

/// An enum of fixed strings: `as_str`, `parse`, `ALL`, `Display`, `FromStr`, and serde as
/// the same strings. Exported: the store's sync vocabularies (link state, peer status and
/// source) are declared with it too.
#[macro_export]
macro_rules! closed_vocabulary {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal, expected $expected:literal) {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The value as it is stored and sent.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value `s` names; any other string is refused.
            pub fn parse(s: &str) -> Result<Self, $crate::hive::UnknownValue> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::hive::UnknownValue {
                        what: $what,
                        expected: $expected,
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::hive::UnknownValue;
            fn from_str(s: &str) -> Result<Self, $crate::hive::UnknownValue> {
                Self::parse(s)
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as ::serde::Deserialize>::deserialize(d)?;
                Self::parse(&s).map_err(::serde::de::Error::custom)
            }
        }
    };
}

closed_vocabulary! {
    /// Who may post in a hive (`hives.post_permissions`, `settings.post_permissions`).
    #[derive(Default)]
    pub enum PostPermissions ("post_permissions", expected "all, members or mods") {
        /// Anyone who may write in the hive (the default).
        #[default]
        All = "all",
        /// Members, moderators and the owner.
        Members = "members",
        /// Moderators and the owner.
        Mods = "mods",
    }
}

closed_vocabulary! {
    /// An agent's membership of a hive (`memberships.state`), as its membership register
    /// leaves it. Moderation is a separate flag; the owner is a member by definition.
    pub enum MembershipState ("membership state", expected "member, left or banned") {
        Member = "member",
        /// Never joined, left, or unbanned.
        Left = "left",
        Banned = "banned",
    }
}

impl MembershipState {
    /// The state a membership action leaves its agent in.
    pub fn after(action: MembershipAction) -> MembershipState {
        match action {
            MembershipAction::Join => MembershipState::Member,
            MembershipAction::Ban => MembershipState::Banned,
            MembershipAction::Leave | MembershipAction::Unban => MembershipState::Left,
        }
    }
}

closed_vocabulary! {
    /// The keys a `hive_setting_changed` may set; each is also the `hives` column that
    /// holds the setting.
    pub enum SettingKey (
        "setting key",
        expected "description, is_public, require_verification, allow_anonymous_read, post_permissions or owner_succession_secs"
    ) {
        Description = "description",
        IsPublic = "is_public",
        RequireVerification = "require_verification",
        AllowAnonymousRead = "allow_anonymous_read",
        PostPermissions = "post_permissions",
        /// How long (seconds) the owner's instance may be silent in the hive, while others
        /// are not, before a successor decides owner-preferring conflicts (0: never).
        OwnerSuccessionSecs = "owner_succession_secs",
    }
}

/// `owner_succession_secs` of a hive whose log never set it (a protocol constant, the same
/// on every instance): 30 days.
pub const DEFAULT_OWNER_SUCCESSION_SECS: i64 = 30 * 24 * 3600;

/// The largest `owner_succession_secs` accepted: 10 years.
pub const MAX_OWNER_SUCCESSION_SECS: i64 = 10 * 365 * 24 * 3600;

/// A hive setting with a value of its key's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    Description(String),
    IsPublic(bool),
    RequireVerification(bool),
    AllowAnonymousRead(bool),
    PostPermissions(PostPermissions),
    /// 0..=[`MAX_OWNER_SUCCESSION_SECS`].
    OwnerSuccessionSecs(i64),
}

impl Setting {
    pub fn key(&self) -> SettingKey {
        match self {
            Setting::Description(_) => SettingKey::Description,
            Setting::IsPublic(_) => SettingKey::IsPublic,
            Setting::RequireVerification(_) => SettingKey::RequireVerification,
            Setting::AllowAnonymousRead(_) => SettingKey::AllowAnonymousRead,
            Setting::PostPermissions(_) => SettingKey::PostPermissions,
            Setting::OwnerSuccessionSecs(_) => SettingKey::OwnerSuccessionSecs,
        }
    }

    /// The JSON value a `hive_setting_changed` carries.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Setting::Description(s) => s.as_str().into(),
            Setting::IsPublic(b)
            | Setting::RequireVerification(b)
            | Setting::AllowAnonymousRead(b) => (*b).into(),
            Setting::PostPermissions(p) => p.as_str().into(),
            Setting::OwnerSuccessionSecs(n) => (*n).into(),
        }
    }

    /// `value` as the setting `key`: of the key's JSON type and, for a vocabulary, one of
    /// its values. Limits (the description's length) are [`crate::validate::setting`]'s.
    pub fn from_json(key: SettingKey, value: &serde_json::Value) -> Result<Setting, String> {
        use serde_json::Value;
        let wrong_type = || format!("invalid setting {key}");
        Ok(match (key, value) {
            (SettingKey::Description, Value::String(s)) => Setting::Description(s.clone()),
            (SettingKey::IsPublic, Value::Bool(b)) => Setting::IsPublic(*b),
            (SettingKey::RequireVerification, Value::Bool(b)) => Setting::RequireVerification(*b),
            (SettingKey::AllowAnonymousRead, Value::Bool(b)) => Setting::AllowAnonymousRead(*b),
            (SettingKey::PostPermissions, Value::String(s)) => {
                Setting::PostPermissions(PostPermissions::parse(s).map_err(|e| e.to_string())?)
            }
            (SettingKey::OwnerSuccessionSecs, Value::Number(n)) => match n.as_i64() {
                Some(n) if (0..=MAX_OWNER_SUCCESSION_SECS).contains(&n) => {
                    Setting::OwnerSuccessionSecs(n)
                }
                _ => {
                    return Err(format!(
                        "owner_succession_secs must be an integer from 0 to {MAX_OWNER_SUCCESSION_SECS}"
                    ));
                }
            },
            _ => return Err(wrong_type()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every value of a vocabulary round-trips through `as_str`/`parse` and serde, and the
    /// words of its error name every value.
    fn round_trips<T>(
        all: &[T],
        as_str: fn(T) -> &'static str,
        parse: fn(&str) -> Result<T, UnknownValue>,
    ) where
        T: Copy + PartialEq + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
    {
        for &v in all {
            assert_eq!(parse(as_str(v)), Ok(v));
            let wire = serde_json::to_string(&v).unwrap();
            assert_eq!(wire, format!("\"{}\"", as_str(v)));
            assert_eq!(serde_json::from_str::<T>(&wire).unwrap(), v);
        }
        let err = parse("nope").unwrap_err();
        for &v in all {
            assert!(err.expected.contains(as_str(v)), "{err}");
        }
    }

    #[test]
    fn post_permissions_round_trip_and_refuse_unknown_values() {
        round_trips(
            PostPermissions::ALL,
            PostPermissions::as_str,
            PostPermissions::parse,
        );
        assert_eq!(PostPermissions::ALL.len(), 3);
        assert_eq!(
            PostPermissions::parse("members"),
            Ok(PostPermissions::Members)
        );
        assert_eq!(PostPermissions::default(), PostPermissions::All);
        // The API's message, unchanged.
        assert_eq!(
            PostPermissions::parse("kings").unwrap_err().to_string(),
            "post_permissions must be all, members or mods"
        );
        for bad in ["", "All", "MODS", " all", "mod", "everyone"] {
            assert!(PostPermissions::parse(bad).is_err(), "{bad:?}");
        }
        let e = serde_json::from_str::<PostPermissions>("\"kings\"").unwrap_err();
        assert!(e.to_string().contains("post_permissions must be"), "{e}");
        assert!(serde_json::from_str::<PostPermissions>("1").is_err());
    }

    #[test]
    fn membership_states_round_trip_and_refuse_unknown_values() {
        round_trips(
            MembershipState::ALL,
            MembershipState::as_str,
            MembershipState::parse,
        );
        assert_eq!(
            MembershipState::ALL
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>(),
            ["member", "left", "banned"]
        );
        for bad in ["", "joined", "Member", "none", "moderator"] {
            assert!(MembershipState::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn membership_actions_lead_to_states() {
        use MembershipAction as A;
        use MembershipState as S;
        for (action, state) in [
            (A::Join, S::Member),
            (A::Leave, S::Left),
            (A::Ban, S::Banned),
            (A::Unban, S::Left),
        ] {
            assert_eq!(S::after(action), state);
        }
    }

    #[test]
    fn setting_keys_round_trip_and_refuse_unknown_ones() {
        round_trips(SettingKey::ALL, SettingKey::as_str, SettingKey::parse);
        assert_eq!(
            SettingKey::ALL
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>(),
            [
                "description",
                "is_public",
                "require_verification",
                "allow_anonymous_read",
                "post_permissions",
                "owner_succession_secs"
            ]
        );
        for bad in ["", "owner", "name", "Description", "setting:description"] {
            assert!(SettingKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn settings_are_typed_by_their_key() {
        let samples = [
            Setting::Description("d".into()),
            Setting::IsPublic(false),
            Setting::RequireVerification(true),
            Setting::AllowAnonymousRead(false),
            Setting::PostPermissions(PostPermissions::Mods),
            Setting::OwnerSuccessionSecs(3600),
        ];
        // One sample per key, and each round-trips through its JSON value.
        assert_eq!(
            samples.iter().map(Setting::key).collect::<Vec<_>>(),
            SettingKey::ALL
        );
        for s in &samples {
            assert_eq!(Setting::from_json(s.key(), &s.to_json()).as_ref(), Ok(s));
        }
        assert_eq!(
            Setting::PostPermissions(PostPermissions::Members).to_json(),
            json!("members")
        );
        // Wrong JSON type, or a value outside the vocabulary: refused.
        let err = |k, v| Setting::from_json(k, &v).unwrap_err();
        assert_eq!(
            err(SettingKey::IsPublic, json!("yes")),
            "invalid setting is_public"
        );
        assert_eq!(
            err(SettingKey::Description, json!(42)),
            "invalid setting description"
        );
        assert_eq!(
            err(SettingKey::PostPermissions, json!(true)),
            "invalid setting post_permissions"
        );
        assert_eq!(
            err(SettingKey::PostPermissions, json!("everyone")),
            "post_permissions must be all, members or mods"
        );
        assert_eq!(
            err(SettingKey::OwnerSuccessionSecs, json!("60")),
            "invalid setting owner_succession_secs"
        );
        for bad in [
            json!(-1),
            json!(1.5),
            json!(MAX_OWNER_SUCCESSION_SECS + 1),
            json!(u64::MAX),
        ] {
            assert!(
                err(SettingKey::OwnerSuccessionSecs, bad.clone()).contains("from 0 to"),
                "{bad}"
            );
        }
        for ok in [0, 1, MAX_OWNER_SUCCESSION_SECS] {
            assert_eq!(
                Setting::from_json(SettingKey::OwnerSuccessionSecs, &json!(ok)),
                Ok(Setting::OwnerSuccessionSecs(ok))
            );
        }
    }
}
