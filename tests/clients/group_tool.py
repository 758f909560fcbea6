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
  assign-commit --group G --topic T --offset O [--protocol classic|consumer]
      a consumer that never joins: assign() of partition 0, a synchronous commit of O, then
      committed(); {"error":null or "...","committed":offset or null}
  regex-assignment --group G --topic PATTERN [--protocol ...] [--timeout S]
      subscribes to "^PATTERN" and polls until it has an assignment, a fatal error, or the
      timeout; {"assigned":["topic",..],"errors":["...",..],"fatal":bool}
  stalled-member --group G --topic T [--max-poll-interval-ms MS] [--timeout S]
      two group.protocol=consumer members of G on T (every partition of it); once both own
      partitions, member A stops polling (its process stays alive) and B keeps polling;
      {"stalled_s": seconds until B owned every partition (null: not within the timeout),
       "a_owned": [..], "errors": [..]}

Common: --bootstrap HOST:PORT[,...]
"""

import argparse
import json
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
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


def assign_commit(bootstrap, group, topic, offset, protocol, timeout=30.0):
    """Commits `offset` for partition 0 from a consumer that uses assign() and never joins."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": protocol,
        "enable.auto.commit": False,
    })
    try:
        c.assign([TopicPartition(topic, 0, offset)])
        try:
            res = c.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
        except KafkaException as e:
            return {"error": str(e), "committed": None}
        errs = [str(tp.error) for tp in res if tp.error is not None]
        if errs:
            return {"error": "; ".join(errs), "committed": None}
        got = c.committed([TopicPartition(topic, 0)], timeout=timeout)
        return {"error": None, "committed": got[0].offset if got[0].offset >= 0 else None}
    finally:
        c.close()


def regex_assignment(bootstrap, group, pattern, protocol, timeout=30.0):
    """Subscribes to the regex `pattern`; returns the assigned topics and the errors seen."""
    errors = []
    fatal = [False]

    def on_error(err):
        errors.append(str(err))
        if err.fatal() or err.code() == KafkaError._FATAL:
            fatal[0] = True

    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": protocol,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "error_cb": on_error,
    })
    assigned = []
    try:
        c.subscribe(["^" + pattern])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not fatal[0]:
            msg = c.poll(0.2)
            if msg is not None and msg.error() is not None:
                errors.append(str(msg.error()))
                if msg.error().fatal() or msg.error().code() == KafkaError._FATAL:
                    fatal[0] = True
            assigned = sorted({tp.topic for tp in c.assignment()})
            if assigned:
                break
    except KafkaException as e:
        errors.append(str(e))
        fatal[0] = True
    finally:
        c.close()
    return {"assigned": assigned, "errors": errors[:20], "fatal": fatal[0]}


def stalled_member(bootstrap, group, topic, max_poll_interval_ms, timeout=60.0):
    """How long a member that stops polling keeps its partitions from the other member."""
    partitions = partitions_of(bootstrap, topic)
    errors = []

    def member(name):
        c = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "group.protocol": "consumer",
            "client.id": name,
            "max.poll.interval.ms": max_poll_interval_ms,
            "auto.offset.reset": "earliest",
            "error_cb": lambda err: errors.append("%s: %s" % (name, err)),
        })
        c.subscribe([topic])
        return c

    a, b = member("A"), member("B")
    start = time.monotonic()
    stalled_at, a_owned, took = None, [], None
    while time.monotonic() - start < timeout:
        b.poll(0.1)
        if stalled_at is None:
            a.poll(0.1)
            if a.assignment() and b.assignment():
                stalled_at = time.monotonic()
                a_owned = sorted(tp.partition for tp in a.assignment())
                log("A stops polling, owning %s" % a_owned)
        elif len(b.assignment()) == len(partitions):
            took = time.monotonic() - stalled_at
            break
    b.close()
    a.close()
    return {"stalled_s": took, "a_owned": a_owned, "errors": errors[:20]}


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
    ap.add_argument("command", choices=["create-topic", "produce", "end-offsets", "committed", "assign-commit",
                                        "regex-assignment", "stalled-member"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group")
    ap.add_argument("--partitions", type=int)
    ap.add_argument("--replication-factor", type=int, default=1)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--protocol", choices=["classic", "consumer"], default="classic")
    ap.add_argument("--max-poll-interval-ms", type=int, default=3000)
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
    elif args.command == "assign-commit":
        if not args.group:
            ap.error("assign-commit needs --group")
        print(json.dumps(assign_commit(args.bootstrap, args.group, args.topic, args.offset, args.protocol,
                                       args.timeout)))
    elif args.command == "regex-assignment":
        if not args.group:
            ap.error("regex-assignment needs --group")
        print(json.dumps(regex_assignment(args.bootstrap, args.group, args.topic, args.protocol, args.timeout)))
    elif args.command == "stalled-member":
        if not args.group:
            ap.error("stalled-member needs --group")
        print(json.dumps(stalled_member(args.bootstrap, args.group, args.topic, args.max_poll_interval_ms,
                                        args.timeout)))
    else:
        if not args.group:
            ap.error("committed needs --group")
        offs = committed(args.bootstrap, args.group, args.topic, timeout=args.timeout)
        print(json.dumps({"committed": {str(p): o for p, o in offs.items()}}))


if __name__ == "__main__":
    main()
