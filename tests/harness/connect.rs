//! Kafka Connect workers in distributed mode (`org.apache.kafka.connect.cli.ConnectDistributed`
//! 4.3.1 from Maven Central, `tools/apache-kafka/connect/pom.xml`), started against a Rivulet
//! cluster and driven through Connect's REST API.
//!
//! ```text
//!   Worker::launch(options) ─▶ <tempdir>/worker.properties (bootstrap = the cluster's nodes,
//!      │                         group.id, internal topics, listeners=http://127.0.0.1:<port>)
//!      └─ spawn tools/apache-kafka/bin/connect-distributed.sh worker.properties
//!              └─▶ kafka.sh connect ─ exec ─▶ java ... ConnectDistributed   (the child's pid
//!                                                 is the JVM's: kill9 reaches the worker)
//!   rest(worker, "PUT", "/connectors/x/pause", None) ─▶ HTTP/1.0 over a fresh TCP connection
//! ```
//!
//! The classpath is resolved once per test binary (`kafka.sh connect-classpath`); a missing
//! `java` or `mvn` fails the test with how to install it (`.ci/run` resolves the jars on CI).
//! When a test panics, dropping a [`Worker`] prints the tail of its log and keeps its temp dir
//! (harness::jvm).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use super::apache_kafka::{resolve_jars, tools_dir};
use super::jvm::JvmProcess;
use super::{free_port, try_wait_until};

/// How long a worker gets to answer its REST API: a JVM start plus the plugin scan, on a busy
/// 2-core machine.
pub(crate) const WORKER_START_TIMEOUT: Duration = Duration::from_secs(120);

/// Socket timeout of one REST call. Connect itself bounds a forwarded request by 90 s; calls
/// that take that long are failures here.
const REST_TIMEOUT: Duration = Duration::from_secs(30);

/// Checks `java` and resolves Connect's classpath once per test binary.
pub(crate) fn require_connect() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(e) = READY.get_or_init(|| resolve_jars("connect-classpath", "Kafka Connect workers"))
    {
        panic!("{e}");
    }
}

/// How to start a worker.
#[derive(Debug, Clone)]
pub(crate) struct WorkerOptions {
    /// Names the worker in logs and its temp dir.
    pub(crate) name: String,
    pub(crate) bootstrap: String,
    /// Workers with the same `group.id` form one Connect cluster.
    pub(crate) group_id: String,
    /// Worker properties after the harness's own (`key=value`); a later key wins, as in
    /// `java.util.Properties`.
    pub(crate) properties: Vec<(String, String)>,
}

/// One Connect worker process. Dropping it kills the process (and, when the test failed,
/// prints the tail of its log and keeps its temp dir).
#[derive(Debug)]
pub(crate) struct Worker {
    process: JvmProcess,
    rest_port: u16,
}

impl Worker {
    /// Writes the worker's config and starts it, without waiting for its REST API
    /// ([`Worker::wait_rest`] waits): JVMs start faster side by side.
    pub(crate) fn launch(options: WorkerOptions) -> Worker {
        require_connect();
        let mut process = JvmProcess::new(&format!("connect-worker-{}", options.name));
        let rest_port = free_port();
        let mut props = vec![
            ("bootstrap.servers".to_string(), options.bootstrap.clone()),
            ("group.id".to_string(), options.group_id.clone()),
            (
                "listeners".to_string(),
                format!("http://127.0.0.1:{rest_port}"),
            ),
            ("rest.advertised.host.name".to_string(), "127.0.0.1".into()),
            ("rest.advertised.port".to_string(), rest_port.to_string()),
        ];
        props.extend(options.properties.iter().cloned());
        let text: String = props.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        let config = process.dir().join("worker.properties");
        std::fs::write(&config, text).expect("write worker.properties");
        process.spawn(Command::new(tools_dir().join("bin/connect-distributed.sh")).arg(&config));
        Worker { process, rest_port }
    }

    /// Polls until the REST API lists connectors (the worker has joined its group and read
    /// the config topic far enough to answer). Fails early if the process exits.
    pub(crate) fn wait_rest(&mut self) {
        let mut last = String::from("no answer yet");
        let addr = self.rest_addr();
        let process = &mut self.process;
        let waited = try_wait_until(
            WORKER_START_TIMEOUT,
            &format!("{} answers GET /connectors", process.name()),
            || {
                if !process.is_running() {
                    return true;
                }
                match rest(addr, "GET", "/connectors", None) {
                    Ok((200, _)) => true,
                    Ok((status, body)) => {
                        last = format!("{status} {body}");
                        false
                    }
                    Err(e) => {
                        last = e;
                        false
                    }
                }
            },
        );
        assert!(
            process.is_running(),
            "{} exited during start-up (its log is below)",
            process.name()
        );
        if let Err(e) = waited {
            panic!("{e}; last answer: {last}");
        }
    }

    pub(crate) fn name(&self) -> &str {
        self.process.name()
    }

    pub(crate) fn rest_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.rest_port))
    }

    /// The worker id Connect reports in statuses (`rest.advertised.host.name:port`).
    pub(crate) fn worker_id(&self) -> String {
        format!("127.0.0.1:{}", self.rest_port)
    }

    /// A directory for the test's files (connector input and output), kept with the log.
    pub(crate) fn scratch_dir(&self) -> &Path {
        self.process.dir()
    }

    pub(crate) fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// SIGKILL: the worker gets no chance to commit offsets or leave its group.
    pub(crate) fn kill9(&mut self) {
        self.process.kill9();
    }

    /// The worker's WARN and ERROR lines, each once.
    pub(crate) fn complaints(&self, max: usize) -> Vec<String> {
        self.process.complaints(max)
    }
}

/// One REST call: `(status, body)`. HTTP/1.0, so the answer is never chunked and ends when the
/// worker closes the connection. `Err` while nothing answers.
pub(crate) fn rest(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(REST_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(REST_TIMEOUT)))
        .map_err(|e| format!("socket timeouts: {e}"))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut request =
        format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n");
    if !body.is_empty() || matches!(method, "POST" | "PUT") {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    s.write_all(request.as_bytes())
        .map_err(|e| format!("{method} {path}: send: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("{method} {path}: read: {e}"))?;
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} {path}: no HTTP head in {raw:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{method} {path}: bad status line in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// A REST call that must answer `expected`; returns the body parsed as JSON (`Null` when
/// empty). Panics with what the worker said otherwise.
pub(crate) fn rest_ok(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    expected: u16,
) -> Value {
    match rest(addr, method, path, body) {
        Ok((status, text)) if status == expected => {
            if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{method} {path}: {e} in {text:?}"))
            }
        }
        Ok((status, text)) => {
            panic!("{method} {path} on {addr}: expected {expected}, got {status}: {text}")
        }
        Err(e) => panic!("{method} {path} on {addr}: {e}"),
    }
}
