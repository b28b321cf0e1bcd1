//! The `[lab]` table's type, for `config`: the lab's own `LabConfig`, named here so that `config` need not import
//! the lab crate (and so that this leaf module, unlike `target::lab`, depends on nothing in this crate).

/// The `[lab]` table of the config.
pub type LabConfig = xregion_lab::LabConfig;
