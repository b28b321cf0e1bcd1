//! Databases as regions: how a region's `database` setting (or the seed's `DB_ENDPOINT_<REGION>`) names a database,
//! the one table xregion owns in it, and the region clients that speak each database's own protocol.
//!
//! A database setting is either a full URL (`postgres://user@host:port/db?sslmode=require`; `mysql://` and `etcd://`
//! are recognised and refused as not supported yet) or a bare `host[:port]`, which takes the rest from the libpq
//! variables `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE` and `PGPASSFILE`, and its kind from `XREGION_DB_KIND`
//! (default `postgres`). A password is never written to a report: the settings' `Display` and every error show the
//! URL without it.

pub mod postgres;
pub mod schema;
pub mod settings;

pub use settings::{DbKind, DbSettings, parse, redact};
