//! The Go client programs (tests/clients/go: franz-go with kadm, IBM/sarama, segmentio/kafka-go)
//! built once per test process and run against a node.
//!
//! ```text
//!   go_client(bootstrap, "franz", "group") ──▶ GO_BINARY (OnceLock: `go build` once per process)
//!        │                                   └─ tests/clients/go/bin/rivulet-go-clients
//!        └─▶ rivulet-go-clients franz group 127.0.0.1:<port> <unique prefix>
//!              exit 0 = every check held; "FAIL: ..." on stderr and exit 1 otherwise
//! ```
//!
//! The build uses `-mod=readonly` so the pinned go.mod/go.sum are what run; `.ci/run`
//! downloads the modules and builds the binary beforehand, so here `go build` only finds its
//! cache warm. A missing `go` fails the test with installation instructions.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::{run, CmdOutput};

/// How long one scenario may run; each normally takes a few seconds.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(150);

/// A cold `go build` (modules downloaded, nothing compiled) took 3 min 14 s on this 2-core
/// machine while other builds ran; with the build cache warm it takes about 1.5 s.
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

/// The Go module of the client programs.
pub(crate) fn go_module_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/go")
}

/// The `go` executable: `$RIVULET_TEST_GO`, else `go` on the PATH, else the official
/// installer's `/usr/local/go/bin/go`. Panics with instructions when none runs.
pub(crate) fn require_go() -> String {
    let mut candidates = Vec::new();
    if let Ok(go) = std::env::var("RIVULET_TEST_GO") {
        candidates.push(go);
    } else {
        candidates.push("go".to_string());
        candidates.push("/usr/local/go/bin/go".to_string());
    }
    let mut tried = Vec::new();
    for go in candidates {
        match Command::new(&go)
            .arg("version")
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) if out.status.success() => return go,
            other => tried.push(format!("`{go} version`: {other:?}")),
        }
    }
    panic!(
        "the Go client tests need Go 1.26 or later, but none runs ({}).\n\
         Install it from https://go.dev/dl/ (for example unpack go1.26.*.linux-amd64.tar.gz \
         into /usr/local) or set RIVULET_TEST_GO to the `go` executable; .ci/run checks for it \
         and builds the client programs on CI.",
        tried.join("; ")
    )
}

/// Builds tests/clients/go once per test process and returns the binary's path. A failed
/// build fails every test that needs it with the compiler's output.
pub(crate) fn go_clients_binary() -> &'static Path {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BINARY.get_or_init(|| {
        let go = require_go();
        let dir = go_module_dir();
        let binary = dir.join("bin").join("rivulet-go-clients");
        let out = run(
            Command::new(&go)
                .current_dir(&dir)
                // -buildvcs=false: the binary needs no VCS stamp, and stamping fails in
                // checkouts git refuses to read (another owner, a bare export).
                .env("GOFLAGS", "-mod=readonly -buildvcs=false")
                .args(["build", "-o"])
                .arg(&binary)
                .arg("."),
            None,
            BUILD_TIMEOUT,
        );
        if out.success() {
            Ok(binary)
        } else {
            Err(format!(
                "building the Go client programs failed (run `bash .ci/run` or \
                 `cd tests/clients/go && go mod download` to fetch the modules):\n{out}"
            ))
        }
    });
    match built {
        Ok(path) => path,
        Err(e) => panic!("{e}"),
    }
}

/// Runs `rivulet-go-clients <client> <scenario>` against `bootstrap` (one node's address, or a
/// cluster's comma-separated list) with topic and group names starting with `prefix`, and
/// returns its output (the caller asserts on it).
pub(crate) fn go_client(bootstrap: &str, client: &str, scenario: &str, prefix: &str) -> CmdOutput {
    let binary = go_clients_binary();
    run(
        Command::new(binary)
            .arg(client)
            .arg(scenario)
            .arg(bootstrap)
            .arg(prefix),
        None,
        SCENARIO_TIMEOUT,
    )
}
