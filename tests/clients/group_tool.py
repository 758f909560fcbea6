#!/usr/bin/env python3
"""Helpers for consumer-group tests and measurements (confluent-kafka). Each subcommand prints
one JSON object on the last line of stdout; the module is also imported by
scripts/rebalance-time.py.

  create-topic --topic T --partitions P [--replication-factor R]
      creates T (an existing topic is fine if it has P partitions); {"topic":..,"partitions":P}
  produce --topic T --partitions P --count N
      N records per partition, to each partition explicitly (key "k-<p>-<i>"), acks=all;
      {"acked":..,"failed":..,"end_offsets":{"0":..,..}}
  end-offsets --topic T
      {"end_offsets":{"0":..,..}} (high watermarks)
  committed --group G --topic T
      the group's committed offsets: {"committed":{"0":offset or null,..}}

Common: --bootstrap HOST:PORT[,...]
"""

import argparse
import json
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def partitions_of(bootstrap, topic, timeout=10.0):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(topic=topic, timeout=timeout)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        raise SystemExit("topic %s: %r" % (topic, None if t is None else t.error))
    return sorted(t.partitions.keys())


def create_topic(bootstrap, topic, partitions, replication_factor=1, timeout=60.0):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(timeout=10)
    existing = md.topics.get(topic)
    if existing is None or existing.error is not None:
        fs = admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor)],
            operation_timeout=30,
            request_timeout=30,
        )
        try:
            fs[topic].result(timeout=timeout)
        except KafkaException as e:
            if "already exists" not in str(e).lower() and "TOPIC_ALREADY_EXISTS" not in str(e):
                raise
    deadline = time.monotonic() + timeout
    while True:
        md = admin.list_topics(topic=topic, timeout=10)
        t = md.topics.get(topic)
        if (
            t is not None
            and t.error is None
            and len(t.partitions) == partitions
            and all(p.leader >= 0 for p in t.partitions.values())
        ):
            return
        if time.monotonic() > deadline:
            raise SystemExit("topic %s not ready with %d partitions: %r" % (topic, partitions, t))
        time.sleep(0.1)


def end_offsets(bootstrap, topic, partitions=None, timeout=10.0):
    if partitions is None:
        partitions = partitions_of(bootstrap, topic)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "rivulet-group-tool", "enable.auto.commit": False})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1] for p in partitions}
    finally:
        c.close()


def committed(bootstrap, group, topic, partitions=None, timeout=10.0):
    """{partition: committed offset or None}. Does not join the group."""
    if partitions is None:
        partitions = partitions_of(bootstrap, topic)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        res = c.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout)
    finally:
        c.close()
    return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in res}


def producer(bootstrap, extra=None):
    conf = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "message.timeout.ms": 60000,
    }
    conf.update(extra or {})
    return Producer(conf)


def produce(bootstrap, topic, partitions, count, timeout=60.0):
    """count records to each partition; returns (acked, failed)."""
    p = producer(bootstrap)
    acked, failed = [0], []

    def cb(err, msg):
        if err is None:
            acked[0] += 1
        else:
            failed.append(str(err))

    for i in range(count):
        for part in partitions:
            while True:
                try:
                    p.produce(topic, key="k-%d-%d" % (part, i), value="v-%d-%d" % (part, i), partition=part,
                              on_delivery=cb)
                    break
                except BufferError:
                    p.poll(0.05)
            p.poll(0)
    left = p.flush(timeout)
    if left:
        failed.append("%d records not delivered within %.0f s" % (left, timeout))
    return acked[0], failed


class Feeder:
    """A producer thread writing `rate` records per second round-robin over `partitions` of
    `topic` (explicit partitions, so every partition keeps receiving records) until stop()."""

    def __init__(self, bootstrap, topic, partitions, rate):
        self.topic = topic
        self.partitions = list(partitions)
        self.rate = rate
        self.p = producer(bootstrap)
        self.sent = 0
        self.acked = 0
        self.failed = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self._thread.start()

    def _cb(self, err, msg):
        if err is None:
            self.acked += 1
        elif len(self.failed) < 100:
            self.failed.append(str(err))

    def _run(self):
        start = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - start) * self.rate)
            while self.sent < due and not self._stop.is_set():
                part = self.partitions[self.sent % len(self.partitions)]
                try:
                    self.p.produce(self.topic, key="f-%d" % self.sent, value="feed-%d" % self.sent, partition=part,
                                   on_delivery=self._cb)
                    self.sent += 1
                except BufferError:
                    break
            self.p.poll(0.005)

    def stop(self, timeout=60.0):
        self._stop.set()
        self._thread.join()
        left = self.p.flush(timeout)
        if left:
            self.failed.append("%d records not delivered within %.0f s" % (left, timeout))
        return {"sent": self.sent, "acked": self.acked, "failed": self.failed}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["create-topic", "produce", "end-offsets", "committed"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group")
    ap.add_argument("--partitions", type=int)
    ap.add_argument("--replication-factor", type=int, default=1)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()
    if args.command == "create-topic":
        if not args.partitions:
            ap.error("create-topic needs --partitions")
        create_topic(args.bootstrap, args.topic, args.partitions, args.replication_factor, args.timeout)
        print(json.dumps({"topic": args.topic, "partitions": args.partitions}))
    elif args.command == "produce":
        parts = list(range(args.partitions)) if args.partitions else partitions_of(args.bootstrap, args.topic)
        acked, failed = produce(args.bootstrap, args.topic, parts, args.count, args.timeout)
        ends = end_offsets(args.bootstrap, args.topic, parts)
        print(json.dumps({"acked": acked, "failed": failed[:20], "end_offsets": {str(p): o for p, o in ends.items()}}))
        if failed:
            sys.exit(1)
    elif args.command == "end-offsets":
        ends = end_offsets(args.bootstrap, args.topic)
        print(json.dumps({"end_offsets": {str(p): o for p, o in ends.items()}}))
    else:
        if not args.group:
            ap.error("committed needs --group")
        offs = committed(args.bootstrap, args.group, args.topic, timeout=args.timeout)
        print(json.dumps({"committed": {str(p): o for p, o in offs.items()}}))


if __name__ == "__main__":
    main()
