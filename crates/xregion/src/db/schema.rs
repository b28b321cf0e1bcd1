//! The one table xregion owns in a database target, per kind, and what a user must still do for their replication.
//!
//! The table holds one row per key. A delete keeps the row as a tombstone (`value` NULL), so the consistency
//! checkers see deletes as the lab's tombstones. The version is a per-key hybrid logical clock kept by the write
//! itself: `ver_ms` never goes back for a key, and `ver_logical` orders writes within one millisecond, so within
//! one writer the version order is the commit order of the key's writes (the row lock serializes them). `origin`
//! is the region whose database took the write.
//!
//! MySQL/MariaDB has the same table with a per-key counter as its version: each write increments it, so the version
//! order is the commit order of the key's writes (Galera certifies every write against the whole cluster).
//!
//! etcd has no tables: xregion's records are the keys under the prefix `xregion_kv/`, and there is nothing to create.

use super::DbKind;

/// The table's name.
pub const TABLE: &str = "xregion_kv";

/// The DDL that creates the table where missing.
pub fn ddl(kind: DbKind) -> &'static str {
    match kind {
        DbKind::Postgres => {
            "CREATE TABLE IF NOT EXISTS xregion_kv (\n    \
             key         text PRIMARY KEY,\n    \
             value       text,                 -- NULL: a tombstone (the key was deleted)\n    \
             ver_ms      bigint  NOT NULL,     -- version: per-key hybrid logical clock, milliseconds\n    \
             ver_logical integer NOT NULL,     -- version: counter within one millisecond\n    \
             origin      text    NOT NULL,     -- the region whose database took the write\n    \
             written_at  timestamptz NOT NULL DEFAULT clock_timestamp()\n\
             );\n"
        }
        DbKind::Mysql => {
            "CREATE TABLE IF NOT EXISTS xregion_kv (\n    \
             k          VARCHAR(512) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,\n    \
             value      TEXT NULL,                -- NULL: a tombstone (the key was deleted)\n    \
             ver        BIGINT UNSIGNED NOT NULL, -- version: each write of the key increments it (commit order)\n    \
             origin     VARCHAR(64) NOT NULL,     -- the region whose database took the write\n    \
             written_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)\n\
             ) ENGINE=InnoDB;\n"
        }
        DbKind::Etcd => {
            "-- etcd has no tables: xregion keeps one key per record under the prefix xregion_kv/ (the value as is;\n\
             -- the version is the key's mod_revision). There is nothing to create.\n"
        }
    }
}

/// What the user must still do after `xregion db init`, for their replication to carry the table.
pub fn after_init(kind: DbKind) -> &'static str {
    match kind {
        DbKind::Postgres => {
            "Streaming (physical) standbys copy the table by themselves: run `xregion db init` against the primary \
             only. In a logical or pglogical mesh, create it on every node and add it to the replication set on each, \
             for example: SELECT pglogical.replication_set_add_table('default', 'xregion_kv', true); with \
             conflict_resolution = last_update_wins and track_commit_timestamp = on."
        }
        DbKind::Mysql => {
            "A Galera cluster replicates the table by itself (DDL runs on every node): `xregion db init` creates it on \
             every node that accepts writes. With asynchronous replication, create it on the source only; a replica \
             (read_only) gets it from there."
        }
        DbKind::Etcd => {
            "etcd replicates every key by itself. With authentication on, give xregion's user read and write on its \
             prefix: etcdctl role add xregion; etcdctl role grant-permission xregion readwrite --prefix=true \
             xregion_kv/; etcdctl user grant-role USER xregion."
        }
    }
}
