//! report.html in a real browser: headless Chromium must load it with no console errors.
//!
//! Skipped with a message when no `chromium` is installed, unless `XREGION_REQUIRE_CHROMIUM=1` (as in CI), when
//! a missing browser fails the test.

use crate::sample;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use xregion_report::to_html;

/// Longest a browser run may take before it is killed and the test fails.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

/// What one headless run produced.
struct BrowserRun {
    /// The serialized DOM (`--dump-dom`).
    dom: String,
    /// Chromium's log lines.
    log: String,
}

impl BrowserRun {
    /// Log lines that report page console output or an uncaught exception.
    ///
    /// Chromium logs uncaught exceptions and `console.error` at INFO level (`INFO:CONSOLE:1] "Uncaught ..."`),
    /// so the level cannot be trusted; the report has no scripts, so any console line at all (a CSP violation,
    /// a refused load) means something is wrong.
    fn console_errors(&self) -> Vec<&str> {
        self.log.lines().filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught")).collect()
    }
}

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// Returns the browser, or `None` after printing why the test is skipped; panics when the browser is required.
fn chromium_or_skip() -> Option<PathBuf> {
    let found = find_chromium();
    if found.is_none() {
        assert!(
            std::env::var("XREGION_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
            "XREGION_REQUIRE_CHROMIUM=1 but no chromium is on PATH; install it (apt-get install chromium)"
        );
        println!("skipping: chromium is not installed (set XREGION_REQUIRE_CHROMIUM=1 to make this a failure)");
    }
    found
}

fn run_headless(browser: &Path, html: &str, tmp: &Path) -> BrowserRun {
    let page = tmp.join("report.html");
    std::fs::write(&page, html).unwrap();
    let profile = tmp.join("profile");
    let stdout_path = tmp.join("stdout.txt");
    let stderr_path = tmp.join("stderr.txt");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("chromium starts");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait for chromium").is_some() {
            break;
        }
        if started.elapsed() > BROWSER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within {BROWSER_TIMEOUT:?}; its log:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    BrowserRun {
        dom: std::fs::read_to_string(&stdout_path).unwrap_or_default(),
        log: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    }
}

/// Goal: the report renders in a real browser with no console error. Method: dump the DOM of the sample report
/// with headless Chromium and scan its log.
#[test]
fn report_loads_without_console_errors() {
    let Some(browser) = chromium_or_skip() else {
        return;
    };
    let tmp = sample::TempDir::new("chromium");
    let run = run_headless(&browser, &to_html(&sample::report()), &tmp.0);
    assert!(run.dom.contains("</html>") && run.dom.contains("<svg"), "no DOM dump; log:\n{}", run.log);
    assert!(run.dom.contains("xregion report"));
    assert!(
        run.dom.contains("us-east-1 killed") && run.dom.contains("Round trip P95"),
        "charts and heatmap are in the DOM"
    );
    let errors = run.console_errors();
    assert!(errors.is_empty(), "console errors:\n{}", errors.join("\n"));
}

/// Goal: the console-error scan really catches errors with this browser, so the test above can fail. Method: a
/// page with a script that throws must produce a detected error.
#[test]
fn console_error_detection_works() {
    let Some(browser) = chromium_or_skip() else {
        return;
    };
    let tmp = sample::TempDir::new("chromium-broken");
    let broken = "<!DOCTYPE html><html><body><p>broken</p><script>noSuchFunction();</script></body></html>";
    let run = run_headless(&browser, broken, &tmp.0);
    assert!(run.dom.contains("broken"), "no DOM dump; log:\n{}", run.log);
    assert!(!run.console_errors().is_empty(), "the thrown error was not detected; log:\n{}", run.log);
}
