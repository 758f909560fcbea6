//! Hostile and broken input on the Kafka port. After each case the node must still be running
//! and a normal client must still work; malformed record batches must be refused with an
//! error code and never stored.

mod harness;

use std::time::Duration;

use bytes::Bytes;
use harness::kafka::{self, TestProducer};
use harness::wire::{
    self, batch_layout, BatchSpec, RawConn, API_KEY_API_VERSIONS, API_KEY_PRODUCE,
    ERROR_CORRUPT_MESSAGE, ERROR_INVALID_RECORD, ERROR_NONE, ERROR_UNSUPPORTED_FOR_MESSAGE_FORMAT,
    ERROR_UNSUPPORTED_VERSION,
};
use harness::{pseudo_random_bytes, unique_name, Node, NodeOptions};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiVersionsResponse, BrokerId, FetchRequest, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use rivulet_storage::batch::{BatchBuilder, Compression};

/// How long the server gets to close a connection it should give up on.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The node still runs, answers ApiVersions, and round-trips a record through rdkafka.
fn assert_serving(node: &mut Node, after: &str) {
    node.assert_alive(after);
    wire::probe(node.addr(), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{after}: ApiVersions probe failed: {e}"));
    let topic = unique_name("smoke");
    kafka::create_topic(&node.bootstrap(), &topic, 1, &[]);
    let mut producer = TestProducer::new(&node.bootstrap(), &[("message.timeout.ms", "15000")]);
    producer.send(&topic, "smoke", after);
    producer
        .flush(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{after}: flush: {e}; {:?}", producer.log().failed()));
    let acked = producer.log().acked();
    assert_eq!(
        acked.len(),
        1,
        "{after}: smoke record not acknowledged: {:?}",
        producer.log().failed()
    );
    let consumed = kafka::consume_all(&node.bootstrap(), &topic, Duration::from_secs(20));
    kafka::assert_history(&acked, &consumed, true);
}

#[test]
fn garbage_bytes_do_not_hurt_the_node() {
    let mut node = Node::start();

    // An HTTP request: "GET " read as a frame length is ~1.2 GB.
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    conn.write_raw(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("write");
    assert!(
        conn.closed_by_peer(CLOSE_TIMEOUT),
        "an HTTP request (frame length 0x47455420) should get the connection closed"
    );
    assert_serving(&mut node, "after an HTTP request");

    for seed in [1u64, 0xdead_beef, 42_4242] {
        let mut conn = RawConn::connect(node.addr()).expect("connect");
        let bytes = pseudo_random_bytes(seed, 4096);
        eprintln!("garbage seed {seed:#x}, first bytes {:02x?}", &bytes[..8]);
        // The server may close while we write; that is a fine reaction.
        let _ = conn.write_raw(&bytes);
        let _ = conn.shutdown_write();
        assert!(
            conn.closed_by_peer(CLOSE_TIMEOUT),
            "garbage (seed {seed:#x}) then EOF: the server should close the connection"
        );
        assert_serving(&mut node, &format!("after garbage seed {seed:#x}"));
    }
}

#[test]
fn truncated_frames_do_not_block_other_clients() {
    let mut node = Node::start();

    // Frame says 100 bytes, 10 arrive, then EOF.
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    let mut frame = 100i32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0, 18, 0, 0, 0, 0, 0, 7, 0, 0]);
    conn.write_raw(&frame).expect("write");
    conn.shutdown_write().expect("shutdown");
    assert!(
        conn.closed_by_peer(CLOSE_TIMEOUT),
        "truncated frame then EOF: the server should close the connection"
    );
    assert_serving(&mut node, "after a truncated frame and EOF");

    // Half a frame that stays open: other clients must be served meanwhile.
    let mut stalled = RawConn::connect(node.addr()).expect("connect");
    stalled.write_raw(&frame).expect("write");
    let mut half_length = RawConn::connect(node.addr()).expect("connect");
    half_length.write_raw(&[0, 0]).expect("write");
    assert_serving(&mut node, "while two connections hold partial frames");
    drop(stalled);
    drop(half_length);
    assert_serving(&mut node, "after the partial-frame connections dropped");
}

#[test]
fn absurd_frame_lengths_are_refused() {
    let mut node = Node::start();
    for (what, len) in [
        ("i32::MAX", i32::MAX),
        ("1 GiB", 1 << 30),
        ("negative", -1),
        ("i32::MIN", i32::MIN),
        ("zero", 0),
    ] {
        let mut conn = RawConn::connect(node.addr()).expect("connect");
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 64]);
        let _ = conn.write_raw(&bytes);
        assert!(
            conn.closed_by_peer(CLOSE_TIMEOUT),
            "frame length {what} ({len}): the server should close the connection, not wait for the bytes"
        );
        assert_serving(&mut node, &format!("after a frame length of {what}"));
    }
}

#[test]
fn unknown_api_keys_and_unsupported_versions() {
    let mut node = Node::start();

    // An API key no Kafka version defines: an error response or a closed connection are both
    // acceptable, silence is not.
    for api_key in [9_999i16, -1, 17_000] {
        let mut conn = RawConn::connect(node.addr()).expect("connect");
        conn.set_read_timeout(CLOSE_TIMEOUT).expect("timeout");
        let corr = conn.send_request_bytes(api_key, 0, 1, &[]).expect("send");
        let answered = conn.read_response_v0(corr);
        if answered.is_err() {
            assert!(
                conn.closed_by_peer(Duration::from_millis(100)),
                "unknown API key {api_key}: neither answered nor closed within {CLOSE_TIMEOUT:?}: {answered:?}"
            );
        }
        assert_serving(&mut node, &format!("after unknown API key {api_key}"));
    }

    // ApiVersions at a version newer than the server knows: KIP-511 says answer with a v0
    // response, UNSUPPORTED_VERSION, and the supported ranges so the client can retry.
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    // The body is shaped like v3's (software name and version, no tags), as a newer client's
    // would begin; the server cannot know the v127 layout and must not need to.
    let mut v3_like_body = vec![11u8];
    v3_like_body.extend_from_slice(b"rivulet-it");
    v3_like_body.extend_from_slice(&[2, b'1', 0]);
    let corr = conn
        .send_request_bytes(API_KEY_API_VERSIONS, 127, 2, &v3_like_body)
        .expect("send");
    let mut body: Bytes = conn
        .read_response_v0(corr)
        .expect("ApiVersions v127 must be answered (KIP-511), not dropped");
    let resp = ApiVersionsResponse::decode(&mut body, 0).expect("decode as ApiVersions v0");
    assert_eq!(
        resp.error_code, ERROR_UNSUPPORTED_VERSION,
        "ApiVersions v127 should get UNSUPPORTED_VERSION (35)"
    );
    assert!(
        resp.api_keys
            .iter()
            .any(|k| k.api_key == API_KEY_API_VERSIONS),
        "the UNSUPPORTED_VERSION response should list the supported ApiVersions range: {:?}",
        resp.api_keys
    );
    // The same connection stays usable for the retry at a supported version.
    let retried = wire::supported_versions(&mut conn, API_KEY_PRODUCE)
        .expect("ApiVersions v0 on the same connection after UNSUPPORTED_VERSION");
    assert!(retried.is_some(), "server does not advertise Produce");
    assert_serving(&mut node, "after ApiVersions v127");

    // Any other API at an unsupported version: an error or a close, then business as usual.
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    conn.set_read_timeout(CLOSE_TIMEOUT).expect("timeout");
    let corr = conn
        .send_request_bytes(3, 999, 1, &[0, 0, 0, 0])
        .expect("send Metadata v999");
    if conn.read_response_v0(corr).is_err() {
        assert!(
            conn.closed_by_peer(Duration::from_millis(100)),
            "Metadata v999: neither answered nor closed"
        );
    }
    assert_serving(&mut node, "after Metadata v999");

    // Produce v2, as a pre-0.11 client (or an old sarama default) sends it: below Kafka 4.0's
    // floor, but answered with UNSUPPORTED_FOR_MESSAGE_FORMAT on every partition instead of an
    // EOF the client would retry forever (issue 9, defect 12).
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    conn.set_read_timeout(CLOSE_TIMEOUT).expect("timeout");
    let mut body = Vec::new();
    body.extend_from_slice(&1i16.to_be_bytes()); // acks
    body.extend_from_slice(&5000i32.to_be_bytes()); // timeout
    body.extend_from_slice(&1i32.to_be_bytes()); // one topic
    body.extend_from_slice(&(b"old-client".len() as i16).to_be_bytes());
    body.extend_from_slice(b"old-client");
    body.extend_from_slice(&1i32.to_be_bytes()); // one partition
    body.extend_from_slice(&0i32.to_be_bytes());
    let message_set = [0u8; 34]; // one magic-v0 message's worth of bytes; never read
    body.extend_from_slice(&(message_set.len() as i32).to_be_bytes());
    body.extend_from_slice(&message_set);
    let corr = conn
        .send_request_bytes(API_KEY_PRODUCE, 2, 1, &body)
        .expect("send Produce v2");
    let mut resp = conn
        .read_response_v0(corr)
        .expect("Produce v2 must be answered, not dropped");
    let mut expected = Vec::new();
    expected.extend_from_slice(&1i32.to_be_bytes());
    expected.extend_from_slice(&(b"old-client".len() as i16).to_be_bytes());
    expected.extend_from_slice(b"old-client");
    expected.extend_from_slice(&1i32.to_be_bytes());
    expected.extend_from_slice(&0i32.to_be_bytes());
    expected.extend_from_slice(&ERROR_UNSUPPORTED_FOR_MESSAGE_FORMAT.to_be_bytes());
    expected.extend_from_slice(&(-1i64).to_be_bytes()); // base offset
    expected.extend_from_slice(&(-1i64).to_be_bytes()); // log append time
    expected.extend_from_slice(&0i32.to_be_bytes()); // throttle time
    assert_eq!(
        resp.split_to(resp.len()).to_vec(),
        expected,
        "Produce v2 response: UNSUPPORTED_FOR_MESSAGE_FORMAT (43) for the partition"
    );
    assert_serving(&mut node, "after Produce v2");
}

#[test]
fn corrupt_record_batches_are_rejected_and_not_stored() {
    let mut node = Node::start();
    let topic = unique_name("corrupt");
    kafka::create_topic(&node.bootstrap(), &topic, 1, &[]);

    let mut conn = RawConn::connect(node.addr()).expect("connect");
    // v13 addresses topics by id; up to v12 they go by name.
    let version = wire::negotiate::<ProduceRequest>(&mut conn, 12);

    let good = BatchSpec::new(&[("k1", "stored-value")]);
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();

    let mut bad_crc = good.encode();
    let last = bad_crc.len() - 2;
    bad_crc[last] ^= 0xff; // a byte of the value: the CRC no longer matches
    cases.push(("payload byte flipped (CRC mismatch)", bad_crc));

    let mut bad_crc_field = good.encode();
    bad_crc_field[batch_layout::CRC] ^= 0x01;
    cases.push(("CRC field flipped", bad_crc_field));

    let mut miscounted = good.clone();
    miscounted.declared_count = Some(5);
    cases.push((
        "record count 5 for 1 record (valid CRC)",
        miscounted.encode(),
    ));

    let full = good.encode();
    cases.push(("batch cut short", full[..full.len() - 5].to_vec()));

    let mut long_length = good.encode();
    let declared = (long_length.len() as i32 - 12) + 100;
    long_length[batch_layout::BATCH_LENGTH..batch_layout::BATCH_LENGTH + 4]
        .copy_from_slice(&declared.to_be_bytes());
    cases.push(("batch length field 100 bytes too long", long_length));

    let mut bad_record = good.encode();
    // The first record's length varint claims far more bytes than the batch holds; the CRC is
    // recomputed so only the record structure is wrong.
    bad_record[batch_layout::FIRST_RECORD] = 0x7e;
    let crc = crc32c::crc32c(&bad_record[batch_layout::ATTRIBUTES..]);
    bad_record[batch_layout::CRC..batch_layout::CRC + 4].copy_from_slice(&crc.to_be_bytes());
    cases.push(("record length beyond the batch (valid CRC)", bad_record));

    let mut old_magic = good.encode();
    old_magic[batch_layout::MAGIC] = 1;
    cases.push(("magic 1 with a v2 layout", old_magic));

    cases.push(("random bytes", pseudo_random_bytes(7, 80)));

    // Every case runs before anything is asserted, so one report shows all that slipped by.
    let mut accepted = Vec::new();
    for (what, records) in cases {
        let (code, offset) = wire::produce(&mut conn, version, &topic, records.clone());
        // A batch whose magic byte is not 2 may also be refused as a format the broker does
        // not support; anything else wrong is corruption.
        let magic_is_2 = records.get(batch_layout::MAGIC) == Some(&2);
        let refused = code == ERROR_CORRUPT_MESSAGE
            || code == ERROR_INVALID_RECORD
            || (!magic_is_2 && code == ERROR_UNSUPPORTED_FOR_MESSAGE_FORMAT);
        if !refused {
            accepted.push(format!("{what}: error code {code}, base offset {offset}"));
        }
        node.assert_alive(what);
    }
    // The well-formed batch, through the same path: it must land at offset 0, after which the
    // log holds exactly it (this also shows the batch encoder above is right).
    let (code, good_offset) = wire::produce(&mut conn, version, &topic, good.encode());
    assert!(
        accepted.is_empty(),
        "Produce v{version}: malformed batches not refused with CORRUPT_MESSAGE (2) or \
         INVALID_RECORD (87) (or, for a magic byte other than 2, UNSUPPORTED_FOR_MESSAGE_FORMAT (43)):\n  {}\n(the well-formed batch then got error code {code} at \
         offset {good_offset})",
        accepted.join("\n  ")
    );
    assert_eq!(
        code, ERROR_NONE,
        "the well-formed batch was refused with error code {code}"
    );
    assert_eq!(
        good_offset, 0,
        "a corrupt batch was stored before the good one"
    );
    let consumed = kafka::consume_all(&node.bootstrap(), &topic, Duration::from_secs(20));
    let values: Vec<_> = consumed
        .values()
        .flatten()
        .map(|r| (r.offset, r.key.clone(), r.value.clone()))
        .collect();
    assert_eq!(
        values,
        vec![(0, Some("k1".to_string()), Some("stored-value".to_string()))],
        "exactly the well-formed record should be stored"
    );
    assert_serving(&mut node, "after the corrupt batches");
}

/// UNSUPPORTED_COMPRESSION_TYPE.
const ERROR_UNSUPPORTED_COMPRESSION_TYPE: i16 = 76;

/// Issue 9, defect 0: batches with a valid CRC that no consumer could read (an unknown codec,
/// garbage compressed data, a record count the records do not have, a client's control batch)
/// are refused, and a librdkafka consumer reads the partition's good batches of every codec it
/// has afterwards.
#[test]
fn poison_batches_are_refused_and_consumers_keep_reading() {
    let mut node = Node::start();
    let topic = unique_name("poison");
    kafka::create_topic(&node.bootstrap(), &topic, 1, &[]);
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    let version = wire::negotiate::<ProduceRequest>(&mut conn, 12);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let one = |value: &str| BatchBuilder::new(now).record(now, Some(b"k"), Some(value.as_bytes()));

    let cases: Vec<(&str, Vec<u8>, i16)> = vec![
        (
            "codec 5",
            one("x").attributes(5).build(),
            ERROR_UNSUPPORTED_COMPRESSION_TYPE,
        ),
        (
            "codec 6",
            one("x").attributes(6).build(),
            ERROR_UNSUPPORTED_COMPRESSION_TYPE,
        ),
        (
            "codec 7",
            one("x").attributes(7).build(),
            ERROR_UNSUPPORTED_COMPRESSION_TYPE,
        ),
        (
            "control batch from a client",
            one("x").attributes(1 << 5).build(),
            ERROR_INVALID_RECORD,
        ),
        (
            "garbage inside gzip",
            one("x")
                .attributes(1)
                .payload(pseudo_random_bytes(3, 200))
                .build(),
            ERROR_CORRUPT_MESSAGE,
        ),
        (
            "garbage inside zstd",
            one("x")
                .attributes(4)
                .payload(pseudo_random_bytes(4, 200))
                .build(),
            ERROR_CORRUPT_MESSAGE,
        ),
        (
            "gzip batch claiming 1,000,000 records",
            one("x")
                .compression(Compression::Gzip)
                .declared_count(1_000_000)
                .build(),
            ERROR_CORRUPT_MESSAGE,
        ),
    ];
    let mut wrong = Vec::new();
    for (what, records, want) in cases {
        let (code, offset) = wire::produce(&mut conn, version, &topic, records);
        if code != want {
            wrong.push(format!(
                "{what}: error code {code} (want {want}), base offset {offset}"
            ));
        }
        node.assert_alive(what);
    }
    assert!(
        wrong.is_empty(),
        "poison batches not refused as Kafka does:\n  {}",
        wrong.join("\n  ")
    );

    let good = [
        (Compression::Gzip, "gzip-value"),
        (Compression::Snappy, "snappy-value"),
        (Compression::Lz4, "lz4-value"),
        (Compression::None, "plain-value"),
    ];
    for (i, (codec, value)) in good.iter().enumerate() {
        let (code, offset) = wire::produce(
            &mut conn,
            version,
            &topic,
            one(value).compression(*codec).build(),
        );
        assert_eq!(
            (code, offset),
            (ERROR_NONE, i as i64),
            "good {codec:?} batch"
        );
    }
    let consumed = kafka::consume_all(&node.bootstrap(), &topic, Duration::from_secs(20));
    let values: Vec<_> = consumed
        .values()
        .flatten()
        .map(|r| (r.offset, r.value.clone()))
        .collect();
    assert_eq!(
        values,
        good.iter()
            .enumerate()
            .map(|(i, (_, v))| (i as i64, Some(v.to_string())))
            .collect::<Vec<_>>(),
        "librdkafka reads exactly the good batches"
    );
}

#[test]
fn huge_array_counts_in_a_small_frame_do_not_kill_the_node() {
    // The decoder reserves memory from array lengths before reading elements: a 20-byte frame
    // claiming 2^31-1 topics must become a decode error (connection closed), not an abort
    // (ARCHITECTURE.md, "A bad request closes at most its own connection").
    let mut node = Node::start();
    let huge = i32::MAX.to_be_bytes();
    // Metadata v1 and CreateTopics v2 start with their topic array; Produce v3 has a null
    // transactional id, acks and a timeout before it.
    let produce: Vec<u8> = [&[0xff, 0xff, 0, 1, 0, 0, 0x75, 0x30][..], &huge, &[0u8; 8]].concat();
    let array_first: Vec<u8> = [&huge[..], &[0u8; 8]].concat();
    for (api_key, version, body) in [
        (3i16, 1i16, &array_first),
        (19, 2, &array_first),
        (0, 3, &produce),
    ] {
        let mut conn = RawConn::connect(node.addr()).expect("connect");
        conn.send_request_bytes(api_key, version, 1, body)
            .expect("send");
        assert!(
            conn.closed_by_peer(CLOSE_TIMEOUT),
            "API {api_key} v{version} with an absurd array count: the connection should be closed"
        );
        assert_serving(
            &mut node,
            &format!("after API {api_key} v{version} with 2^31-1 elements"),
        );
    }
}

/// The node's resident memory, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS in /proc/<pid>/status")
        * 1024
}

#[test]
fn clients_that_never_read_or_never_finish_stay_within_the_memory_budget() {
    // Issue 9, defect 5: 20 consumers that never read their fetch responses and 20 slowloris
    // frames used to hold their full sizes each (GBs). With a 64 MiB budget the node's growth
    // must stay near the budget, other clients must be served meanwhile, and the stalled
    // connections must be closed by the read and write timeouts (ARCHITECTURE.md, "Everything
    // is bounded").
    const BUDGET: u64 = 64 << 20;
    const STALLED: usize = 20;
    let mut node = Node::start_with(NodeOptions {
        config_toml: Some(format!(
            "request_bytes_max = {}\ninflight_bytes_max = {BUDGET}\n\
             request_read_timeout_ms = 4000\nresponse_write_timeout_ms = 4000\n",
            32 << 20
        )),
        ..NodeOptions::default()
    });
    let topic = unique_name("budget");
    kafka::create_topic(&node.bootstrap(), &topic, 1, &[]);
    let mut conn = RawConn::connect(node.addr()).expect("connect");
    let version = wire::negotiate::<ProduceRequest>(&mut conn, 12);
    // 24 MiB in batches just under the default max.message.bytes (1 MiB).
    let value = "v".repeat(1000 << 10);
    for i in 0..24 {
        let (code, _) = wire::produce(
            &mut conn,
            version,
            &topic,
            BatchSpec::new(&[("k", value.as_str())]).encode(),
        );
        assert_eq!(code, ERROR_NONE, "produce of 1 MiB batch {i}");
    }
    let fetch_version = wire::negotiate::<FetchRequest>(&mut conn, 12);
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(64 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.clone())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(64 << 20)])]);
    // Everyone reads once so that the log's own caches are part of the baseline.
    let warm = conn.request(&fetch, fetch_version).expect("warm-up fetch");
    assert_eq!(warm.responses.len(), 1, "warm-up fetch: {warm:?}");
    let baseline = rss_bytes(node.pid());

    let mut fetchers = Vec::new();
    for _ in 0..STALLED {
        let mut c = RawConn::connect(node.addr()).expect("connect");
        c.send_request(&fetch, fetch_version).expect("send fetch");
        fetchers.push(c);
    }
    let mut slowloris = Vec::new();
    for _ in 0..STALLED {
        let mut c = RawConn::connect(node.addr()).expect("connect");
        let mut bytes = (30i32 << 20).to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 1]);
        bytes.extend_from_slice(&[0u8; 4096]);
        c.write_raw(&bytes).expect("write partial frame");
        slowloris.push(c);
    }
    let mut peak = 0;
    let sample_until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < sample_until {
        peak = peak.max(rss_bytes(node.pid()));
        std::thread::sleep(Duration::from_millis(50));
    }
    // Other clients are served while the stalled connections hold what they can.
    assert_serving(
        &mut node,
        "while 20 fetchers do not read and 20 frames stall",
    );
    peak = peak.max(rss_bytes(node.pid()));
    let growth = peak.saturating_sub(baseline);
    // The budget, plus one 1 MiB batch per fetch that found the budget spent (read and
    // encoded: twice), plus 32 MiB for allocator slack and the smoke client.
    let bound = BUDGET + 2 * STALLED as u64 * (1 << 20) + (32 << 20);
    eprintln!(
        "RSS: baseline {} MiB, peak {} MiB, growth {} MiB (bound {} MiB)",
        baseline >> 20,
        peak >> 20,
        growth >> 20,
        bound >> 20
    );
    assert!(
        growth <= bound,
        "RSS grew by {} MiB under {STALLED} non-reading fetchers and {STALLED} stalled frames; \
         bound {} MiB",
        growth >> 20,
        bound >> 20
    );
    for c in &mut slowloris {
        assert!(
            c.closed_by_peer(CLOSE_TIMEOUT),
            "a frame stalled for longer than request_read_timeout_ms should be closed"
        );
    }
    drop(fetchers);
    assert_serving(&mut node, "after the stalled connections");
}

#[test]
fn idle_connections_are_closed_and_one_address_cannot_take_every_slot() {
    let mut node = Node::start_with(NodeOptions {
        config_toml: Some(
            "connections_per_ip_max = 4\nconnections_max_idle_ms = 1500\n".to_string(),
        ),
        ..NodeOptions::default()
    });
    // The per-address limit refuses the fifth connection from this address at once.
    let mut idle: Vec<RawConn> = (0..4)
        .map(|_| RawConn::connect(node.addr()).expect("connect"))
        .collect();
    let mut extra = RawConn::connect(node.addr()).expect("TCP accept");
    assert!(
        extra.closed_by_peer(Duration::from_secs(2)),
        "a fifth connection from one address should be closed (connections_per_ip_max = 4)"
    );
    // Silent connections are closed after connections_max_idle_ms, which frees their places.
    let started = std::time::Instant::now();
    for c in &mut idle {
        assert!(
            c.closed_by_peer(CLOSE_TIMEOUT),
            "an idle connection should be closed after connections_max_idle_ms = 1500"
        );
    }
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "idle connections were closed before their idle time"
    );
    assert_serving(&mut node, "after the idle connections were closed");
}
