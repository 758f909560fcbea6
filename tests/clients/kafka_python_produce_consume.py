#!/usr/bin/env python3
"""Produce keyed records with kafka-python (a pure-Python client), read them back, check them.

Same modes, options and checks as confluent_produce_consume.py (see ackcheck.py); this client
shares no code with librdkafka, so it exercises different request versions and batching.
The last line of stdout is a JSON summary; the exit status is non-zero on any mismatch.
"""

import argparse
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

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
    p.add_argument("--acked", metavar="FILE")
    p.add_argument("--allow-failures", action="store_true")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for each phase")
    return p.parse_args()


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def create_topic(args):
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, request_timeout_ms=int(args.timeout * 1000))
    config = dict(kv.split("=", 1) for kv in args.topic_config)
    admin.create_topics(
        {args.topic: {"num_partitions": args.partitions, "replication_factor": 1, "configs": config}},
        timeout_ms=30000,
    )
    deadline = time.monotonic() + args.timeout
    while True:
        topics = admin.describe_topics([args.topic])
        t = topics[0] if topics else None
        if t is not None and t.get("error_code", 0) == 0 and len(t.get("partitions", [])) == args.partitions:
            break
        if time.monotonic() > deadline:
            raise SystemExit("topic %s not visible with %d partitions: %r" % (args.topic, args.partitions, t))
        time.sleep(0.1)
    admin.close()


def produce(args):
    producer = KafkaProducer(
        bootstrap_servers=args.bootstrap,
        acks="all",
        enable_idempotence=not args.no_idempotence,
        linger_ms=5,
        request_timeout_ms=min(30000, int(args.timeout * 1000)),
        delivery_timeout_ms=int(args.timeout * 1000) + 30000,
    )
    acked, failed = [], []

    def on_ok(seq, key, value):
        return lambda md: acked.append(
            {"seq": seq, "partition": md.partition, "offset": md.offset, "key": key, "value": value}
        )

    def on_err(seq):
        return lambda exc: failed.append({"seq": seq, "error": repr(exc)})

    for seq in range(args.records):
        key = ackcheck.key_for(seq, args.distinct_keys)
        value = ackcheck.value_for(seq, args.value_bytes)
        fut = producer.send(args.topic, key=key.encode(), value=value.encode())
        fut.add_callback(on_ok(seq, key, value))
        fut.add_errback(on_err(seq))
    try:
        producer.flush(timeout=args.timeout)
    except Exception as exc:  # kafka-python raises KafkaTimeoutError here
        failed.append({"seq": -1, "error": "flush: %r" % exc})
    producer.close(timeout=10)
    return acked, failed


def consume(args):
    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    deadline = time.monotonic() + args.timeout
    partitions = None
    while not partitions:
        partitions = consumer.partitions_for_topic(args.topic)
        if time.monotonic() > deadline:
            raise SystemExit("topic %s has no partitions in metadata" % args.topic)
        if not partitions:
            time.sleep(0.1)
    tps = [TopicPartition(args.topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    begin = consumer.beginning_offsets(tps)
    for tp, lo in begin.items():
        if lo != 0:
            raise SystemExit("partition %d log start offset is %d, expected 0" % (tp.partition, lo))
    high = {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
    consumed = {p: [] for p in sorted(partitions)}
    pending = {p for p, hi in high.items() if hi > 0}
    while pending:
        if time.monotonic() > deadline:
            raise SystemExit(
                "consume timed out; last offsets read: %r, high watermarks: %r"
                % ({p: (consumed[p][-1][0] if consumed[p] else None) for p in pending}, high)
            )
        batches = consumer.poll(timeout_ms=500)
        for tp, records in batches.items():
            for r in records:
                key = r.key.decode() if r.key is not None else None
                value = r.value.decode() if r.value is not None else None
                consumed[tp.partition].append((r.offset, key, value))
                if r.offset + 1 >= high[tp.partition]:
                    pending.discard(tp.partition)
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
            ackcheck.finish(ackcheck.summary("kafka-python", args.topic, acked, failed, {}, problems, sw.timings))

    sw.start("consume")
    consumed = consume(args)
    sw.stop()
    problems = ackcheck.verify(acked, consumed, exact=(args.mode == "run"))
    if failed and not args.allow_failures:
        problems.insert(0, "%d delivery failures, e.g. %r" % (len(failed), failed[:3]))
    if args.mode == "run" and len(acked) != args.records:
        problems.insert(0, "only %d of %d records acknowledged" % (len(acked), args.records))
    ackcheck.finish(ackcheck.summary("kafka-python", args.topic, acked, failed, consumed, problems, sw.timings))


if __name__ == "__main__":
    main()
