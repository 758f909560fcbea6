//! The Java reference client (`org.apache.kafka:kafka-clients`): the Maven project in
//! `tests/clients/java`, built once per test process, and its scenarios run against a node.
//!
//! ```text
//!   scenario(node, "producer")
//!     └─ program() ── OnceLock ──▶ up to date?  target/.rivulet-built newer than pom.xml and src/
//!          │                        no: mvn -o package  (offline: ~/.m2 already holds everything)
//!          │                            failing that, mvn package (fetches from Maven Central)
//!          └─ java -cp target/classes:<target/classpath.txt> dev.rivulet.clients.Main
//!                  <scenario> <bootstrap> <name prefix>      → "OK <scenario>" and exit 0
//! ```
//!
//! A missing `java` or `mvn` fails the test with the install command (.ci/run installs both and
//! fills ~/.m2 on CI); nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use super::{run, unique_name, CmdOutput, Node};

/// The main class of the program.
const MAIN_CLASS: &str = "dev.rivulet.clients.Main";

/// Longest a Maven build may take: a cold one downloads kafka-clients and the plugins.
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

/// Written into `target/` after a successful build; sources newer than it mean a rebuild.
const BUILT_STAMP: &str = ".rivulet-built";

const INSTALL_HINT: &str = "Install a JDK (17 or later) and Maven: \
    `apt-get install -y openjdk-17-jdk-headless maven` (Debian/Ubuntu) or \
    `brew install openjdk@17 maven`; .ci/run installs them on CI. \
    Set RIVULET_TEST_JAVA / RIVULET_TEST_MVN to use other executables.";

/// `tests/clients/java`.
pub(crate) fn project_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/java")
}

pub(crate) fn java() -> String {
    std::env::var("RIVULET_TEST_JAVA").unwrap_or_else(|_| "java".to_string())
}

fn mvn() -> String {
    std::env::var("RIVULET_TEST_MVN").unwrap_or_else(|_| "mvn".to_string())
}

/// Fails the test with the install hint unless `tool args` runs and exits 0.
fn require(tool: &str, args: &[&str]) {
    let probe = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match probe {
        Ok(status) if status.success() => {}
        other => panic!(
            "this test runs the Java Kafka client, but `{tool} {}` failed ({other:?}).\n\
             {INSTALL_HINT}",
            args.join(" ")
        ),
    }
}

/// The newest modification time of `path` and everything under it.
fn newest_mtime(path: &Path) -> SystemTime {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) => return SystemTime::UNIX_EPOCH,
    };
    let mut newest = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    if meta.is_dir() {
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                newest = newest.max(newest_mtime(&entry.path()));
            }
        }
    }
    newest
}

/// True when the last successful build is newer than the pom and every source file.
fn up_to_date(dir: &Path) -> bool {
    let stamp =
        match std::fs::metadata(dir.join("target").join(BUILT_STAMP)).and_then(|m| m.modified()) {
            Ok(t) => t,
            Err(_) => return false,
        };
    let sources = newest_mtime(&dir.join("pom.xml")).max(newest_mtime(&dir.join("src")));
    sources <= stamp && dir.join("target/classpath.txt").is_file()
}

fn maven(dir: &Path, offline: bool) -> CmdOutput {
    let mut cmd = Command::new(mvn());
    cmd.current_dir(dir)
        .args(["-q", "-B", "-Dstyle.color=never"]);
    if offline {
        cmd.arg("-o");
    }
    cmd.arg("package");
    run(&mut cmd, None, BUILD_TIMEOUT)
}

/// Builds the Maven project in `dir` (this one, or `tests/clients/streams`) if its sources
/// changed; returns the `java -cp` class path.
pub(crate) fn build_project(dir: &Path) -> Result<String, String> {
    let dir = dir.to_path_buf();
    require(&java(), &["-version"]);
    if !up_to_date(&dir) {
        require(&mvn(), &["-v"]);
        let offline = maven(&dir, true);
        if !offline.success() {
            // Something is not in ~/.m2 yet (or the sources do not compile: then the online
            // attempt fails the same way and both outputs are shown).
            let online = maven(&dir, false);
            if !online.success() {
                return Err(format!(
                    "building the Java program in {} failed.\n\
                     offline attempt:\n{offline}\n\nonline attempt:\n{online}",
                    dir.display()
                ));
            }
        }
        std::fs::write(dir.join("target").join(BUILT_STAMP), b"")
            .map_err(|e| format!("write the build stamp: {e}"))?;
    }
    let deps = std::fs::read_to_string(dir.join("target/classpath.txt"))
        .map_err(|e| format!("read target/classpath.txt after the build: {e}"))?;
    let classes = dir.join("target/classes");
    Ok(format!("{}:{}", classes.display(), deps.trim()))
}

/// The class path of the built program; builds it on first use in this process.
pub(crate) fn program() -> &'static str {
    static BUILT: OnceLock<Result<String, String>> = OnceLock::new();
    match BUILT.get_or_init(|| build_project(&project_dir())) {
        Ok(classpath) => classpath,
        Err(e) => panic!("{e}"),
    }
}

/// Runs one scenario of the program against `node`, with topic and group names unique to this
/// call. The caller checks the result with [`assert_scenario_ok`].
pub(crate) fn scenario(node: &Node, name: &str, timeout: Duration) -> CmdOutput {
    scenario_at(&node.bootstrap(), name, 1, timeout)
}

/// Like [`scenario`], against any bootstrap list (a cluster's), creating topics with
/// `replication` replicas.
pub(crate) fn scenario_at(
    bootstrap: &str,
    name: &str,
    replication: u16,
    timeout: Duration,
) -> CmdOutput {
    let prefix = unique_name(&format!("java-{name}"));
    scenario_named(bootstrap, name, &prefix, replication, &[], timeout)
}

/// Like [`scenario_at`] with the caller's name prefix, for tests that must find the scenario's
/// topics (`<prefix>-...`) while it runs, and extra JVM arguments (`-Dkey=value`).
pub(crate) fn scenario_named(
    bootstrap: &str,
    name: &str,
    prefix: &str,
    replication: u16,
    jvm_args: &[String],
    timeout: Duration,
) -> CmdOutput {
    let classpath = program();
    run(
        Command::new(java())
            .arg(format!("-Drivulet.replication={replication}"))
            .args(jvm_args)
            .arg("-cp")
            .arg(classpath)
            .arg(MAIN_CLASS)
            .arg(name)
            .arg(bootstrap)
            .arg(prefix),
        None,
        timeout,
    )
}

/// Panics with the program's whole output unless the scenario passed.
pub(crate) fn assert_scenario_ok(name: &str, out: &CmdOutput) {
    let ok_line = format!("OK {name} ");
    assert!(
        out.success() && out.stdout.lines().any(|l| l.starts_with(&ok_line)),
        "Java client scenario `{name}` failed:\n{out}"
    );
}
