#!/usr/bin/env python3
"""Produce keyed records with confluent-kafka (librdkafka), read them back, check them.

Modes:
  run      create the topic, produce, consume everything, verify (default)
  produce  create the topic (unless --no-create), produce, save the acknowledged records to
           --acked FILE; with --allow-failures, failed deliveries are recorded, not fatal
  check    read everything back and verify against the acknowledged records in --acked FILE
           (used after a node restart)

The last line of stdout is a JSON summary; the exit status is non-zero on any mismatch.
See ackcheck.py for the checks.
"""

import argparse
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import ackcheck


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--mode", choices=["run", "produce", "check"], default="run")
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--records", type=int, default=1000)
    p.add_argument("--value-bytes", type=int, default=64)
    p.add_argument("--distinct-keys", type=int, default=997)
    p.add_argument("--topic-config", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-create", action="store_true")
    p.add_argument("--no-idempotence", action="store_true")
    p.add_argument("--compression", default="none", help="producer compression.type")
    p.add_argument("--acked", metavar="FILE", help="where produce saves / check reads the acknowledged records")
    p.add_argument("--allow-failures", action="store_true")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for each phase")
    return p.parse_args()


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def create_topic(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    config = dict(kv.split("=", 1) for kv in args.topic_config)
    futures = admin.create_topics(
        [NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1, config=config)],
        operation_timeout=30,
        request_timeout=30,
    )
    futures[args.topic].result(timeout=args.timeout)
    deadline = time.monotonic() + args.timeout
    while True:
        md = admin.list_topics(topic=args.topic, timeout=10)
        t = md.topics.get(args.topic)
        if t is not None and t.error is None and len(t.partitions) == args.partitions:
            return
        if time.monotonic() > deadline:
            raise SystemExit("topic %s not visible with %d partitions in metadata: %r" % (args.topic, args.partitions, t))
        time.sleep(0.1)


def produce(args):
    conf = {
        "bootstrap.servers": args.bootstrap,
        "acks": "all",
        "enable.idempotence": not args.no_idempotence,
        "linger.ms": 5,
        "message.timeout.ms": int(args.timeout * 1000),
        "compression.type": args.compression,
    }
    producer = Producer(conf)
    acked, failed = [], []

    def on_delivery(seq, key, value):
        def cb(err, msg):
            if err is not None:
                failed.append({"seq": seq, "error": str(err)})
            else:
                acked.append(
                    {"seq": seq, "partition": msg.partition(), "offset": msg.offset(), "key": key, "value": value}
                )

        return cb

    for seq in range(args.records):
        key = ackcheck.key_for(seq, args.distinct_keys)
        value = ackcheck.value_for(seq, args.value_bytes)
        while True:
            try:
                producer.produce(args.topic, key=key, value=value, on_delivery=on_delivery(seq, key, value))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(args.timeout)
    if remaining:
        failed.append({"seq": -1, "error": "%d records still in flight after flush timeout" % remaining})
    return acked, failed


def consume(args, partitions):
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            # librdkafka insists on a group id; nothing is committed and no group is joined.
            "group.id": "rivulet-test-checker",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "error",
            "enable.partition.eof": True,
        }
    )
    high = {}
    for p in partitions:
        lo, hi = consumer.get_watermark_offsets(TopicPartition(args.topic, p), timeout=10)
        if lo != 0:
            raise SystemExit("partition %d log start offset is %d, expected 0" % (p, lo))
        high[p] = hi
    consumed = {p: [] for p in partitions}
    consumer.assign([TopicPartition(args.topic, p, 0) for p in partitions if high[p] > 0])
    pending = {p for p in partitions if high[p] > 0}
    deadline = time.monotonic() + args.timeout
    while pending:
        if time.monotonic() > deadline:
            raise SystemExit(
                "consume timed out; positions: %r, high watermarks: %r"
                % ({p: (consumed[p][-1][0] if consumed[p] else None) for p in pending}, high)
            )
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error() is not None:
            if msg.error().code() == KafkaError._PARTITION_EOF:
                if msg.offset() >= high[msg.partition()]:
                    pending.discard(msg.partition())
                continue
            raise KafkaException(msg.error())
        p = msg.partition()
        key = msg.key().decode() if msg.key() is not None else None
        value = msg.value().decode() if msg.value() is not None else None
        consumed[p].append((msg.offset(), key, value))
        if msg.offset() + 1 >= high[p]:
            pending.discard(p)
    consumer.close()
    return consumed


def main():
    args = parse_args()
    sw = ackcheck.Stopwatch()
    acked, failed = [], []
    if args.mode == "check":
        topic, acked, failed = ackcheck.load_acked(args.acked)
        assert topic == args.topic, (topic, args.topic)
    else:
        if not args.no_create:
            sw.start("create")
            create_topic(args)
            sw.stop()
        sw.start("produce")
        acked, failed = produce(args)
        sw.stop()
        log("produced: %d acknowledged, %d failed" % (len(acked), len(failed)))
        if args.mode == "produce":
            ackcheck.save_acked(args.acked, args.topic, acked, failed)
            problems = [] if (args.allow_failures or not failed) else ["delivery failures: %r" % failed[:5]]
            ackcheck.finish(ackcheck.summary("confluent-kafka", args.topic, acked, failed, {}, problems, sw.timings))

    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    md = admin.list_topics(topic=args.topic, timeout=10)
    partitions = sorted(md.topics[args.topic].partitions.keys())
    sw.start("consume")
    consumed = consume(args, partitions)
    sw.stop()
    problems = ackcheck.verify(acked, consumed, exact=(args.mode == "run"))
    if failed and not args.allow_failures:
        problems.insert(0, "%d delivery failures, e.g. %r" % (len(failed), failed[:3]))
    if args.mode == "run" and len(acked) != args.records:
        problems.insert(0, "only %d of %d records acknowledged" % (len(acked), args.records))
    ackcheck.finish(ackcheck.summary("confluent-kafka", args.topic, acked, failed, consumed, problems, sw.timings))


if __name__ == "__main__":
    main()
