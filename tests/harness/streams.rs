//! Kafka Streams applications (`org.apache.kafka:kafka-streams` 4.3.1): the Maven project in
//! `tests/clients/streams`, built once per test process like tests/clients/java
//! (harness::java::build_project), each instance a JVM of its own (harness::jvm).
//!
//! ```text
//!   StreamsInstance::start("a", WORD_COUNT, [bootstrap, app id, input, output, <dir>/state])
//!     └─ java -Drivulet.guarantee=… -cp target/classes:<classpath.txt> dev.rivulet.streams.WordCount …
//!          prints "STATE RUNNING REBALANCING" …      ◀── wait_running() polls its log
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::java::{build_project, java};
use super::jvm::JvmProcess;
use super::try_wait_until;

/// The word count application (Kafka Streams' quickstart).
pub(crate) const WORD_COUNT: &str = "dev.rivulet.streams.WordCount";

/// How long an instance may take to reach RUNNING: a JVM start, joining the group, creating
/// the internal topics, restoring its stores.
pub(crate) const RUNNING_TIMEOUT: Duration = Duration::from_secs(120);

/// `tests/clients/streams`.
pub(crate) fn project_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/streams")
}

/// The class path of the built applications; builds them on first use in this process.
pub(crate) fn program() -> &'static str {
    static BUILT: OnceLock<Result<String, String>> = OnceLock::new();
    match BUILT.get_or_init(|| build_project(&project_dir())) {
        Ok(classpath) => classpath,
        Err(e) => panic!("{e}"),
    }
}

/// One instance of a Kafka Streams application.
#[derive(Debug)]
pub(crate) struct StreamsInstance {
    process: JvmProcess,
}

impl StreamsInstance {
    /// Starts `main_class` with `args`; `{state}` in an argument is replaced by a state
    /// directory of this instance's own. `guarantee` is the `processing.guarantee`.
    pub(crate) fn start(
        name: &str,
        main_class: &str,
        guarantee: &str,
        args: &[String],
    ) -> StreamsInstance {
        let classpath = program();
        let mut process = JvmProcess::new(&format!("streams-{name}"));
        let state = process.dir().join("state");
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{state}", &state.display().to_string()))
            .collect();
        process.spawn(
            Command::new(java())
                .arg(format!("-Drivulet.guarantee={guarantee}"))
                .args(["-Xmx256M", "-XX:+UseSerialGC"])
                .arg("-cp")
                .arg(classpath)
                .arg(main_class)
                .args(&args),
        );
        StreamsInstance { process }
    }

    /// Polls the instance's log until it printed `STATE RUNNING` `times` times in all (a
    /// rebalance takes it through REBALANCING and back). Fails early if it exits.
    pub(crate) fn wait_running(&mut self, times: usize) {
        let process = &mut self.process;
        let waited = try_wait_until(
            RUNNING_TIMEOUT,
            &format!("{} reports RUNNING ({times}x)", process.name()),
            || {
                !process.is_running()
                    || process
                        .log()
                        .lines()
                        .filter(|l| l.starts_with("STATE RUNNING "))
                        .count()
                        >= times
            },
        );
        assert!(
            process.is_running(),
            "{} exited (its log is below)",
            process.name()
        );
        if let Err(e) = waited {
            panic!("{e}");
        }
    }

    /// How often the instance reported RUNNING so far.
    pub(crate) fn times_running(&self) -> usize {
        self.process
            .log()
            .lines()
            .filter(|l| l.starts_with("STATE RUNNING "))
            .count()
    }

    /// SIGTERM: the application closes (commits, leaves its group) in its shutdown hook and
    /// reports NOT_RUNNING; the JVM then exits with 143 (128 + SIGTERM), as JVMs do on SIGTERM.
    pub(crate) fn stop(&mut self) {
        match self.process.terminate(Duration::from_secs(60)) {
            Ok(status)
                if status.code() == Some(143)
                    && self
                        .process
                        .log()
                        .lines()
                        .any(|l| l.starts_with("STATE NOT_RUNNING ")) => {}
            other => panic!(
                "{} did not close cleanly: {other:?}\n{}",
                self.process.name(),
                self.process.log_tail(40)
            ),
        }
    }

    /// SIGKILL.
    pub(crate) fn kill9(&mut self) {
        self.process.kill9();
    }

    pub(crate) fn name(&self) -> &str {
        self.process.name()
    }

    /// The WARN and ERROR lines of its log, each once.
    pub(crate) fn complaints(&self, max: usize) -> Vec<String> {
        self.process.complaints(max)
    }
}
