//! Apache Kafka's own shell tools (kafka-topics, kafka-console-producer, ...) run against
//! Rivulet nodes, from the Maven Central jars pinned in `tools/apache-kafka/pom.xml`.
//!
//! ```text
//!   test ──▶ kafka_tool("kafka-topics", ["--bootstrap-server", node, ...])
//!              └─▶ tools/apache-kafka/bin/kafka-topics.sh          (what users type)
//!                    └─▶ kafka.sh run org.apache.kafka.tools.TopicCommand
//!                          └─▶ java -cp <classpath resolved once by mvn, cached in ~/.m2
//!                                        and tools/apache-kafka/target/classpath.txt>
//! ```
//!
//! The first call resolves the classpath (`kafka.sh classpath`); a missing `java` or `mvn`
//! fails the test with how to install it (`.ci/run` resolves the jars on CI).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::{run, CmdOutput};

/// How long one tool invocation may take: a JVM start-up is 1-3 s on a busy 2-core machine;
/// the consumer tools get their own `--timeout-ms` below this.
pub(crate) const TOOL_TIMEOUT: Duration = Duration::from_secs(90);

/// `tools/apache-kafka` in this checkout.
pub(crate) fn tools_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/apache-kafka")
}

/// Checks `java` and resolves Kafka's classpath once per test binary. Fails the test with
/// installation instructions when either is impossible.
pub(crate) fn require_kafka_tools() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(e) = READY.get_or_init(|| resolve_jars("classpath", "Kafka's shell tools")) {
        panic!("{e}");
    }
}

/// Checks `java`, then runs `kafka.sh <command>` (`classpath`, `connect-classpath`), which
/// resolves the jars of one of its poms with Maven. `what` names the user of the jars in the
/// error.
pub(crate) fn resolve_jars(command: &str, what: &str) -> Result<(), String> {
    let java = std::env::var("JAVA").unwrap_or_else(|_| "java".to_string());
    match Command::new(&java)
        .arg("-version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => {}
        other => {
            return Err(format!(
                "{what} need a Java 17+ runtime, but `{java} -version` failed ({other:?}). \
                 Install one: `apt-get install -y openjdk-17-jre-headless` (Debian/Ubuntu) or \
                 `brew install openjdk@17`; set JAVA to use another path."
            ))
        }
    }
    let out = run(
        Command::new(tools_dir().join("kafka.sh")).arg(command),
        None,
        // A cold ~/.m2 downloads up to about 90 jars (~60 MB) from Maven Central.
        Duration::from_secs(600),
    );
    if !out.success() {
        return Err(format!(
            "could not resolve the jars of {what} with `tools/apache-kafka/kafka.sh {command}` \
             (needs Maven: `apt-get install -y maven`, and Maven Central reachable; .ci/run \
             does this on CI):\n{out}"
        ));
    }
    Ok(())
}

/// Runs `tools/apache-kafka/bin/<tool>.sh ARGS`, with `stdin` fed to it when given.
pub(crate) fn kafka_tool(tool: &str, args: &[&str], stdin: Option<&str>) -> CmdOutput {
    require_kafka_tools();
    run(
        Command::new(tools_dir().join("bin").join(format!("{tool}.sh"))).args(args),
        stdin.map(|s| s.as_bytes().to_vec()),
        TOOL_TIMEOUT,
    )
}
