//! Transactions (issue 14) with real clients against real `rivulet serve` processes
//! (docs/semantics.md, "Transactions (exactly-once)").
//!
//! confluent-kafka (tests/clients/txn_eos.py) and kafka-python (txn_kafka_python.py) commit and
//! abort; read_committed readers must get every committed record exactly once and no aborted
//! one (`assert_exactly_committed`), read_uncommitted readers everything; consume-transform-
//! produce commits the group's offsets only with its transaction; a producer that dies
//! mid-transaction is aborted by its timeout; a new incarnation fences the old; 3 nodes keep it
//! through a leader kill and a coordinator kill. Also: the coordinator's state reloaded from
//! `__transaction_state` after a SIGKILL, and DescribeTransactions / ListTransactions (raw
//! frames, `rivulet txn`, Kafka's `kafka-transactions.sh`) and DescribeProducers (raw frames
//! and `kafka-transactions.sh describe-producers`). The state machine itself is tested
//! in `rivulet-actors` (`cargo test -p rivulet-actors --lib txn`: table tests and a randomized
//! simulation with crashes and failovers).

mod harness;

use std::process::Command;
use std::time::Duration;

use harness::apache_kafka::kafka_tool;
use harness::cluster::{Cluster, ClusterOptions};
use harness::wire::{self, RawConn};
use harness::{kafka, unique_name, wait_until, Node, NodeOptions};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::describe_producers_request::TopicRequest as DescribeProducersTopic;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, DescribeProducersRequest, DescribeTransactionsRequest,
    FindCoordinatorRequest, InitProducerIdRequest, ListTransactionsRequest, ProduceRequest,
    ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use rivulet_storage::batch::BatchBuilder;

const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const CONCURRENT_TRANSACTIONS: i16 = 51;
const PRODUCER_FENCED: i16 = 90;
const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;
const INVALID_REGULAR_EXPRESSION: i16 = 128;
/// Attributes bit of a transactional batch.
const TRANSACTIONAL: i16 = 1 << 4;

fn node_with_transactions() -> Node {
    Node::start_with(NodeOptions {
        env: vec![("RIVULET_TRANSACTIONS__ENABLED".into(), "true".into())],
        ..NodeOptions::default()
    })
}

/// Zombie fencing: a second producer with the same transactional.id fences the first, whose
/// next transactional request fails with a fatal error; the second writes inside its
/// transaction, and a read_uncommitted reader sees only its record.
#[test]
fn a_new_incarnation_fences_the_old_and_produces_transactionally() {
    let mut node = node_with_transactions();
    let topic = unique_name("txn-fence");
    kafka::create_topic(&node.bootstrap(), &topic, 1, &[]);
    let v = client_json(
        "confluent_kafka",
        "txn_fencing.py",
        &[
            "--bootstrap",
            &node.bootstrap(),
            "--topic",
            &topic,
            "--id",
            &unique_name("tx"),
        ],
    );
    assert_eq!(
        v["init1"],
        serde_json::Value::Null,
        "first init_transactions: {v}"
    );
    assert_eq!(
        v["init2"],
        serde_json::Value::Null,
        "second init_transactions: {v}"
    );
    let zombie = v["zombie_error"].as_str().unwrap_or_default();
    assert!(
        zombie.to_lowercase().contains("fenced"),
        "the first producer must be fenced: {v}"
    );
    assert_eq!(
        v["zombie_fatal"], true,
        "fencing is fatal for the zombie: {v}"
    );
    assert_eq!(
        v["produced"], true,
        "the live producer's record was not delivered: {v}"
    );

    // The live transaction is still open: only a read_uncommitted reader sees its record.
    let keys = read_keys(&node.bootstrap(), &topic, "read_uncommitted", 1);
    assert_eq!(
        keys,
        ["live"],
        "only the live incarnation's record is in the log"
    );
    node.assert_alive("after the transactional producers");
}

/// FindCoordinator v3 for a transactional id: the error code (0 once the coordinator serves).
fn find_txn_coordinator(conn: &mut RawConn, id: &str) -> i16 {
    let mut req = FindCoordinatorRequest::default();
    req.key_type = 1;
    req.key = StrBytes::from_string(id.to_string());
    conn.request(&req, 3).expect("FindCoordinator").error_code
}

/// InitProducerId v4 with a transactional id: (error code, producer id, epoch).
fn init_producer_id(conn: &mut RawConn, id: &str) -> (i16, i64, i16) {
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = Some(TransactionalId(StrBytes::from_string(id.to_string())));
    req.transaction_timeout_ms = 60_000;
    req.producer_id = ProducerId(-1);
    req.producer_epoch = -1;
    let r = conn.request(&req, 4).expect("InitProducerId");
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

/// AddPartitionsToTxn v3 for partition 0 of `topic`: the partition's error code.
fn add_partition(conn: &mut RawConn, id: &str, (pid, epoch): (i64, i16), topic: &str) -> i16 {
    let mut t = AddPartitionsToTxnTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    t.partitions = vec![0];
    let mut req = AddPartitionsToTxnRequest::default();
    req.v3_and_below_transactional_id = TransactionalId(StrBytes::from_string(id.to_string()));
    req.v3_and_below_producer_id = ProducerId(pid);
    req.v3_and_below_producer_epoch = epoch;
    req.v3_and_below_topics = vec![t];
    let r = conn.request(&req, 3).expect("AddPartitionsToTxn");
    r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
}

/// The coordinator's state is in `__transaction_state`: after a SIGKILL and restart the
/// reloaded coordinator still knows the open transaction and the producer's epoch, so the old
/// epoch stays fenced and a new incarnation first has the open transaction aborted
/// (CONCURRENT_TRANSACTIONS, which clients retry).
#[test]
fn an_open_transaction_and_its_epoch_survive_a_coordinator_restart() {
    let mut node = node_with_transactions();
    let topic = unique_name("txn-restart");
    kafka::create_topic(&node.bootstrap(), &topic, 1, &[]);
    let id = unique_name("tx");
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    wait_until(
        Duration::from_secs(30),
        "the transaction coordinator serves",
        || find_txn_coordinator(&mut conn, &id) == NONE,
    );
    let mut granted = (0, 0, 0);
    wait_until(Duration::from_secs(30), "InitProducerId succeeds", || {
        granted = init_producer_id(&mut conn, &id);
        granted.0 == NONE
    });
    let (_, pid, epoch) = granted;
    assert_eq!(epoch, 0, "a new transactional id starts at epoch 0");
    let again = init_producer_id(&mut conn, &id);
    assert_eq!(
        again,
        (NONE, pid, 1),
        "a second incarnation bumps the epoch"
    );
    assert_eq!(add_partition(&mut conn, &id, (pid, 1), &topic), NONE);
    assert_eq!(
        add_partition(&mut conn, &id, (pid, 0), &topic),
        PRODUCER_FENCED,
        "the first incarnation is fenced"
    );

    node.kill9();
    node.restart();
    let mut conn = RawConn::connect(node.addr()).expect("connect after restart");
    wait_until(Duration::from_secs(30), "the coordinator is back", || {
        find_txn_coordinator(&mut conn, &id) == NONE
    });
    // Retries while the partition loads (NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS).
    let mut code = -1;
    wait_until(
        Duration::from_secs(30),
        "AddPartitionsToTxn is answered",
        || {
            code = add_partition(&mut conn, &id, (pid, 0), &topic);
            code != 14 && code != 15 && code != 16
        },
    );
    assert_eq!(
        code, PRODUCER_FENCED,
        "the fenced epoch stays fenced after the restart"
    );
    // Epoch 1's transaction is still open: re-adding its partition is a no-op success.
    assert_eq!(add_partition(&mut conn, &id, (pid, 1), &topic), NONE);
    let (code, _, _) = init_producer_id(&mut conn, &id);
    assert_eq!(
        code, CONCURRENT_TRANSACTIONS,
        "a new incarnation has the reloaded open transaction aborted first"
    );
    assert_eq!(
        add_partition(&mut conn, &id, (pid, 1), &topic),
        PRODUCER_FENCED,
        "the abort bumped the epoch: the open transaction's producer is fenced"
    );
    node.assert_alive("after the restart");
}

/// ListTransactions v1 with the given filters: (error code, sorted (id, producer id, state),
/// unknown state filters).
fn list_txns(
    conn: &mut RawConn,
    states: &[&str],
    producer_ids: &[i64],
    duration_ms: i64,
) -> (i16, Vec<(String, i64, String)>, Vec<String>) {
    let mut req = ListTransactionsRequest::default();
    req.state_filters = states
        .iter()
        .map(|s| StrBytes::from_string(s.to_string()))
        .collect();
    req.producer_id_filters = producer_ids.iter().map(|p| ProducerId(*p)).collect();
    req.duration_filter = duration_ms;
    let r = conn.request(&req, 1).expect("ListTransactions");
    let mut listed: Vec<(String, i64, String)> = r
        .transaction_states
        .iter()
        .map(|t| {
            (
                t.transactional_id.0.to_string(),
                t.producer_id.0,
                t.transaction_state.to_string(),
            )
        })
        .collect();
    listed.sort();
    let unknown = r
        .unknown_state_filters
        .iter()
        .map(|s| s.to_string())
        .collect();
    (r.error_code, listed, unknown)
}

/// DescribeTransactions and ListTransactions (with the state, producer-id and KIP-994
/// duration filters) report what the coordinator holds: one id with an open transaction, one
/// with none, one never seen. DescribeProducers reports the open transaction's producer and
/// start offset from the partition leader.
#[test]
fn transactions_are_described_and_listed_on_the_wire_and_by_the_cli() {
    let node = node_with_transactions();
    let topic = unique_name("txn-list");
    kafka::create_topic(&node.bootstrap(), &topic, 2, &[]);
    let (open, idle, never) = (
        unique_name("tx-open"),
        unique_name("tx-idle"),
        unique_name("tx-never"),
    );
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    // The ids may hash to different state partitions, which load one by one.
    for id in [&open, &idle, &never] {
        wait_until(
            Duration::from_secs(30),
            "the transaction coordinators serve",
            || find_txn_coordinator(&mut conn, id) == NONE,
        );
    }
    let mut granted = (0, 0, 0);
    wait_until(Duration::from_secs(30), "InitProducerId succeeds", || {
        granted = init_producer_id(&mut conn, &open);
        granted.0 == NONE
    });
    let (_, open_pid, open_epoch) = granted;
    let (code, idle_pid, _) = init_producer_id(&mut conn, &idle);
    assert_eq!(code, NONE, "InitProducerId of the second id");
    assert_eq!(
        add_partition(&mut conn, &open, (open_pid, open_epoch), &topic),
        NONE
    );

    let (code, all, unknown) = list_txns(&mut conn, &[], &[], -1);
    assert_eq!((code, unknown.len()), (NONE, 0));
    assert_eq!(
        all,
        vec![
            (idle.clone(), idle_pid, "Empty".to_string()),
            (open.clone(), open_pid, "Ongoing".to_string()),
        ]
    );
    let (code, ongoing, unknown) = list_txns(&mut conn, &["Ongoing", "Bogus"], &[], -1);
    assert_eq!(code, NONE);
    assert_eq!(
        ongoing,
        vec![(open.clone(), open_pid, "Ongoing".to_string())]
    );
    assert_eq!(
        unknown,
        vec!["Bogus".to_string()],
        "unknown state names are reported"
    );
    let (_, by_pid, _) = list_txns(&mut conn, &[], &[idle_pid], -1);
    assert_eq!(by_pid, vec![(idle.clone(), idle_pid, "Empty".to_string())]);
    // v2 (KIP-1152): a pattern that matches the whole id; one that does not compile.
    let by_pattern = |conn: &mut RawConn, pattern: &str| {
        let mut req = ListTransactionsRequest::default();
        req.duration_filter = -1;
        req.transactional_id_pattern = Some(StrBytes::from_string(pattern.to_string()));
        let r = conn.request(&req, 2).expect("ListTransactions v2");
        let ids: Vec<String> = r
            .transaction_states
            .iter()
            .map(|t| t.transactional_id.0.to_string())
            .collect();
        (r.error_code, ids)
    };
    assert_eq!(
        // The ids are letters, digits and `-`: each matches itself.
        by_pattern(&mut conn, &format!("{open}|nothing")),
        (NONE, vec![open.clone()])
    );
    assert_eq!(
        by_pattern(&mut conn, "tx-open"),
        (NONE, vec![]),
        "the pattern must match the whole id"
    );
    assert_eq!(
        by_pattern(&mut conn, "tx-(open"),
        (INVALID_REGULAR_EXPRESSION, vec![])
    );
    let (_, long_running, _) = list_txns(&mut conn, &[], &[], 3_600_000);
    assert!(
        long_running.is_empty(),
        "nothing has run for an hour: {long_running:?}"
    );
    // The open transaction has run for some milliseconds; the idle id has none running.
    let mut running = Vec::new();
    wait_until(
        Duration::from_secs(10),
        "the duration filter lists the open transaction",
        || {
            running = list_txns(&mut conn, &[], &[], 0).1;
            !running.is_empty()
        },
    );
    assert_eq!(
        running,
        vec![(open.clone(), open_pid, "Ongoing".to_string())]
    );

    let mut req = DescribeTransactionsRequest::default();
    req.transactional_ids = [&open, &idle, &never]
        .iter()
        .map(|id| TransactionalId(StrBytes::from_string(id.to_string())))
        .collect();
    let r = conn.request(&req, 0).expect("DescribeTransactions");
    assert_eq!(r.transaction_states.len(), 3);
    let o = &r.transaction_states[0];
    assert_eq!(o.error_code, NONE);
    assert_eq!(o.transactional_id.0.as_str(), open);
    assert_eq!(o.transaction_state.as_str(), "Ongoing");
    assert_eq!((o.producer_id.0, o.producer_epoch), (open_pid, open_epoch));
    assert_eq!(o.transaction_timeout_ms, 60_000);
    assert!(
        o.transaction_start_time_ms > 0,
        "an open transaction has a start time"
    );
    assert_eq!(o.topics.len(), 1);
    assert_eq!(o.topics[0].topic.0.as_str(), topic);
    assert_eq!(o.topics[0].partitions, vec![0]);
    let i = &r.transaction_states[1];
    assert_eq!(i.error_code, NONE);
    assert_eq!(i.transaction_state.as_str(), "Empty");
    assert_eq!(i.transaction_start_time_ms, -1, "no transaction is open");
    assert!(i.topics.is_empty());
    assert_eq!(
        r.transaction_states[2].error_code,
        TRANSACTIONAL_ID_NOT_FOUND
    );

    // The same through `rivulet txn`, which fans ListTransactions out to every broker and
    // finds the coordinator for DescribeTransactions.
    let cli = |args: &[&str]| {
        harness::run(
            Command::new(harness::RIVULET)
                .args(["txn", "--bootstrap", &node.bootstrap()])
                .args(args)
                .env_remove("RIVULET_BOOTSTRAP"),
            None,
            Duration::from_secs(60),
        )
    };
    let out = cli(&["list"]);
    out.assert_success();
    let row = |id: &str| {
        out.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_else(|| panic!("no row for {id}:\n{out}"))
    };
    assert_eq!(row(&open)[1..3], [open_pid.to_string(), "Ongoing".into()]);
    assert_eq!(row(&idle)[1..3], [idle_pid.to_string(), "Empty".into()]);
    let out = cli(&["list", "--state", "Ongoing"]);
    out.assert_success();
    assert!(
        out.stdout.contains(&open) && !out.stdout.contains(&idle),
        "{out}"
    );
    let out = cli(&["list", "--state", "Bogus"]);
    assert!(
        !out.success() && out.stderr.contains("unknown transaction state(s): Bogus"),
        "{out}"
    );
    let out = cli(&["describe", &open]);
    out.assert_success();
    for want in [
        "Ongoing",
        &format!("{topic}-0"),
        "60000 ms",
        &open_pid.to_string(),
    ] {
        assert!(out.stdout.contains(want), "describe shows {want}:\n{out}");
    }
    let out = cli(&["describe", &never]);
    assert!(
        !out.success() && out.stderr.contains("no transactional id"),
        "{out}"
    );

    // And through Apache Kafka's own `kafka-transactions.sh` (Kafka 4.3's Admin client: the
    // same fan-out and coordinator lookup).
    let b = node.bootstrap();
    let out = kafka_tool(
        "kafka-transactions",
        &["--bootstrap-server", &b, "list"],
        None,
    );
    out.assert_success();
    let fields = |out: &harness::CmdOutput, id: &str| {
        out.stdout
            .lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .find(|f| f.iter().any(|c| c == id))
            .unwrap_or_else(|| panic!("no row for {id}:\n{out}"))
    };
    // TransactionalId Coordinator ProducerId TransactionState
    assert_eq!(
        fields(&out, &open),
        [
            open.clone(),
            "1".into(),
            open_pid.to_string(),
            "Ongoing".into()
        ]
    );
    assert_eq!(fields(&out, &idle)[3], "Empty", "{out}");
    let out = kafka_tool(
        "kafka-transactions",
        &[
            "--bootstrap-server",
            &b,
            "describe",
            "--transactional-id",
            &open,
        ],
        None,
    );
    out.assert_success();
    // CoordinatorId TransactionalId ProducerId ProducerEpoch TransactionState
    // TransactionTimeoutMs CurrentTransactionStartTimeMs TransactionDurationMs TopicPartitions
    let row = fields(&out, &open);
    assert_eq!(row.len(), 9, "{out}");
    assert_eq!(
        [&row[2], &row[4], &row[5], &row[8]],
        [
            &open_pid.to_string(),
            "Ongoing",
            "60000",
            &format!("{topic}-0")
        ],
        "{out}"
    );

    // DescribeProducers (the partition leader's producer state): once the open transaction
    // writes to partition 0, its producer and the batch's offset, the transaction's start.
    let pv = wire::negotiate::<ProduceRequest>(&mut conn, 9);
    let now = i64::try_from(
        std::time::SystemTime::UNIX_EPOCH
            .elapsed()
            .expect("clock after 1970")
            .as_millis(),
    )
    .expect("milliseconds fit i64");
    let batch = BatchBuilder::new(now)
        .attributes(TRANSACTIONAL)
        .producer(open_pid, open_epoch, 0)
        .record(now, Some(b"k"), Some(b"in the open transaction"))
        .build();
    let mut req = wire::produce_request(&topic, 0, -1, batch);
    req.transactional_id = Some(TransactionalId(StrBytes::from_string(open.clone())));
    let resp = conn.request(&req, pv).expect("transactional Produce");
    let part = &resp.responses[0].partition_responses[0];
    assert_eq!(part.error_code, NONE, "transactional produce: {resp:?}");
    let start = part.base_offset;
    let mut req = DescribeProducersRequest::default();
    let mut t = DescribeProducersTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.clone()));
    t.partition_indexes = vec![0, 1, 7];
    req.topics = vec![t];
    let r = conn.request(&req, 0).expect("DescribeProducers");
    let ps = &r.topics[0].partitions;
    assert_eq!(
        ps.iter()
            .map(|p| (p.partition_index, p.error_code))
            .collect::<Vec<_>>(),
        [(0, NONE), (1, NONE), (7, UNKNOWN_TOPIC_OR_PARTITION)]
    );
    let described: Vec<_> = ps[0]
        .active_producers
        .iter()
        .map(|p| {
            (
                p.producer_id.0,
                p.producer_epoch,
                p.last_sequence,
                p.current_txn_start_offset,
            )
        })
        .collect();
    assert_eq!(
        described,
        [(open_pid, i32::from(open_epoch), 0, start)],
        "{r:?}"
    );
    assert!(ps[1].active_producers.is_empty(), "{r:?}");
    let out = kafka_tool(
        "kafka-transactions",
        &[
            "--bootstrap-server",
            &b,
            "describe-producers",
            "--topic",
            &topic,
            "--partition",
            "0",
        ],
        None,
    );
    out.assert_success();
    // ProducerId ProducerEpoch LatestCoordinatorEpoch LastSequence LastTimestamp
    // CurrentTransactionStartOffset
    let row = fields(&out, &open_pid.to_string());
    assert_eq!(
        [&row[0], &row[3], &row[5]],
        [&open_pid.to_string(), "0", &start.to_string()],
        "{out}"
    );
    // `find-hanging` asks DescribeProducers too, then the coordinator: a transaction the
    // coordinator holds open (and younger than the limit) is not hanging.
    let out = kafka_tool(
        "kafka-transactions",
        &[
            "--bootstrap-server",
            &b,
            "find-hanging",
            "--topic",
            &topic,
            "--partition",
            "0",
            "--max-transaction-timeout",
            "1",
        ],
        None,
    );
    out.assert_success();
    assert!(
        out.stdout.starts_with("Topic") && out.stdout.lines().count() == 1,
        "a header and no hanging transaction: {out}"
    );

    // /metrics counts the ids per state for the coordinators this node hosts.
    let metrics = http_get(node.admin_addr(), "/metrics");
    for line in [
        r#"rivulet_transactions{state="Ongoing"} 1"#,
        r#"rivulet_transactions{state="Empty"} 1"#,
        r#"rivulet_transactions{state="PrepareCommit"} 0"#,
        "rivulet_transaction_coordinators_loading 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "/metrics has {line}:\n{metrics}"
        );
    }
}

/// The body of `GET path` (one request, `Connection: close`).
fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to the admin endpoint {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read the response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP head and body");
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    body.to_string()
}

// ---------------------------------------------------------------------------------------------
// End to end: markers, read_committed, consume-transform-produce, timeouts
// (tests/clients/txn_eos.py drives confluent-kafka; docs/semantics.md, "Transactions")
// ---------------------------------------------------------------------------------------------

/// Runs one mode of `txn_eos.py` and returns its JSON line.
fn eos(bootstrap: &str, args: &[&str]) -> serde_json::Value {
    let args: Vec<&str> = args
        .iter()
        .copied()
        .chain(["--bootstrap", bootstrap])
        .collect();
    client_json("confluent_kafka", "txn_eos.py", &args)
}

/// Runs `tests/clients/<script>` (needing the Python `module`) with `args` and returns the JSON
/// line it ends with.
fn client_json(module: &str, script: &str, args: &[&str]) -> serde_json::Value {
    let python = harness::require_python(&[module]);
    let out = harness::run(
        Command::new(&python)
            .arg(harness::clients_dir().join(script))
            .args(args),
        None,
        Duration::from_secs(120),
    );
    out.assert_success();
    let last = out.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("no JSON result ({e}):\n{out}"))
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// `transactions` transactions of `per_txn` records each by the producer `id`, every
/// `abort_every`-th one aborted (0: none): the keys committed and the keys aborted.
fn produce_transactions(
    bootstrap: &str,
    topic: &str,
    id: &str,
    transactions: u32,
    per_txn: u32,
    abort_every: u32,
) -> (Vec<String>, Vec<String>) {
    let (t, k, a) = (
        transactions.to_string(),
        per_txn.to_string(),
        abort_every.to_string(),
    );
    let v = eos(
        bootstrap,
        &[
            "produce",
            "--topic",
            topic,
            "--id",
            id,
            "--transactions",
            &t,
            "--per-txn",
            &k,
            "--abort-every",
            &a,
        ],
    );
    (strings(&v["committed"]), strings(&v["aborted"]))
}

/// Reads `topic` from the start with `isolation` until `expect` records came (and then no
/// more for a while): the keys in arrival order.
fn read_keys(bootstrap: &str, topic: &str, isolation: &str, expect: usize) -> Vec<String> {
    let expect = expect.to_string();
    let v = eos(
        bootstrap,
        &[
            "read",
            "--topic",
            topic,
            "--isolation",
            isolation,
            "--expect",
            &expect,
        ],
    );
    strings(&v["keys"])
}

/// The exactly-once checker: every committed key exactly once, no aborted key, nothing else.
fn assert_exactly_committed(read: &[String], committed: &[String], aborted: &[String]) {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for k in read {
        *counts.entry(k.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "records read more than once: {twice:?}");
    let seen_aborted: Vec<_> = aborted
        .iter()
        .filter(|k| counts.contains_key(k.as_str()))
        .collect();
    assert!(
        seen_aborted.is_empty(),
        "aborted records were read: {seen_aborted:?}"
    );
    let missing: Vec<_> = committed
        .iter()
        .filter(|k| !counts.contains_key(k.as_str()))
        .collect();
    assert!(missing.is_empty(), "committed records missing: {missing:?}");
    assert_eq!(
        read.len(),
        committed.len(),
        "records that no transaction committed were read: {read:?}"
    );
}

/// Commits and aborts with one producer, transaction after transaction (each needs the last
/// one's markers to complete): a read_committed reader gets every committed record exactly
/// once and no aborted one; a read_uncommitted reader gets both.
#[test]
fn committed_transactions_are_read_exactly_once_and_aborted_ones_never() {
    let mut node = node_with_transactions();
    let topic = unique_name("txn-eos");
    kafka::create_topic(&node.bootstrap(), &topic, 3, &[]);
    let (committed, aborted) =
        produce_transactions(&node.bootstrap(), &topic, &unique_name("tx"), 6, 5, 3);
    assert_eq!((committed.len(), aborted.len()), (20, 10));

    let read = read_keys(&node.bootstrap(), &topic, "read_committed", committed.len());
    assert_exactly_committed(&read, &committed, &aborted);

    let mut all = read_keys(
        &node.bootstrap(),
        &topic,
        "read_uncommitted",
        committed.len() + aborted.len(),
    );
    all.sort();
    let mut written: Vec<String> = committed.iter().chain(&aborted).cloned().collect();
    written.sort();
    assert_eq!(all, written, "read_uncommitted sees every record once");
    node.assert_alive("after the transactions");
}

/// Consume-transform-produce with `send_offsets_to_transaction`: the group's offsets stay
/// uncommitted after an aborted transaction and are committed with the committed ones; the
/// output holds one record per input record.
#[test]
fn consume_transform_produce_commits_output_and_offsets_together() {
    let mut node = node_with_transactions();
    let (input, output) = (unique_name("txn-in"), unique_name("txn-out"));
    kafka::create_topic(&node.bootstrap(), &input, 2, &[]);
    kafka::create_topic(&node.bootstrap(), &output, 2, &[]);
    // The input, itself written in committed transactions.
    let (inputs, _) =
        produce_transactions(&node.bootstrap(), &input, &unique_name("tx-src"), 4, 10, 0);
    assert_eq!(inputs.len(), 40);

    let group = unique_name("txn-group");
    let v = eos(
        &node.bootstrap(),
        &[
            "transform",
            "--input",
            &input,
            "--output",
            &output,
            "--group",
            &group,
            "--id",
            &unique_name("tx-job"),
            "--batch",
            "10",
            "--inputs",
            "40",
        ],
    );
    let after_abort = v["offsets_after_abort"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(
        after_abort.values().all(|o| o.as_i64().unwrap_or(0) < 0),
        "offsets sent in an aborted transaction must not be committed: {v}"
    );
    // Offsets count the markers too: each committed offset lies between the offset after the
    // partition's last record and its end.
    for p in ["0", "1"] {
        let committed = v["offsets_after"][p].as_i64().unwrap_or(-1);
        let (from, to) = (
            v["consumed_until"][p].as_i64().unwrap_or(i64::MAX),
            v["high_watermarks"][p].as_i64().unwrap_or(-1),
        );
        assert!(
            (from..=to).contains(&committed),
            "partition {p}: the committed offset must cover the input: {v}"
        );
    }
    assert_eq!(v["inputs"], 40, "{v}");

    let expected: Vec<String> = inputs.iter().map(|k| format!("out-{k}")).collect();
    let read = read_keys(&node.bootstrap(), &output, "read_committed", expected.len());
    // The aborted batch's output is in the log but never read.
    assert_exactly_committed(&read, &expected, &[]);
    node.assert_alive("after the transform");
}

/// kafka-python's transactional producer: a committed and an aborted transaction, each with a
/// group offset (send_offsets_to_transaction): read_committed readers get the committed
/// records only, and the group's offset is the committed transaction's.
#[test]
fn kafka_python_commits_and_aborts_with_group_offsets() {
    let mut node = node_with_transactions();
    let topic = unique_name("txn-kp");
    kafka::create_topic(&node.bootstrap(), &topic, 1, &[]);
    let (id, group) = (unique_name("tx-kp"), unique_name("kp-group"));
    let bootstrap = node.bootstrap();
    let v = client_json(
        "kafka",
        "txn_kafka_python.py",
        &[
            "--bootstrap",
            &bootstrap,
            "--topic",
            &topic,
            "--id",
            &id,
            "--group",
            &group,
        ],
    );
    assert_eq!(
        v["group_offset"], 7,
        "the committed transaction's offset: {v}"
    );
    let (committed, aborted) = (strings(&v["committed"]), strings(&v["aborted"]));
    let read = read_keys(&node.bootstrap(), &topic, "read_committed", committed.len());
    assert_exactly_committed(&read, &committed, &aborted);
    node.assert_alive("after kafka-python's transactions");
}

/// A producer that dies mid-transaction: its transaction timeout aborts it, the partition's
/// last stable offset moves on, and read_committed readers get the records committed after
/// it (and never the dead producer's).
#[test]
fn a_producer_that_dies_mid_transaction_is_aborted_by_its_timeout() {
    let mut node = node_with_transactions();
    let topic = unique_name("txn-dead");
    kafka::create_topic(&node.bootstrap(), &topic, 1, &[]);
    let dead = unique_name("tx-dead");
    let v = eos(
        &node.bootstrap(),
        &[
            "hang",
            "--topic",
            &topic,
            "--id",
            &dead,
            "--per-txn",
            "3",
            "--timeout-ms",
            "3000",
        ],
    );
    let pending = strings(&v["pending"]);
    assert_eq!(
        v["delivered"], 3,
        "the dead producer's records were written: {v}"
    );
    let started = std::time::Instant::now();
    let (committed, _) =
        produce_transactions(&node.bootstrap(), &topic, &unique_name("tx-live"), 1, 4, 0);
    let read = read_keys(&node.bootstrap(), &topic, "read_committed", committed.len());
    assert_exactly_committed(&read, &committed, &pending);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "read_committed readers waited {:?} for a 3 s transaction timeout",
        started.elapsed()
    );
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    wait_until(
        Duration::from_secs(15),
        "the dead producer's transaction is aborted",
        || {
            let (_, listed, _) = list_txns(&mut conn, &[], &[], -1);
            listed
                .iter()
                .any(|(id, _, state)| *id == dead && state == "CompleteAbort")
        },
    );
    node.assert_alive("after the timeout");
}

/// FindCoordinator v3 for a transactional id: the coordinator's node id once one serves.
fn txn_coordinator_node(conn: &mut RawConn, id: &str) -> Option<i32> {
    let mut req = FindCoordinatorRequest::default();
    req.key_type = 1;
    req.key = StrBytes::from_string(id.to_string());
    let r = conn.request(&req, 3).ok()?;
    (r.error_code == NONE).then_some(r.node_id.0)
}

/// On 3 nodes, one transactional id commits and aborts across the SIGKILL of a partition's
/// leader and then of the node of its transaction coordinator (each between transactions:
/// the markers go to the new leader, remote from the coordinator or not; the new coordinator
/// replays `__transaction_state`). The checker holds over the whole history.
#[test]
fn transactions_stay_exactly_once_across_leader_and_coordinator_kills() {
    let mut cluster = Cluster::start(3, ClusterOptions::default());
    let topic = unique_name("txn-kill");
    cluster.create_replicated_topic(&topic, 2);
    let id = unique_name("tx");
    let (mut committed, mut aborted) =
        produce_transactions(&cluster.bootstrap(), &topic, &id, 2, 4, 2);

    let leader = cluster.leader_of(&topic, 0);
    cluster.kill9(leader);
    let (c, a) = produce_transactions(&cluster.bootstrap(), &topic, &id, 2, 4, 2);
    committed.extend(c);
    aborted.extend(a);
    cluster.restart(leader);
    cluster.wait_for_full_isr(&topic, 2);

    let any = cluster.live_ids()[0];
    let mut conn = RawConn::connect(cluster.node(any).addr()).expect("connect");
    let mut coordinator = None;
    wait_until(Duration::from_secs(30), "the coordinator is named", || {
        coordinator = txn_coordinator_node(&mut conn, &id);
        coordinator.is_some()
    });
    let coordinator = coordinator.and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
    cluster.kill9(coordinator);
    let (c, a) = produce_transactions(&cluster.bootstrap(), &topic, &id, 2, 4, 2);
    committed.extend(c);
    aborted.extend(a);
    assert_eq!((committed.len(), aborted.len()), (12, 12));

    let read = read_keys(
        &cluster.bootstrap(),
        &topic,
        "read_committed",
        committed.len(),
    );
    assert_exactly_committed(&read, &committed, &aborted);
}

/// read_committed with confluent-kafka (docs/semantics.md, "Transactions in the log"): a
/// transactional producer commits one transaction and aborts another, and leaves a third open.
/// A read_committed consumer sees only the committed records and stops at the last stable
/// offset (the open transaction's first offset) until it commits; a read_uncommitted one sees
/// every record. ListOffsets for each isolation level answers the LSO and the high watermark.
#[test]
fn read_committed_sees_only_committed_records_and_stops_at_the_lso() {
    let mut node = node_with_transactions();
    let topic = unique_name("txn-iso");
    kafka::create_topic(&node.bootstrap(), &topic, 1, &[]);
    let id = unique_name("tx");
    let v = eos(
        &node.bootstrap(),
        &["isolation", "--topic", &topic, "--id", &id],
    );
    let keys = |k: &str| strings(&v[k]);
    assert_eq!(
        keys("ru"),
        ["c1", "c2", "a1", "a2", "o1"],
        "read_uncommitted: {v}"
    );
    assert_eq!(keys("rc_before"), ["c1", "c2"], "read_committed: {v}");
    // c1 c2 | commit marker 2 | a1 a2 | abort marker 5 | o1 at 6: the LSO is 6, the HW 7.
    assert_eq!(
        v["rc_high_before"], 6,
        "read_committed latest offset is the LSO: {v}"
    );
    assert_eq!(
        v["ru_high"], 7,
        "read_uncommitted latest offset is the HW: {v}"
    );
    assert_eq!(keys("rc_after"), ["o1"], "after the commit: {v}");
    node.assert_alive("after the read_committed run");
}
