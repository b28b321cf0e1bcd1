//! `xregion db schema` and `xregion db init`: the one table xregion owns in a database target.

use crate::config::{self, DeploymentKind};
use crate::db::{DbKind, schema};
use crate::error::{Error, Result};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

/// Longest wait for the new table to reach every region (standbys replay it from their primary).
const TABLE_VISIBLE_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// `xregion db` subcommands.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Print the DDL of xregion's table for a database kind (postgres, mysql, etcd).
    Schema {
        /// The database kind.
        #[arg(long, default_value = "postgres")]
        kind: String,
    },
    /// Create xregion's table where it is missing, in every region's database that accepts writes (from the
    /// config's `database` settings or DB_ENDPOINT_*), and say what replication still needs.
    Init {
        /// Config file; without it, DB_ENDPOINT_* and the libpq variables describe the databases.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Runs a `db` subcommand.
pub async fn run(command: DbCommand) -> Result<ExitCode> {
    match command {
        DbCommand::Schema { kind } => {
            let kind = DbKind::parse(&kind).map_err(Error::Usage)?;
            print!("{}", schema::ddl(kind));
            println!("-- {}", schema::after_init(kind));
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Init { config } => init(config).await,
    }
}

async fn init(path: Option<PathBuf>) -> Result<ExitCode> {
    let config = config::load(path.as_deref(), &config::process_env())?;
    if config.deployment.kind != DeploymentKind::Http
        || !config.deployment.regions.iter().any(|r| r.endpoint.is_empty() && r.database.is_some())
    {
        return Err(Error::Usage(
            "no region has a database: set DB_ENDPOINT_<REGION> or `database = \"…\"` in [[deployment.regions]]".into(),
        ));
    }
    let target =
        crate::target::Target::open(&config, std::path::Path::new("."), &crate::progress::Progress::new(true)).await?;
    let mut failed = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    for p in &target.probes {
        let Some(db) = p.database() else { continue };
        kinds.insert(db.kind().name());
        let outcome = db.init().await;
        match outcome {
            Ok(what) => println!("{:<16} {}: {what}", p.region, p.endpoint),
            Err(e) => {
                println!("{:<16} {}", p.region, e.detail());
                failed.push(p.region.clone());
            }
        }
    }
    // Standbys replay the DDL a moment later: wait (bounded) until every region has the table, so that a run
    // started right after `db init` finds it everywhere.
    if failed.is_empty() {
        let deadline = tokio::time::Instant::now() + TABLE_VISIBLE_WAIT;
        for p in target.probes.iter().filter(|p| p.database().is_some()) {
            loop {
                match p.health().await {
                    Ok(_) => break,
                    Err(e) if tokio::time::Instant::now() >= deadline => {
                        println!("{:<16} {}", p.region, e.detail());
                        failed.push(p.region.clone());
                        break;
                    }
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                }
            }
        }
        if failed.is_empty() {
            println!("every region is ready: xregion's table (or key prefix) is reachable in each");
        }
    }
    for kind in kinds {
        println!("{}", schema::after_init(DbKind::parse(kind).map_err(Error::Usage)?));
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Error::Target(format!("could not prepare the database of {}", failed.join(", "))))
    }
}
