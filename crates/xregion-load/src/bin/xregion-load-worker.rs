//! A minimal host of the `load-worker` protocol (plan JSON on stdin, result JSON on stdout), used by this crate's
//! tests of `run_in_child`; the `xregion` binary offers the same as its hidden `load-worker` subcommand.

use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() != Some("load-worker") {
        eprintln!("usage: xregion-load-worker load-worker < plan.json > result.json");
        return ExitCode::from(2);
    }
    match xregion_load::worker_main(std::io::stdin().lock(), std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
