//! The embedding API as a user sees it: one in-process node on a free port in a temp dir.

mod common;

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic as KafkaNewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rivulet::{AdminListener, Config, KafkaListener, NewTopic, Node, TopicPartition};

fn config(dir: &std::path::Path) -> Config {
    common::config(dir, "127.0.0.1:0")
}

/// Status code and body of `GET path` on the admin endpoint (HTTP/1.0: the server closes).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("admin endpoint accepts");
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request sent");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// Topic names in this node's Metadata, asked through librdkafka.
async fn kafka_topics(bootstrap: String) -> Vec<String> {
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("consumer");
        let md = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .expect("Metadata answered");
        md.topics().iter().map(|t| t.name().to_string()).collect()
    })
    .await
    .expect("metadata task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_serves_kafka_and_restarts_from_its_data_dir() {
    let dir = tempfile::tempdir().expect("tempdir");

    let node = Node::builder(config(dir.path()))
        .start()
        .await
        .expect("node starts");
    assert_eq!(node.node_id(), 1);
    let addr = node
        .kafka_addr()
        .expect("the Kafka listener is on by default");
    assert_ne!(
        addr.port(),
        0,
        "the bound port is reported, not the requested 0"
    );
    let bootstrap = addr.to_string();
    let admin_http = node
        .admin_addr()
        .expect("the admin endpoint is on by default");
    assert_ne!(
        admin_http.port(),
        0,
        "the admin endpoint's bound port is reported"
    );
    let (status, body) = http_get(admin_http, "/ready").await;
    assert_eq!(status, 200, "a started node is ready: {body}");

    // A topic created over the Kafka protocol is in the handle's controller...
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("admin client");
    let created = admin
        .create_topics(
            [&KafkaNewTopic::new(
                "via-kafka",
                2,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        )
        .await
        .expect("CreateTopics answered");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let meta = node
        .controller()
        .topic("via-kafka")
        .expect("the controller knows the topic");
    assert_eq!(meta.partitions, 2);

    // ...and one created through the handle is visible to Kafka clients, and writable.
    node.controller()
        .create_topic(NewTopic {
            name: "via-handle".into(),
            partitions: Some(1),
            ..NewTopic::default()
        })
        .await
        .expect("create through the controller");
    let topics = kafka_topics(bootstrap.clone()).await;
    assert!(
        topics.iter().any(|t| t == "via-handle") && topics.iter().any(|t| t == "via-kafka"),
        "{topics:?}"
    );
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .create()
        .expect("producer");
    let delivery = producer
        .send(
            FutureRecord::to("via-handle").key("k").payload("v"),
            Duration::from_secs(10),
        )
        .await
        .expect("record acknowledged");
    assert_eq!((delivery.partition, delivery.offset), (0, 0));
    let replica = node
        .replicas()
        .get(&TopicPartition::new("via-handle", 0))
        .expect("the local replica is registered");
    assert!(replica.is_leader());
    // A replica handle holds its log open, and with it the store: let go before shutdown.
    drop(replica);

    node.shutdown().await.expect("graceful shutdown");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the Kafka listener is closed after shutdown"
    );
    assert!(
        std::net::TcpStream::connect(admin_http).is_err(),
        "the admin endpoint is closed after shutdown"
    );

    // The same process starts the node again on the same directory (the store's lock and the
    // actor names were released), this time without a Kafka listener; the topics survived.
    let node = Node::builder(config(dir.path()))
        .kafka_listener(KafkaListener::Disabled)
        .admin_listener(AdminListener::Disabled)
        .start()
        .await
        .unwrap_or_else(|e| panic!("node restarts: {e:?}"));
    assert_eq!(node.kafka_addr(), None);
    assert_eq!(node.admin_addr(), None);
    assert!(node.controller().topic("via-kafka").is_some());
    let tp = TopicPartition::new("via-handle", 0);
    let replica = node.replicas().get(&tp).expect("replica after restart");
    assert_eq!(
        replica.log.log_end_offset(),
        1,
        "the acknowledged record survived"
    );
    node.shutdown().await.expect("second shutdown");
}
