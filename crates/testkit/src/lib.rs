//! What EcoCityHub's test suites share, with no dependencies of its own.
//!
//! **The one rule for skipping.** A test that needs an outside service (a PostgreSQL server,
//! npm's OpenID provider, Chromium, an SMTP server, moto…) asks [`require`] for it. Under CI —
//! the `CI` variable set to anything but `false` or `0` — a missing service fails the test, so
//! nothing can pass by not running. Anywhere else the test is skipped with a line on standard
//! error naming what was skipped and how to get it, and the line is also appended to the file
//! named by `ECOCITYHUB_TEST_SKIPS` (set by `scripts/test`, which counts them at the end).
//!
//! **Helper servers.** [`HelperServer`] starts a process that binds its own port (port 0) and
//! prints it, so a port is bound once, by its user, and never found free and re-used later.
//!
//! **Failover.** [`forwarder::Forwarder`] plays a database endpoint whose DNS name flips, and a
//! replication link that lags; [`pg_ha_script`] is the script that starts, kills and promotes a
//! PostgreSQL primary and standby (`.ci/postgres ha …`).

pub mod forwarder;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The file `scripts/test` reads to count skipped tests.
pub const SKIPS_FILE_VAR: &str = "ECOCITYHUB_TEST_SKIPS";

/// Is this a CI run? `CI` set to anything but empty, `false` or `0`.
pub fn in_ci() -> bool {
    ci_value_means_ci(std::env::var("CI").ok().as_deref())
}

fn ci_value_means_ci(value: Option<&str>) -> bool {
    match value.map(str::trim) {
        None | Some("") => false,
        Some(v) => !(v.eq_ignore_ascii_case("false") || v == "0"),
    }
}

/// The one rule for skipping: `found` when the service is there; otherwise, under CI, a panic
/// (the test fails), and elsewhere `None` after a printed line saying what was skipped (`what`)
/// and how to get it (`how`).
pub fn require<T>(found: Option<T>, what: &str, how: &str) -> Option<T> {
    if found.is_some() {
        return found;
    }
    if in_ci() {
        panic!("{what} is missing under CI: {how}");
    }
    record_skip(what, how);
    None
}

/// [`require`] for a condition: `true` when `available`.
pub fn require_that(available: bool, what: &str, how: &str) -> bool {
    require(available.then_some(()), what, how).is_some()
}

fn record_skip(what: &str, how: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let line = format!("SKIPPED {test}: {what} is missing ({how})");
    eprintln!("{line}");
    if let Some(path) = std::env::var_os(SKIPS_FILE_VAR) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// The Python interpreter of the test virtualenv that `scripts/test` makes (with aiosmtpd,
/// moto and standardwebhooks, pinned in `scripts/test-requirements.txt`), if it exists.
pub fn test_python() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("ECOCITYHUB_TEST_PYTHON")?);
    path.is_file().then_some(path)
}

/// [`test_python`] under the rule for skipping.
pub fn require_test_python(what: &str) -> Option<PathBuf> {
    require(
        test_python(),
        what,
        "scripts/test makes the Python virtualenv and sets ECOCITYHUB_TEST_PYTHON",
    )
}

/// The repository's `.ci/postgres`: `start`/`stop` one server, or `ha start|kill-primary|promote|
/// stop|status` a primary and a synchronous standby (the script's header documents the commands,
/// their variables and what they print).
pub fn pg_ha_script() -> PathBuf {
    let testkit = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = testkit.parent().and_then(|crates| crates.parent());
    root.unwrap_or(testkit).join(".ci").join("postgres")
}

/// A process started by a test, killed when dropped.
pub struct HelperServer {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The port the process said it listens on.
    pub port: u16,
}

impl HelperServer {
    /// Starts `command` (its standard input and output piped) and waits up to `timeout` for a
    /// line `prefix PORT` (a full stop after the port is allowed); the rest of its output is
    /// drained so it never blocks on a full pipe.
    pub fn start(
        mut command: Command,
        prefix: &str,
        timeout: Duration,
    ) -> std::io::Result<HelperServer> {
        let mut child = command
            .stdout(Stdio::piped())
            .stdin(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        let prefix = prefix.to_string();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Some(port) = line
                        .trim()
                        .strip_prefix(prefix.as_str())
                        .and_then(|rest| rest.trim().trim_end_matches('.').parse::<u16>().ok())
                    {
                        let _ = tx.send(port);
                        sent = true;
                    }
                }
            }
        });
        match rx.recv_timeout(timeout) {
            Ok(port) => Ok(HelperServer { child, stdin, port }),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                Err(std::io::Error::other(format!(
                    "{command:?} did not print its port within {timeout:?} (exit: {status:?})"
                )))
            }
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The child's process id (to signal it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes a line to the process's standard input (for what it can only learn once it and
    /// its peers are listening).
    pub fn send_line(&mut self, line: &str) -> std::io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::other("standard input is closed"))?;
        writeln!(stdin, "{line}")?;
        stdin.flush()
    }
}

impl Drop for HelperServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_is_read_one_way() {
        assert!(!ci_value_means_ci(None));
        assert!(!ci_value_means_ci(Some("")));
        assert!(!ci_value_means_ci(Some("false")));
        assert!(!ci_value_means_ci(Some("FALSE")));
        assert!(!ci_value_means_ci(Some("0")));
        assert!(ci_value_means_ci(Some("true")));
        assert!(ci_value_means_ci(Some("1")));
        assert!(ci_value_means_ci(Some("yes")));
    }

    #[test]
    fn the_ha_script_is_found() {
        assert!(pg_ha_script().is_file(), "{}", pg_ha_script().display());
    }

    #[test]
    fn a_helper_server_reports_its_port() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo starting; echo 'listening on 4321.'; sleep 5"]);
        let server = HelperServer::start(cmd, "listening on", Duration::from_secs(5)).unwrap();
        assert_eq!(server.port, 4321);
        assert_eq!(server.base_url(), "http://127.0.0.1:4321");
    }

    #[test]
    fn a_helper_server_that_never_listens_is_an_error() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo nothing"]);
        let err = HelperServer::start(cmd, "listening on", Duration::from_secs(2))
            .err()
            .expect("no port line");
        assert!(err.to_string().contains("did not print its port"), "{err}");
    }
}
