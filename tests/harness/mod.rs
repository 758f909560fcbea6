//! The integration-test harness: real `rivulet serve` processes on loopback ports, driven by
//! real Kafka clients (kcat, confluent-kafka and kafka-python scripts, rdkafka in-process, raw
//! wire bytes).
//!
//! ```text
//!   test ──▶ Node::start() ── spawn ──▶ rivulet serve --listen 127.0.0.1:<free port>
//!    │          │                          --data-dir <tempdir>/data  (stdout/stderr → files)
//!    │          └─ wait_ready: TCP connect + ApiVersions answered, polled with a deadline
//!    ├──▶ clients: kcat / python3 tests/clients/*.py / kafka::* (rdkafka) / wire::RawConn
//!    ├──▶ faults:  kill9 (SIGKILL) · terminate (SIGTERM) · pause/resume (SIGSTOP/SIGCONT)
//!    └──▶ restart(): same data dir, same port
//! ```
//!
//! Every wait is bounded and polled; nothing sleeps for a fixed time hoping a condition holds.
//! When a test panics, dropping its [`Node`] prints the tail of the node's logs and keeps the
//! temp dir (its path is printed) so the failure can be inspected.
//!
//! Missing external clients are a test failure, never a silent skip: the message says how to
//! install them (`.ci/run` installs them on CI).

// Each test binary includes this module and uses a different part of it.
#![allow(dead_code)]

pub(crate) mod apache_kafka;
pub(crate) mod chaos;
pub(crate) mod cluster;
pub(crate) mod connect;
pub(crate) mod go;
pub(crate) mod java;
pub(crate) mod jvm;
pub(crate) mod kafka;
pub(crate) mod proxy;
pub(crate) mod streams;
pub(crate) mod wire;

use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The `rivulet` binary cargo built for this test run.
pub(crate) const RIVULET: &str = env!("CARGO_BIN_EXE_rivulet");

/// How long a node gets to start answering Kafka requests.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a node gets to exit after SIGTERM.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Lines of each log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// Polls `condition` until it returns true, or panics after `timeout` naming `what`.
/// True when every thread of process `pid` is in the stopped state (`T` in
/// `/proc/PID/task/TID/stat`); false while any still runs, sleeps or cannot be read.
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            // The state follows the command name, which is in parentheses and may hold spaces.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "T" || state == "t")
        })
    })
}

pub(crate) fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    if let Err(e) = try_wait_until(timeout, what, &mut condition) {
        panic!("{e}");
    }
}

/// Like [`wait_until`] but returns the timeout as an error.
pub(crate) fn try_wait_until(
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut interval = Duration::from_millis(5);
    loop {
        if condition() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting until {what}"));
        }
        std::thread::sleep(interval.min(deadline.saturating_duration_since(Instant::now())));
        interval = (interval * 2).min(Duration::from_millis(100));
    }
}

/// A port on 127.0.0.1 that was free a moment ago, chosen **below** the kernel's ephemeral
/// range (32768 and up by default). A node's port must stay free while the node is down and
/// others keep dialling it: with a port inside the ephemeral range, a connection attempt to
/// the dead port can pick that same port as its source and connect to itself (a TCP
/// self-connect), and the node cannot bind its port again when it restarts.
pub(crate) fn free_port() -> u16 {
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Spread processes apart so concurrent test binaries rarely probe the same ports.
    let base = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (base + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 127.0.0.1:{LOW}..{}", LOW + SPAN);
}

/// Deterministic pseudo-random bytes (xorshift) from `seed`: garbage for hostile-input tests,
/// incompressible filler for disk tests. Print the seed so a failure can be replayed.
pub(crate) fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A name unique within this test run, for topics.
pub(crate) fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// How to start a node.
#[derive(Debug, Clone)]
pub(crate) struct NodeOptions {
    pub(crate) node_id: u32,
    /// Written to `<tempdir>/rivulet.toml` and passed as `--config` when set.
    pub(crate) config_toml: Option<String>,
    /// Extra environment for the node process.
    pub(crate) env: Vec<(String, String)>,
    /// Extra `rivulet serve` arguments, after the ones the harness passes (the cluster harness
    /// passes `--cluster-listen` and `--seed` here).
    pub(crate) extra_args: Vec<String>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            node_id: 1,
            config_toml: None,
            env: Vec::new(),
            extra_args: Vec::new(),
        }
    }
}

/// One `rivulet serve` process and its temp dir. Dropping it kills the process.
#[derive(Debug)]
pub(crate) struct Node {
    options: NodeOptions,
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    port: u16,
    /// Port of the admin HTTP endpoint (`--admin-listen`): every node gets its own, since
    /// the default (9644) would collide between nodes on one host.
    admin_port: u16,
    child: Option<Child>,
    /// Increments on every (re)start; each incarnation logs to its own files.
    incarnation: u32,
}

impl Node {
    /// Starts a node with default options and waits until it answers.
    pub(crate) fn start() -> Node {
        Node::start_with(NodeOptions::default())
    }

    /// Starts a node and waits until it answers Kafka requests.
    pub(crate) fn start_with(options: NodeOptions) -> Node {
        let mut node = Node::launch(options);
        node.wait_started();
        node
    }

    /// Spawns a node without waiting for it to answer; [`Node::wait_started`] waits. Nodes of a
    /// cluster are launched together because one may not answer before the others are up.
    pub(crate) fn launch(options: NodeOptions) -> Node {
        let dir = tempfile::Builder::new()
            .prefix("rivulet-it-")
            .tempdir()
            .expect("create temp dir");
        let dir_path = dir.path().to_path_buf();
        std::fs::create_dir_all(dir_path.join("data")).expect("create data dir");
        if let Some(toml) = &options.config_toml {
            std::fs::write(dir_path.join("rivulet.toml"), toml).expect("write config");
        }
        let mut node = Node {
            options,
            dir: Some(dir),
            dir_path,
            port: free_port(),
            admin_port: free_port(),
            child: None,
            incarnation: 0,
        };
        node.spawn();
        node
    }

    /// Waits until a [`Node::launch`]ed node answers Kafka requests.
    pub(crate) fn wait_started(&mut self) {
        let node = self;
        // The free port can be taken by someone else between our probe and the node's bind;
        // if the node exits during start-up, try again on another port.
        const START_ATTEMPTS: u32 = 3;
        for attempt in 1..=START_ATTEMPTS {
            match node.wait_ready(START_TIMEOUT) {
                Ok(()) => return,
                Err(e) if attempt < START_ATTEMPTS && !node.is_running() => {
                    eprintln!(
                        "node exited during start-up on port {} ({e}); retrying on another port\n{}",
                        node.port,
                        node.log_tail(20)
                    );
                    node.port = free_port();
                    node.admin_port = free_port();
                    node.spawn();
                }
                Err(e) => panic!("node did not start: {e}\n{}", node.log_tail(LOG_TAIL_LINES)),
            }
        }
        unreachable!("start attempts exhausted")
    }

    /// `127.0.0.1:<port>`, for `bootstrap.servers` and kcat's `-b`.
    pub(crate) fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The admin HTTP endpoint (`/health`, `/ready`, `/metrics`, `/v1/...`).
    pub(crate) fn admin_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.admin_port))
    }

    /// The node's `--data-dir`.
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir_path.join("data")
    }

    /// The temp dir that holds the data dir, the logs and any scratch files of the test.
    pub(crate) fn scratch_dir(&self) -> &Path {
        &self.dir_path
    }

    pub(crate) fn node_id(&self) -> u32 {
        self.options.node_id
    }

    /// The stdout and stderr log files of every incarnation so far, oldest first.
    pub(crate) fn log_paths(&self) -> Vec<PathBuf> {
        (1..=self.incarnation)
            .flat_map(|i| ["stdout", "stderr"].map(|stream| self.log_path(i, stream)))
            .collect()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("node is not running").id()
    }

    fn log_path(&self, incarnation: u32, stream: &str) -> PathBuf {
        self.dir_path.join(format!(
            "node{}.{incarnation}.{stream}.log",
            self.options.node_id
        ))
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "spawn while a process is running");
        self.incarnation += 1;
        let stdout = File::create(self.log_path(self.incarnation, "stdout")).expect("log file");
        let stderr = File::create(self.log_path(self.incarnation, "stderr")).expect("log file");
        let listen = self.bootstrap();
        let mut cmd = Command::new(RIVULET);
        cmd.arg("serve")
            .arg("--node-id")
            .arg(self.options.node_id.to_string())
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen")
            .arg(&listen)
            .arg("--advertised")
            .arg(&listen)
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{}", self.admin_port));
        if self.options.config_toml.is_some() {
            cmd.arg("--config").arg(self.dir_path.join("rivulet.toml"));
        }
        cmd.args(&self.options.extra_args);
        // The node reads RIVULET_* variables as configuration; the test's own environment must
        // not leak into it (the harness's RIVULET_TEST_* settings are for the harness).
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("RIVULET_") {
                cmd.env_remove(key);
            }
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        // The logs go to files that humans read in failure reports: no colour codes.
        cmd.env("NO_COLOR", "1");
        cmd.envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.dir_path)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {RIVULET}: {e}"));
        self.child = Some(child);
    }

    /// Polls until the node accepts a TCP connection and answers an ApiVersions request.
    /// Fails early if the process exits.
    pub(crate) fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut last_error;
        let mut interval = Duration::from_millis(5);
        loop {
            if let Some(status) = self.exit_status() {
                return Err(format!("process exited with {status} before answering"));
            }
            match wire::probe(self.addr(), Duration::from_secs(2)) {
                Ok(()) => return Ok(()),
                Err(e) => last_error = e,
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "not answering on {} after {timeout:?}: {last_error}",
                    self.bootstrap()
                ));
            }
            std::thread::sleep(interval);
            interval = (interval * 2).min(Duration::from_millis(100));
        }
    }

    /// The exit status if the process has exited (reaping it), `None` if it is running or was
    /// never started.
    fn exit_status(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status)
            }
            Ok(None) => None,
            Err(e) => panic!("try_wait on node: {e}"),
        }
    }

    pub(crate) fn is_running(&mut self) -> bool {
        self.child.is_some() && self.exit_status().is_none()
    }

    /// Panics (with the log tail) unless the process is still running.
    pub(crate) fn assert_alive(&mut self, context: &str) {
        if self.child.is_none() {
            panic!(
                "{context}: node is not running\n{}",
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        if let Some(status) = self.exit_status() {
            panic!(
                "{context}: node exited unexpectedly with {status}\n{}",
                self.log_tail(LOG_TAIL_LINES)
            );
        }
    }

    /// SIGKILL: the process gets no chance to flush or clean up.
    pub(crate) fn kill9(&mut self) {
        let mut child = self.child.take().expect("kill9: node is not running");
        // An error here means the process already exited; wait() below reaps it either way.
        let _ = child.kill();
        child.wait().expect("wait after SIGKILL");
    }

    /// SIGTERM, then waits (bounded) for the process to exit and returns its status. Panics
    /// if it does not exit within [`STOP_TIMEOUT`] (after SIGKILLing it).
    pub(crate) fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        let mut status = None;
        let exited = try_wait_until(STOP_TIMEOUT, "the node exits after SIGTERM", || {
            status = self.exit_status();
            status.is_some()
        });
        if let Err(e) = exited {
            self.kill9();
            panic!("{e}\n{}", self.log_tail(LOG_TAIL_LINES));
        }
        status.expect("exit status")
    }

    /// SIGSTOP: the process is frozen; connections stay open but nothing is answered.
    pub(crate) fn pause(&mut self) {
        self.signal("STOP");
        // kill(2) returns once the signal is queued; a thread that is inside a system call
        // (an fsync, a socket write) or about to be scheduled can still run for a moment and,
        // say, fetch and acknowledge one more batch. Wait until every thread is stopped, so
        // that what the test does next meets a node that is really paused.
        let pid = self.pid();
        wait_until(
            Duration::from_secs(10),
            "every thread of the paused node stopped",
            || all_threads_stopped(pid),
        );
    }

    /// SIGCONT after [`Node::pause`].
    pub(crate) fn resume(&mut self) {
        self.signal("CONT");
    }

    fn signal(&mut self, name: &str) {
        let pid = self.pid();
        let out = run(
            Command::new("kill")
                .arg(format!("-{name}"))
                .arg(pid.to_string()),
            None,
            Duration::from_secs(10),
        );
        assert!(out.success(), "kill -{name} {pid} failed:\n{out}");
    }

    /// Starts the node again on the same data dir and port and waits until it answers.
    pub(crate) fn restart(&mut self) {
        assert!(
            !self.is_running(),
            "restart: stop the node first (kill9 or terminate)"
        );
        self.spawn();
        if let Err(e) = self.wait_ready(START_TIMEOUT) {
            panic!(
                "node did not come back after restart: {e}\n{}",
                self.log_tail(LOG_TAIL_LINES)
            );
        }
    }

    /// Starts the node again on the same data dir and port without waiting for it to answer
    /// ([`Node::wait_ready`] waits): nodes of a cluster restarted together may need each other.
    pub(crate) fn respawn(&mut self) {
        assert!(
            !self.is_running(),
            "respawn: stop the node first (kill9 or terminate)"
        );
        self.spawn();
    }

    /// The last `lines` lines of stdout and stderr of every incarnation, newest last.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for incarnation in 1..=self.incarnation {
            for stream in ["stdout", "stderr"] {
                let path = self.log_path(incarnation, stream);
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let all: Vec<&str> = text.lines().collect();
                let tail = &all[all.len().saturating_sub(lines)..];
                out.push_str(&format!(
                    "----- {} (last {} of {} lines) -----\n",
                    path.display(),
                    tail.len(),
                    all.len()
                ));
                for line in tail {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "===== rivulet node {} on {} failed a test; logs follow =====\n{}",
                self.options.node_id,
                self.bootstrap(),
                self.log_tail(LOG_TAIL_LINES)
            );
            if let Some(dir) = self.dir.take() {
                eprintln!(
                    "kept the node's temp dir for inspection: {}",
                    dir.keep().display()
                );
            }
        }
    }
}

/// What a finished (or timed-out) external command produced.
#[derive(Debug)]
pub(crate) struct CmdOutput {
    pub(crate) command: String,
    /// `None` when the command was killed at its timeout.
    pub(crate) status: Option<ExitStatus>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) elapsed: Duration,
}

impl CmdOutput {
    pub(crate) fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Panics with the whole output unless the command exited 0.
    pub(crate) fn assert_success(&self) -> &Self {
        assert!(self.success(), "command failed:\n{self}");
        self
    }
}

impl std::fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = match self.status {
            Some(s) => s.to_string(),
            None => "killed at timeout".to_string(),
        };
        writeln!(f, "$ {}", self.command)?;
        writeln!(f, "status: {status}, after {:.1?}", self.elapsed)?;
        writeln!(f, "--- stdout ---\n{}", tail(&self.stdout, 80))?;
        write!(f, "--- stderr ---\n{}", tail(&self.stderr, 80))
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let skipped = all.len().saturating_sub(lines);
    let mut out = if skipped > 0 {
        format!("[... {skipped} lines ...]\n")
    } else {
        String::new()
    };
    out.push_str(&all[skipped..].join("\n"));
    out
}

/// Runs a command to completion with `stdin` fed to it, killing it after `timeout`.
pub(crate) fn run(cmd: &mut Command, stdin: Option<Vec<u8>>, timeout: Duration) -> CmdOutput {
    let command = format!("{cmd:?}");
    let start = Instant::now();
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command}: {e}"));
    let writer = stdin.map(|bytes| {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        std::thread::spawn(move || {
            // A command that exits without reading all of its input is reported by its status.
            let _ = pipe.write_all(&bytes);
        })
    });
    let reader = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out_reader = reader(Box::new(child.stdout.take().expect("stdout pipe")));
    let err_reader = reader(Box::new(child.stderr.take().expect("stderr pipe")));

    let mut status = None;
    let finished = try_wait_until(timeout, "the command exits", || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    if finished.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    if let Some(w) = writer {
        let _ = w.join();
    }
    CmdOutput {
        command,
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
        elapsed: start.elapsed(),
    }
}

/// The directory of the Python client scripts (`tests/clients`).
pub(crate) fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients")
}

/// The kcat executable (`$RIVULET_TEST_KCAT` or `kcat` on the PATH). Fails the test with
/// installation instructions when it is missing.
pub(crate) fn require_kcat() -> String {
    let kcat = std::env::var("RIVULET_TEST_KCAT").unwrap_or_else(|_| "kcat".to_string());
    let probe = Command::new(&kcat).arg("-V").stdin(Stdio::null()).output();
    match probe {
        Ok(out) if out.status.success() => kcat,
        other => panic!(
            "kcat is required by this test but `{kcat} -V` failed ({other:?}).\n\
             Install it: `apt-get install -y kcat` (Debian/Ubuntu) or `brew install kcat`; \
             .ci/run installs it on CI. Set RIVULET_TEST_KCAT to use another path."
        ),
    }
}

/// Runs kcat against `node` with `args` (after `-b <bootstrap>`).
pub(crate) fn kcat(
    node: &Node,
    args: &[&str],
    stdin: Option<Vec<u8>>,
    timeout: Duration,
) -> CmdOutput {
    let kcat = require_kcat();
    run(
        Command::new(kcat)
            .arg("-b")
            .arg(node.bootstrap())
            .args(args),
        stdin,
        timeout,
    )
}

/// The Python interpreter (`$RIVULET_TEST_PYTHON` or `python3`), checked to import `modules`.
/// Fails the test with installation instructions when it cannot.
pub(crate) fn require_python(modules: &[&str]) -> String {
    let python = std::env::var("RIVULET_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let imports = modules
        .iter()
        .map(|m| format!("import {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    let probe = Command::new(&python)
        .arg("-c")
        .arg(&imports)
        .stdin(Stdio::null())
        .output();
    match probe {
        Ok(out) if out.status.success() => python,
        Ok(out) => panic!(
            "this test needs the Python modules {modules:?}, but `{python} -c '{imports}'` \
             failed:\n{}\nInstall them: `{python} -m pip install confluent-kafka kafka-python` \
             (.ci/run does this on CI). Set RIVULET_TEST_PYTHON to use another interpreter.",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "this test needs `{python}` with the modules {modules:?}, but it could not be run: \
             {e}. Install Python 3 and `python3 -m pip install confluent-kafka kafka-python`."
        ),
    }
}

/// Runs one of the scripts in `tests/clients` and parses the JSON summary on the last line of
/// its stdout. Returns the raw output too; the summary is `None` if there was none.
pub(crate) fn python_client(
    script: &str,
    module: &str,
    args: &[String],
    timeout: Duration,
) -> (CmdOutput, Option<serde_json::Value>) {
    let python = require_python(&[module]);
    let out = run(
        Command::new(python)
            .arg(clients_dir().join(script))
            .args(args)
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        None,
        timeout,
    );
    let summary = out
        .stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok());
    (out, summary)
}
