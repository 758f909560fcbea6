//! A Rust service using Rivulet through an unmodified Kafka client (rdkafka / librdkafka).
//!
//! It creates the topic `orders` with 3 partitions, writes 1,000 keyed records with
//! `acks=all` and idempotence, then reads them back and checks that each key's records
//! arrived in order.
//!
//! ```text
//! cargo run --release -p rivulet-broker -- serve            # terminal 1
//! cargo run -p rivulet-examples -- 127.0.0.1:9092           # terminal 2
//! ```

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 3;
const RECORDS: usize = 1_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bootstrap = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9092".into());
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &bootstrap);

    let admin: AdminClient<DefaultClientContext> = cfg.create().context("admin client")?;
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1));
    for r in admin.create_topics([&topic], &AdminOptions::new()).await? {
        match r {
            Ok(t) => println!("created topic {t}"),
            Err((t, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                println!("topic {t} exists")
            }
            Err((t, e)) => bail!("could not create {t}: {e}"),
        }
    }

    let producer: FutureProducer = cfg
        .clone()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()
        .context("producer")?;
    let mut sends = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let key = format!("customer-{}", i % 10);
        let value = format!("order {i}");
        let producer = producer.clone();
        sends.push(async move {
            producer
                .send(
                    FutureRecord::to(TOPIC).key(&key).payload(&value),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
        });
    }
    let mut last_offsets: HashMap<i32, i64> = HashMap::new();
    for r in futures::future::join_all(sends).await {
        let delivery = r.context("delivery failed")?;
        let e = last_offsets.entry(delivery.partition).or_insert(-1);
        *e = (*e).max(delivery.offset);
    }
    println!("acknowledged {RECORDS} records: last offsets {last_offsets:?}");

    let consumer: BaseConsumer = cfg
        .clone()
        .set("group.id", "orders-quickstart")
        .set("enable.auto.commit", "false")
        .create()
        .context("consumer")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut per_key: HashMap<String, Vec<usize>> = HashMap::new();
    let mut seen = 0usize;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen < RECORDS && std::time::Instant::now() < deadline {
        let Some(msg) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let msg = msg?;
        let key = String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned();
        let value = String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned();
        let n: usize = value
            .trim_start_matches("order ")
            .parse()
            .unwrap_or(usize::MAX);
        per_key.entry(key).or_default().push(n);
        seen += 1;
    }
    if seen < RECORDS {
        bail!("read {seen} of {RECORDS} records within 30 s");
    }
    for (key, ns) in &per_key {
        if ns.windows(2).any(|w| w[0] >= w[1]) {
            bail!("records of {key} arrived out of order: {ns:?}");
        }
    }
    println!("read back {seen} records; every key's records are in order");
    Ok(())
}
