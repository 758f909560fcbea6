//! A long-running JVM program of a test (a Kafka Connect worker, a Kafka Streams instance): its
//! own temp dir, its stdout and stderr in one log file there, signals, and on a failed test the
//! tail of its log printed and its dir kept.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::try_wait_until;

/// Lines of a program's log printed when a test fails.
const LOG_TAIL_LINES: usize = 80;

/// One JVM process. Dropping it kills the process.
#[derive(Debug)]
pub(crate) struct JvmProcess {
    name: String,
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    child: Option<Child>,
}

impl JvmProcess {
    /// A temp dir for a program called `name` (config files go there before [`Self::spawn`]).
    pub(crate) fn new(name: &str) -> JvmProcess {
        let dir = tempfile::Builder::new()
            .prefix(&format!("rivulet-{name}-"))
            .tempdir()
            .expect("create temp dir");
        let dir_path = dir.path().to_path_buf();
        JvmProcess {
            name: name.to_string(),
            dir: Some(dir),
            dir_path,
            child: None,
        }
    }

    /// Starts `cmd` in the temp dir, stdout and stderr appended to `<dir>/<name>.log`.
    pub(crate) fn spawn(&mut self, cmd: &mut Command) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the log file");
        let child = cmd
            .current_dir(&self.dir_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {cmd:?}: {e}", self.name));
        self.child = Some(child);
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The temp dir: configs, state, the log, and files the test reads and writes.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir_path
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir_path.join(format!("{}.log", self.name))
    }

    /// The whole log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub(crate) fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL: the program gets no chance to commit or leave its group.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to `timeout` for a clean exit; SIGKILL after that. Returns the
    /// exit status of a clean exit.
    pub(crate) fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let Some(child) = self.child.as_mut() else {
            return Err(format!("{} is not running", self.name));
        };
        let pid = child.id();
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .map_err(|e| format!("kill -TERM {pid}: {e}"))?;
        if !sent.success() {
            return Err(format!("kill -TERM {pid}: {sent}"));
        }
        let mut status = None;
        let exited = try_wait_until(
            timeout,
            &format!("{} exits after SIGTERM", self.name),
            || {
                status = child.try_wait().ok().flatten();
                status.is_some()
            },
        );
        match (exited, status) {
            (Ok(()), Some(status)) => {
                self.child = None;
                Ok(status)
            }
            (e, _) => {
                self.kill9();
                Err(format!("{e:?}"))
            }
        }
    }

    /// The WARN and ERROR lines of the log (what the program complains about even when the
    /// test passes), each once, in the order first seen, at most `max`.
    pub(crate) fn complaints(&self, max: usize) -> Vec<String> {
        let text = self.log();
        let mut seen = std::collections::BTreeSet::new();
        text.lines()
            .filter_map(|l| {
                // From the level on: the timestamp differs between repeats of one complaint.
                let at = l.find(" WARN ").or_else(|| l.find(" ERROR "))?;
                Some(l[at + 1..].to_string())
            })
            .filter(|l| seen.insert(l.clone()))
            .take(max)
            .collect()
    }

    /// The last `lines` lines of the log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = self.log();
        let all: Vec<&str> = text.lines().collect();
        let tail = &all[all.len().saturating_sub(lines)..];
        format!(
            "----- {} (last {} of {} lines) -----\n{}\n",
            self.log_path().display(),
            tail.len(),
            all.len(),
            tail.join("\n")
        )
    }
}

impl Drop for JvmProcess {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "===== {} failed a test; its log follows =====\n{}",
                self.name,
                self.log_tail(LOG_TAIL_LINES)
            );
            if let Some(dir) = self.dir.take() {
                eprintln!("kept its temp dir for inspection: {}", dir.keep().display());
            }
        }
    }
}
