//! Promises of docs/semantics.md checked at the protocol level, with hand-built requests so
//! that producer ids, sequence numbers and `acks` are exactly what each case needs.

mod harness;

use std::process::Command;
use std::time::Duration;

use bytes::BytesMut;
use harness::kafka;
use harness::wire::{
    self, BatchSpec, RawConn, API_KEY_PRODUCE, ERROR_INVALID_CONFIG, ERROR_NONE,
    ERROR_NOT_ENOUGH_REPLICAS, ERROR_OUT_OF_ORDER_SEQUENCE_NUMBER,
    ERROR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
};
use harness::{unique_name, Node, NodeOptions};
use kafka_protocol::messages::{
    ApiVersionsRequest, InitProducerIdRequest, ProduceRequest, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigSource, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;

fn init_producer_id(conn: &mut RawConn, transactional_id: Option<&str>) -> (i16, i64, i16) {
    init_producer_id_as(conn, transactional_id, -1, -1)
}

/// InitProducerId carrying a producer id and epoch (KIP-360's form; v3+ has the fields).
fn init_producer_id_as(
    conn: &mut RawConn,
    transactional_id: Option<&str>,
    producer_id: i64,
    producer_epoch: i16,
) -> (i16, i64, i16) {
    let version = wire::negotiate::<InitProducerIdRequest>(conn, i16::MAX);
    assert!(
        producer_id < 0 || version >= 3,
        "InitProducerId v{version} cannot carry a producer id"
    );
    let req = InitProducerIdRequest::default()
        .with_transactional_id(
            transactional_id.map(|t| TransactionalId(StrBytes::from_string(t.to_string()))),
        )
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(producer_epoch);
    let resp = conn
        .request(&req, version)
        .unwrap_or_else(|e| panic!("InitProducerId v{version} must be answered: {e}"));
    (resp.error_code, resp.producer_id.0, resp.producer_epoch)
}

fn read_back(node: &Node, topic: &str) -> Vec<(i64, String, String)> {
    kafka::consume_all(&node.bootstrap(), topic, Duration::from_secs(30))
        .into_values()
        .flatten()
        .map(|r| {
            (
                r.offset,
                r.key.unwrap_or_default(),
                r.value.unwrap_or_default(),
            )
        })
        .collect()
}

fn owned(records: &[(i64, &str, &str)]) -> Vec<(i64, String, String)> {
    records
        .iter()
        .map(|(o, k, v)| (*o, k.to_string(), v.to_string()))
        .collect()
}

/// "Idempotent producers": a repeat of one of the last 5 batches gets its original offsets and
/// is not stored again, a sequence gap gets OUT_OF_ORDER_SEQUENCE_NUMBER, and the state is
/// rebuilt from the log after kill -9.
#[test]
fn idempotent_batches_are_deduplicated_across_a_sigkill() {
    let mut node = Node::start();
    let topic = unique_name("idempotent");
    kafka::create_topic(&node.bootstrap(), &topic, 1, &[]);

    let mut conn = RawConn::connect(node.addr()).expect("connect");
    let (code, pid, epoch) = init_producer_id(&mut conn, None);
    assert_eq!(
        code, ERROR_NONE,
        "InitProducerId without a transactional id"
    );
    assert!(pid >= 0 && epoch >= 0, "producer id {pid}, epoch {epoch}");
    let version = wire::negotiate::<ProduceRequest>(&mut conn, 12);

    let a = BatchSpec::new(&[("a", "1"), ("a", "2"), ("a", "3")])
        .idempotent(pid, epoch, 0)
        .encode();
    let b = BatchSpec::new(&[("b", "4"), ("b", "5")])
        .idempotent(pid, epoch, 3)
        .encode();
    assert_eq!(
        wire::produce(&mut conn, version, &topic, a.clone()),
        (ERROR_NONE, 0),
        "first batch"
    );
    assert_eq!(
        wire::produce(&mut conn, version, &topic, a.clone()),
        (ERROR_NONE, 0),
        "the same batch again must get its original offset back"
    );
    assert_eq!(
        wire::produce(&mut conn, version, &topic, b.clone()),
        (ERROR_NONE, 3),
        "second batch"
    );
    let gap = BatchSpec::new(&[("c", "x")])
        .idempotent(pid, epoch, 10)
        .encode();
    let (code, _) = wire::produce(&mut conn, version, &topic, gap);
    assert_eq!(
        code, ERROR_OUT_OF_ORDER_SEQUENCE_NUMBER,
        "sequence 10 after 4 is a gap"
    );
    drop(conn);

    node.kill9();
    node.restart();
    let mut conn = RawConn::connect(node.addr()).expect("connect after restart");
    assert_eq!(
        wire::produce(&mut conn, version, &topic, b),
        (ERROR_NONE, 3),
        "after kill -9, a repeat of the last batch must still be recognised"
    );
    assert_eq!(
        wire::produce(&mut conn, version, &topic, a),
        (ERROR_NONE, 0),
        "after kill -9, a repeat of an earlier one of the last 5 batches too"
    );
    let next = BatchSpec::new(&[("d", "6")])
        .idempotent(pid, epoch, 5)
        .encode();
    assert_eq!(
        wire::produce(&mut conn, version, &topic, next),
        (ERROR_NONE, 5),
        "the next sequence continues the log"
    );
    assert_eq!(
        read_back(&node, &topic),
        owned(&[
            (0, "a", "1"),
            (1, "a", "2"),
            (2, "a", "3"),
            (3, "b", "4"),
            (4, "b", "5"),
            (5, "d", "6"),
        ]),
        "every batch stored exactly once"
    );
    node.assert_alive("after the idempotence checks");
}

/// "Idempotent producers": InitProducerId without a transactional id always hands out a new
/// producer id at epoch 0, as Kafka does. Passing another producer's id and epoch (any batch
/// shows them) must neither fence that producer nor let a client claim the id the next producer
/// will get (issue 9, defect 7).
#[test]
fn init_producer_id_cannot_take_over_another_producer() {
    let mut node = Node::start();
    let topic = unique_name("pid-takeover");
    kafka::create_topic(&node.bootstrap(), &topic, 1, &[]);

    let mut victim = RawConn::connect(node.addr()).expect("connect");
    let (code, pid, epoch) = init_producer_id(&mut victim, None);
    assert_eq!(code, ERROR_NONE, "the victim's InitProducerId");
    let version = wire::negotiate::<ProduceRequest>(&mut victim, 12);
    let batch = |key: &str, pid: i64, epoch: i16, seq: i32| {
        BatchSpec::new(&[(key, "v")])
            .idempotent(pid, epoch, seq)
            .encode()
    };
    assert_eq!(
        wire::produce(
            &mut victim,
            version,
            &topic,
            batch("victim-0", pid, epoch, 0)
        ),
        (ERROR_NONE, 0),
        "the victim's first batch"
    );

    let mut intruder = RawConn::connect(node.addr()).expect("connect");
    let (code, taken, taken_epoch) = init_producer_id_as(&mut intruder, None, pid, epoch);
    assert_eq!(code, ERROR_NONE, "the intruder's InitProducerId");
    assert_ne!(
        taken, pid,
        "InitProducerId with another producer's id and epoch {epoch} must hand out a new id, \
         not bump that producer's epoch (got epoch {taken_epoch})"
    );
    assert_eq!(taken_epoch, 0, "a new producer id starts at epoch 0");
    assert_eq!(
        wire::produce(
            &mut intruder,
            version,
            &topic,
            batch("intruder", taken, taken_epoch, 0)
        ),
        (ERROR_NONE, 1),
        "the intruder writes under its own id"
    );
    assert_eq!(
        wire::produce(
            &mut victim,
            version,
            &topic,
            batch("victim-1", pid, epoch, 1)
        ),
        (ERROR_NONE, 2),
        "the victim's next batch must not be fenced"
    );

    // Claiming the id the next producer would get, at a high epoch.
    let (code, claimed, claimed_epoch) = init_producer_id_as(&mut intruder, None, taken + 1, 7);
    assert_eq!(code, ERROR_NONE, "the claiming InitProducerId");
    assert_eq!(claimed_epoch, 0, "no epoch is taken over from the request");
    let mut next = RawConn::connect(node.addr()).expect("connect");
    let (code, next_pid, next_epoch) = init_producer_id(&mut next, None);
    assert_eq!(code, ERROR_NONE, "the next producer's InitProducerId");
    assert!(
        next_pid != claimed && next_pid != pid && next_pid != taken,
        "producer ids must not repeat: {pid}, {taken}, {claimed}, then {next_pid}"
    );
    assert_eq!(
        wire::produce(
            &mut next,
            version,
            &topic,
            batch("next", next_pid, next_epoch, 0)
        ),
        (ERROR_NONE, 3),
        "the next producer's first batch"
    );
    assert_eq!(
        read_back(&node, &topic)
            .into_iter()
            .map(|(o, k, _)| (o, k))
            .collect::<Vec<_>>(),
        vec![
            (0, "victim-0".to_string()),
            (1, "intruder".to_string()),
            (2, "victim-1".to_string()),
            (3, "next".to_string()),
        ],
        "every accepted batch is stored once, nothing else"
    );
    node.assert_alive("after the takeover attempts");
}

/// "Acknowledgements": acks=0 is never answered; the next response on the connection belongs
/// to the next request. The record is still stored.
#[test]
fn acks_0_produce_is_not_answered() {
    let mut node = Node::start();
    let topic = unique_name("acks0");
    kafka::create_topic(&node.bootstrap(), &topic, 1, &[]);
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    let version = wire::negotiate::<ProduceRequest>(&mut conn, 12);

    let req = wire::produce_request(
        &topic,
        0,
        0,
        BatchSpec::new(&[("k", "fire-and-forget")]).encode(),
    );
    let mut body = BytesMut::new();
    req.encode(&mut body, version).expect("encode");
    conn.send_request_bytes(
        API_KEY_PRODUCE,
        version,
        ProduceRequest::header_version(version),
        &body,
    )
    .expect("send acks=0 produce");
    // The ApiVersions answer must be the next frame: nothing was sent for the produce.
    conn.request(&ApiVersionsRequest::default(), 0)
        .expect("the first response after an acks=0 produce must be for the next request");

    let mut stored = Vec::new();
    harness::wait_until(
        Duration::from_secs(10),
        "the acks=0 record is readable",
        || {
            stored = read_back(&node, &topic);
            !stored.is_empty()
        },
    );
    assert_eq!(stored, owned(&[(0, "k", "fire-and-forget")]));
    node.assert_alive("after acks=0");
}

/// "Acknowledgements": on one node the in-sync set is that node, so min.insync.replicas=2
/// refuses every acks=all write with NOT_ENOUGH_REPLICAS; acks=1 still works.
#[test]
fn min_insync_replicas_above_the_isr_refuses_acks_all() {
    let mut node = Node::start();
    let topic = unique_name("minisr");
    kafka::create_topic(
        &node.bootstrap(),
        &topic,
        1,
        &[("min.insync.replicas", "2")],
    );
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    let version = wire::negotiate::<ProduceRequest>(&mut conn, 12);
    let (code, _) = wire::produce_acks(
        &mut conn,
        version,
        &topic,
        -1,
        BatchSpec::new(&[("k", "refused")]).encode(),
    );
    assert_eq!(
        code, ERROR_NOT_ENOUGH_REPLICAS,
        "acks=all with min.insync.replicas=2"
    );
    assert_eq!(
        wire::produce_acks(
            &mut conn,
            version,
            &topic,
            1,
            BatchSpec::new(&[("k", "leader-only")]).encode()
        ),
        (ERROR_NONE, 0),
        "acks=1 is not subject to min.insync.replicas, and the refused batch was not stored"
    );
    node.assert_alive("after min.insync.replicas checks");
}

/// "Acknowledgements" on three nodes, through the committed-write path: with
/// `min.insync.replicas=3`, a batch whose ISR shrinks while it waits is written but answered
/// NOT_ENOUGH_REPLICAS_AFTER_APPEND; with the ISR short, acks=all is refused before the append
/// (NOT_ENOUGH_REPLICAS) while acks=1 works; once the follower is back in sync, acks=all is
/// acknowledged again.
#[test]
fn acks_all_answers_not_enough_replicas_before_and_after_the_append() {
    use harness::cluster::{Cluster, ClusterOptions};
    const ERROR_NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
    let mut cluster = Cluster::start(3, ClusterOptions::default());
    let topic = unique_name("minisr3");
    cluster.create_topic(&topic, 1, 3, 3);
    let leader = cluster.leader_of(&topic, 0);
    let controller = cluster.controller();
    // Pause a follower that is not the controller, so the controller fences it at once.
    let follower = cluster
        .ids()
        .into_iter()
        .find(|&i| i != leader && i != controller)
        .expect("a third node");
    let mut conn = RawConn::connect(cluster.node(leader).addr()).expect("connect");
    let version = wire::negotiate::<ProduceRequest>(&mut conn, 12);
    let mut produce = |acks: i16, value: &str| {
        wire::produce_acks(
            &mut conn,
            version,
            &topic,
            acks,
            BatchSpec::new(&[("k", value)]).encode(),
        )
    };
    assert_eq!(produce(-1, "in-sync"), (ERROR_NONE, 0));

    cluster.pause(follower);
    // The leader appends, the paused follower never confirms, its lease lapses and the
    // controller shrinks the ISR to two: the high watermark passes the batch, too few replicas.
    let (code, _) = produce(-1, "isr-shrinks");
    assert_eq!(
        code, ERROR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        "acks=all while the ISR shrank below min.insync.replicas"
    );
    assert_eq!(
        produce(-1, "refused").0,
        ERROR_NOT_ENOUGH_REPLICAS,
        "acks=all with 2 in-sync replicas of 3 required"
    );
    assert_eq!(
        produce(1, "leader-only"),
        (ERROR_NONE, 2),
        "acks=1 is not subject to min.insync.replicas; the refused batch was not stored"
    );

    cluster.resume(follower);
    cluster.wait_for_full_isr(&topic, 1);
    assert_eq!(produce(-1, "back-in-sync"), (ERROR_NONE, 3));
}

/// "Idempotent producers": with `[transactions] enabled = false`, a transactional producer fails
/// at once with a non-retriable error that says so, instead of retrying a retriable
/// COORDINATOR_NOT_AVAILABLE for its whole timeout (30 s; aiokafka forever). Issue 9, defect 11.
#[test]
fn transactional_producers_fail_fast_saying_transactions_are_unsupported() {
    let mut node = node_without_transactions();
    let python = harness::require_python(&["confluent_kafka", "kafka"]);
    for client in ["confluent", "kafka-python"] {
        let out = harness::run(
            Command::new(&python)
                .arg(harness::clients_dir().join("transactional_init.py"))
                .args(["--bootstrap", &node.bootstrap(), "--client", client])
                .args(["--timeout", "30"]),
            None,
            Duration::from_secs(90),
        );
        out.assert_success();
        let last = out.stdout.lines().last().unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("{client}: no JSON result ({e}):\n{out}"));
        assert_eq!(v["ok"], false, "{client}: init_transactions must fail: {v}");
        assert_eq!(
            v["fatal"], true,
            "{client}: the failure must not be retriable: {v}"
        );
        let seconds = v["seconds"].as_f64().unwrap_or(f64::MAX);
        assert!(
            seconds < 10.0,
            "{client}: init_transactions failed after {seconds} s, not at once: {v}"
        );
        if client == "confluent" {
            // librdkafka shows the broker's error message; kafka-python shows only the code.
            let error = v["error"].as_str().unwrap_or_default();
            assert!(
                error.contains("transactions are not supported"),
                "{client}: the error must say why: {error:?}"
            );
        }
    }
    node.assert_alive("after the transactional producers");
}

/// Transactions turned off (they are on by default).
fn node_without_transactions() -> Node {
    Node::start_with(NodeOptions {
        env: vec![("RIVULET_TRANSACTIONS__ENABLED".into(), "false".into())],
        ..NodeOptions::default()
    })
}

/// "Idempotent producers": transactions, when turned off, are refused with an error instead of
/// pretending.
#[test]
fn transactional_ids_are_refused() {
    let mut node = node_without_transactions();
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    let (code, _, _) = init_producer_id(&mut conn, Some("tx-1"));
    assert_eq!(
        code, ERROR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        "InitProducerId with a transactional id"
    );
    node.assert_alive("after a refused request");
}

/// "Retention": `cleanup.policy=compact` (and `compact,delete`) is accepted and described as
/// given, as Kafka Connect requires of its internal topics; an unknown policy is refused with
/// INVALID_CONFIG. The cleaner itself: tests/compaction.rs.
#[test]
fn compacted_topics_are_accepted_and_described() {
    let mut node = Node::start();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", node.bootstrap())
        .create()
        .expect("admin client");
    let opts = AdminOptions::new().request_timeout(Some(Timeout::After(Duration::from_secs(30))));
    for (policy, accepted) in [
        ("compact", true),
        ("compact,delete", true),
        ("shred", false),
    ] {
        let topic = unique_name("compacted");
        let new_topic =
            NewTopic::new(&topic, 1, TopicReplication::Fixed(1)).set("cleanup.policy", policy);
        let results = futures::executor::block_on(admin.create_topics([&new_topic], &opts))
            .expect("CreateTopics answered");
        if !accepted {
            assert!(
                matches!(
                    results.as_slice(),
                    [Err((_, RDKafkaErrorCode::InvalidConfig))]
                ),
                "cleanup.policy={policy} should be refused with INVALID_CONFIG \
                 ({ERROR_INVALID_CONFIG}), got {results:?}"
            );
            continue;
        }
        assert!(
            matches!(results.as_slice(), [Ok(_)]),
            "cleanup.policy={policy}: {results:?}"
        );
        let described = futures::executor::block_on(
            admin.describe_configs([&ResourceSpecifier::Topic(&topic)], &opts),
        )
        .expect("DescribeConfigs answered");
        let entries = &described[0].as_ref().expect("topic described").entries;
        let entry = entries
            .iter()
            .find(|e| e.name == "cleanup.policy")
            .expect("cleanup.policy described");
        assert_eq!(entry.value.as_deref(), Some(policy), "{entry:?}");
        assert_eq!(entry.source, ConfigSource::DynamicTopic, "{entry:?}");
    }
    node.assert_alive("after compacted topics");
}
