//! A secret (a bearer token, a database password): never shown by `Debug`, and serialized as `"[redacted]"`. A
//! leaf module, so that both the config and the database clients can hold one.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A bearer token: never shown by `Debug`, and serialized as `"[redacted]"` (the report records the config).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// A secret holding `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret's value, to put in a header; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}
