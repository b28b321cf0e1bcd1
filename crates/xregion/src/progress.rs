//! Progress display: a spinner with the running phase on a terminal, plain lines elsewhere (CI logs).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;
use xregion_model::report::CheckResult;

/// Shows what the run is doing.
pub struct Progress {
    /// Whether stderr is a terminal (bars) or not (plain lines).
    interactive: bool,
    /// The spinner of the running check, on a terminal.
    bar: Mutex<Option<ProgressBar>>,
    /// Whether to print anything at all.
    quiet: bool,
    /// Told of every check that finishes and every load window that closes (live metrics).
    observers: Mutex<Vec<Observer>>,
}

/// What observers are told of while the run runs.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A check finished.
    Landed(&'a CheckResult),
    /// The load generator closed a chart window (or a late part of one).
    LoadWindow(&'a xregion_load::result::Window),
}

/// Told of every event of the run.
pub type Observer = Box<dyn Fn(Event<'_>) + Send + Sync>;

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress").field("interactive", &self.interactive).field("quiet", &self.quiet).finish()
    }
}

impl Progress {
    /// Decides the mode from stderr; `quiet` prints nothing.
    pub fn new(quiet: bool) -> Progress {
        Progress {
            interactive: std::io::stderr().is_terminal(),
            bar: Mutex::new(None),
            quiet,
            observers: Mutex::new(Vec::new()),
        }
    }

    /// Tells `observers` of every event from now on.
    pub fn observe(&self, observers: impl IntoIterator<Item = Observer>) {
        self.observers.lock().unwrap_or_else(|p| p.into_inner()).extend(observers);
    }

    /// Prints a line about the run (not about one check).
    pub fn line(&self, msg: &str) {
        if self.quiet {
            return;
        }
        match &*self.bar.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(bar) => bar.println(msg),
            None => eprintln!("{msg}"),
        }
    }

    /// A check starts.
    pub fn start_check(&self, id: &str) {
        if self.quiet {
            return;
        }
        if self.interactive {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(id.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            *self.bar.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar);
        } else {
            eprintln!("[xregion] {id}: running");
        }
    }

    /// The running check enters a phase.
    pub fn phase(&self, msg: &str) {
        if self.quiet {
            return;
        }
        match &*self.bar.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(bar) => bar.set_message(msg.to_string()),
            None => eprintln!("[xregion]   {msg}"),
        }
    }

    /// The load generator closed a chart window.
    pub fn load_window(&self, w: &xregion_load::result::Window) {
        self.tell(Event::LoadWindow(w));
    }

    fn tell(&self, e: Event<'_>) {
        for o in self.observers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            o(e);
        }
    }

    /// A check finished.
    pub fn finish_check(&self, r: &CheckResult) {
        self.tell(Event::Landed(r));
        if self.quiet {
            return;
        }
        if let Some(bar) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            bar.finish_and_clear();
        }
        eprintln!("[xregion] {}: {} ({:.1} s) {}", r.id, r.verdict.as_str(), r.duration_s, r.summary);
    }
}
