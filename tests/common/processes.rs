//! Child processes for tests that need several: the test binary runs
//! itself, with `--exact child`, in a role named by an environment
//! variable (its `child` test does nothing without one).

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

/// The variable naming a child's role.
const ROLE: &str = "KEYLOCK_CHILD";
/// The variable naming the directory a child shares with its test.
const DIR: &str = "KEYLOCK_DIR";

/// A fresh directory for one test: `keylock-{prefix}-{name}-{pid}`.
pub fn temp_dir(prefix: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keylock-{prefix}-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// In a child: its role and the directory it shares; `None` in the test
/// process itself.
pub fn role() -> Option<(String, PathBuf)> {
    let role = std::env::var(ROLE).ok()?;
    Some((role, PathBuf::from(std::env::var(DIR).unwrap())))
}

/// Starts this test binary as a child in `role`, sharing `dir`, with the
/// `extra` environment variables; its standard output is piped.
pub fn spawn(role: &str, dir: &Path, extra: &[(&str, String)]) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (name, value) in extra {
        command.env(name, value);
    }
    command.spawn().unwrap()
}

/// Waits for the child's line ending in `expected` (the harness may have
/// printed `test child ... ` before it); returns the rest of its output.
pub fn wait_line(child: &mut Child, expected: &str) -> BufReader<ChildStdout> {
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            lines.read_line(&mut line).unwrap() > 0,
            "the child ended before printing {expected:?}"
        );
        if line.trim().ends_with(expected) {
            return lines;
        }
    }
}

/// Sends `signal` (`STOP`, `CONT`) to a child, through the shell's own
/// `kill`: no package needed beyond the shell.
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("sh")
        .args(["-c", &format!("kill -{signal} {}", child.id())])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Reads, then rewrites, a number in a file: callers that do not exclude
/// each other lose increments.
pub fn bump(path: &Path) {
    let now: u64 = fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0);
    // Widen the window in which an unexcluded caller would interleave.
    std::thread::yield_now();
    fs::write(path, (now + 1).to_string()).unwrap();
}
