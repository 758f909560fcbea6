//! The native client against one embedded node: produce, consume, seek, admin, and keys in
//! the partitions librdkafka chooses. One test: one node per process (ARCHITECTURE.md).

mod common;

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rivulet::client::partition_for_key;
use rivulet::{
    Acks, Config, ConsumerConfig, NewTopic, Node, NodeClient, ProducerConfig, ProducerRecord,
    TopicPartition,
};

fn config(dir: &std::path::Path) -> Config {
    common::config(dir, "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_producer_consumer_and_admin_on_one_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::builder(config(dir.path())).start().await.unwrap();
    let admin = node.admin();
    admin
        .create_topic(NewTopic {
            name: "orders".into(),
            partitions: Some(4),
            ..NewTopic::default()
        })
        .await
        .unwrap();
    assert!(admin.list_topics().contains(&"orders".to_string()));
    let described = admin.describe_topic("orders").unwrap();
    assert_eq!(described.partitions.len(), 4);
    assert!(admin
        .describe_configs("orders")
        .unwrap()
        .iter()
        .any(|c| c.name == "retention.ms"));
    let status = admin.cluster_status();
    assert_eq!(status.partitions, 4);
    assert!(status.offline.is_empty(), "{status:?}");

    // Keyed records land where librdkafka's default partitioner puts them.
    let producer = node.producer(ProducerConfig {
        acks: Acks::All,
        ..ProducerConfig::default()
    });
    let before_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut sent = Vec::new();
    let mut pending = Vec::new();
    for i in 0..40 {
        let key = format!("key-{i}");
        let rx = producer
            .enqueue(
                ProducerRecord::new("orders", key.clone(), format!("value-{i}"))
                    .header("n", i.to_string()),
            )
            .unwrap();
        pending.push((key, rx));
    }
    for (key, rx) in pending {
        let md = rx.await.unwrap().unwrap();
        assert_eq!(md.partition, partition_for_key(key.as_bytes(), 4), "{key}");
        sent.push((key, md));
    }
    let bootstrap = node.kafka_addr().unwrap().to_string();
    let kafka: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    for (key, md) in sent.iter().take(10) {
        let delivery = kafka
            .send(
                FutureRecord::to("orders").key(key).payload("from rdkafka"),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(
            delivery.partition, md.partition,
            "librdkafka put {key} elsewhere"
        );
    }

    // An explicit partition, read back with headers.
    let md = producer
        .send(ProducerRecord::new("orders", "k", "explicit").partition(2))
        .await
        .unwrap();
    assert_eq!(md.partition, 2);

    let mut consumer = node.consumer(ConsumerConfig::default());
    consumer.assign_topic("orders").unwrap();
    let want = sent.len() + 10 + 1;
    let mut got = Vec::new();
    while got.len() < want {
        let batch = consumer.poll(Duration::from_secs(5)).await.unwrap();
        assert!(
            !batch.is_empty(),
            "poll timed out with {} of {want}",
            got.len()
        );
        got.extend(batch);
    }
    assert_eq!(got.len(), want);
    for (key, md) in &sent {
        let r = got
            .iter()
            .find(|r| r.partition == md.partition && r.offset == md.offset)
            .unwrap_or_else(|| panic!("{key} at {md:?} not read"));
        assert_eq!(r.key.as_deref(), Some(key.as_bytes()));
        let n = key.trim_start_matches("key-");
        assert_eq!(r.value.as_deref(), Some(format!("value-{n}").as_bytes()));
        assert_eq!(
            r.headers,
            vec![("n".to_string(), Some(n.as_bytes().to_vec()))]
        );
        assert!(r.timestamp >= before_ms);
    }

    // Seeks: beginning, end (a poll then waits for new records), timestamp.
    let tp = TopicPartition::new("orders", 2);
    consumer.assign([tp.clone()]);
    let end = consumer.seek_to_end(&tp).await.unwrap();
    assert!(end > 0);
    assert!(consumer
        .poll(Duration::from_millis(200))
        .await
        .unwrap()
        .is_empty());
    let late = producer
        .send(ProducerRecord::new("orders", "k", "late").partition(2))
        .await
        .unwrap();
    let polled = consumer.poll(Duration::from_secs(5)).await.unwrap();
    assert_eq!(polled.len(), 1);
    assert_eq!(
        (polled[0].offset, polled[0].value.as_deref()),
        (late.offset, Some(&b"late"[..]))
    );
    assert_eq!(consumer.seek_to_beginning(&tp).await.unwrap(), 0);
    assert_eq!(
        consumer.poll(Duration::from_secs(5)).await.unwrap()[0].offset,
        0
    );
    assert_eq!(
        consumer
            .seek_to_timestamp(&tp, late.timestamp)
            .await
            .unwrap(),
        late.offset
    );
    assert_eq!(
        consumer
            .seek_to_timestamp(&tp, late.timestamp + 60_000)
            .await
            .unwrap(),
        late.offset + 1
    );

    // Typed errors.
    let err = producer
        .send(ProducerRecord::new("missing", "k", "v"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            rivulet::ClientError::Partition(
                rivulet::client::ForwardError::UnknownTopicOrPartition { .. }
            )
        ),
        "{err:?}"
    );

    // acks=all with fewer in-sync replicas than min.insync.replicas: refused, typed; the
    // same record with acks=leader is written.
    admin
        .create_topic(NewTopic {
            name: "strict".into(),
            partitions: Some(1),
            configs: [("min.insync.replicas".to_string(), "2".to_string())].into(),
            ..NewTopic::default()
        })
        .await
        .unwrap();
    let err = producer
        .send(ProducerRecord::new("strict", "k", "v"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            rivulet::ClientError::Partition(rivulet::client::ForwardError::NotEnoughReplicas(_))
        ),
        "{err:?}"
    );
    let leader_only = node.producer(ProducerConfig {
        acks: Acks::Leader,
        ..ProducerConfig::default()
    });
    let md = leader_only
        .send(ProducerRecord::new("strict", "k", "v"))
        .await
        .unwrap();
    assert_eq!(md.offset, 0);
    leader_only.close().await;

    producer.close().await;
    drop(kafka);
    node.shutdown().await.unwrap();
}
