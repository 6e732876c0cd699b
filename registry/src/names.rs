//! Checked names: `ModelName`, `Version`, `Alias` and `Label`. Each is parsed once and is then
//! safe to use as one segment of a storage key (no `/`, no `..`, no control characters).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A name that breaks the rules of its kind; the message says which rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {input:?}: {reason}")]
pub struct NameError {
    kind: &'static str,
    input: String,
    reason: String,
}

impl NameError {
    /// A name of `kind` refused for `reason`.
    pub(crate) fn new(kind: &'static str, input: &str, reason: impl Into<String>) -> Self {
        Self {
            kind,
            input: input.chars().take(160).collect(),
            reason: reason.into(),
        }
    }
}

/// The character rules of one kind of name.
struct Rules {
    kind: &'static str,
    max_len: usize,
    allowed: fn(char) -> bool,
    allowed_text: &'static str,
}

impl Rules {
    fn check(&self, input: &str) -> Result<(), NameError> {
        let fail = |reason: String| NameError {
            kind: self.kind,
            input: input.chars().take(160).collect(),
            reason,
        };
        if input.is_empty() {
            return Err(fail("must not be empty".into()));
        }
        if input.len() > self.max_len {
            return Err(fail(format!("longer than {} bytes", self.max_len)));
        }
        if let Some(c) = input.chars().find(|c| c.is_control()) {
            return Err(fail(format!("contains control character {c:?}")));
        }
        if input.contains('/') || input.contains('\\') {
            return Err(fail("must not contain a path separator".into()));
        }
        if input.contains("..") {
            return Err(fail("must not contain \"..\"".into()));
        }
        if let Some(c) = input.chars().find(|c| !(self.allowed)(*c)) {
            return Err(fail(format!(
                "character {c:?} is not allowed (use {})",
                self.allowed_text
            )));
        }
        if !input.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(fail("must start with a letter or digit".into()));
        }
        Ok(())
    }
}

const MODEL_NAME: Rules = Rules {
    kind: "model name",
    max_len: 128,
    allowed: |c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c),
    allowed_text: "lowercase a-z, 0-9, '-', '_' and '.'",
};

const VERSION: Rules = Rules {
    kind: "version",
    max_len: 64,
    allowed: |c| c.is_ascii_alphanumeric() || "-_.+".contains(c),
    allowed_text: "a-z, A-Z, 0-9, '-', '_', '.' and '+'",
};

const ALIAS: Rules = Rules {
    kind: "alias",
    max_len: 32,
    allowed: |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
    allowed_text: "lowercase a-z, 0-9 and '-'",
};

macro_rules! checked_name {
    ($(#[$doc:meta])* $ty:ident, $rules:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $ty(String);

        impl $ty {
            /// Checks `input` against the rules of this kind of name.
            pub fn new(input: impl Into<String>) -> Result<Self, NameError> {
                let input = input.into();
                $rules.check(&input)?;
                Ok(Self(input))
            }

            /// The checked text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($ty), self.0)
            }
        }

        impl FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Self::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
            }
        }
    };
}

checked_name!(
    /// A model's name: a lowercase, path-safe slug of at most 128 bytes.
    ModelName,
    MODEL_NAME
);
checked_name!(
    /// A version of a model: `v1`, `v2`, … when the registry numbers them, or a caller's own
    /// path-safe string such as `1.4.0`.
    Version,
    VERSION
);
checked_name!(
    /// A movable pointer to a version: `latest`, `production`, `staging`, ….
    Alias,
    ALIAS
);

impl Version {
    /// The version the registry assigns as the `n`th: `v{n}`.
    pub fn numbered(n: u64) -> Self {
        Self(format!("v{n}"))
    }

    /// `Some(n)` for a registry-numbered version `v{n}`.
    pub fn number(&self) -> Option<u64> {
        let digits = self.0.strip_prefix('v')?;
        if digits.starts_with('0') {
            return None;
        }
        digits.parse().ok()
    }
}

impl Alias {
    /// The alias the registry moves to every newly published version.
    pub fn latest() -> Self {
        Self("latest".into())
    }

    /// The alias the quality gate moves to a version that passes it.
    pub fn production() -> Self {
        Self("production".into())
    }
}

/// A class label: any printable text of 1 to 128 bytes (spaces allowed, no control characters).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label(String);

impl Label {
    /// Checks `input`: non-empty, at most 128 bytes, no control characters, not only spaces.
    pub fn new(input: impl Into<String>) -> Result<Self, NameError> {
        let input = input.into();
        let fail = |reason: &str| NameError {
            kind: "label",
            input: input.chars().take(160).collect(),
            reason: reason.into(),
        };
        if input.trim().is_empty() {
            return Err(fail("must not be empty or blank"));
        }
        if input.len() > 128 {
            return Err(fail("longer than 128 bytes"));
        }
        if input.chars().any(char::is_control) {
            return Err(fail("contains a control character"));
        }
        Ok(Self(input))
    }

    /// The label's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Label({:?})", self.0)
    }
}

impl Serialize for Label {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_reject_unsafe_input() {
        for ok in ["exposr-detector", "gesture.user-123", "a", "crowdmind_7"] {
            assert!(ModelName::new(ok).is_ok(), "{ok} should be accepted");
        }
        let long = "a".repeat(129);
        for bad in [
            "",
            "..",
            "a/b",
            "a\\b",
            "a..b",
            ".hidden",
            "-x",
            "Upper",
            "tab\there",
            "nul\0",
            "sp ace",
            &long,
        ] {
            assert!(ModelName::new(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(ModelName::new("a".repeat(128)).is_ok());
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = ModelName::new("a/b").unwrap_err().to_string();
        assert!(
            err.contains("model name") && err.contains("path separator"),
            "{err}"
        );
        let err = ModelName::new("Bad").unwrap_err().to_string();
        assert!(err.contains("'B'"), "{err}");
    }

    #[test]
    fn numbered_versions_round_trip() {
        assert_eq!(Version::numbered(12).as_str(), "v12");
        assert_eq!(Version::new("v12").unwrap().number(), Some(12));
        assert_eq!(Version::new("v012").unwrap().number(), None);
        assert_eq!(Version::new("1.4.0").unwrap().number(), None);
        assert!(Version::new("1.4.0+build.7").is_ok());
        assert!(Version::new("../v1").is_err());
    }

    #[test]
    fn aliases_and_labels() {
        assert!(Alias::new("production").is_ok());
        assert!(Alias::new("Prod").is_err());
        assert!(Label::new("ai_generated").is_ok());
        assert!(Label::new("class a").is_ok());
        assert!(Label::new("  ").is_err());
        assert!(serde_json::from_str::<ModelName>("\"../etc\"").is_err());
    }
}
