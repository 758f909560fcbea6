#!/usr/bin/env python3
"""Exactly-once with confluent-kafka (librdkafka): transactional producers, read_committed and
read_uncommitted readers, and a consume-transform-produce job. Each mode prints one JSON line
on stdout (its last line); tests/transactions.rs checks it.

  txn_eos.py produce   --bootstrap B --topic T --id ID --transactions N --per-txn K --abort-every A
      N transactions of K records (keys "<ID>-<pid>-<txn>-<i>", over the partitions); every
      A-th one (1-based) is aborted. {"committed": [keys], "aborted": [keys]}
  txn_eos.py hang      --bootstrap B --topic T --id ID --per-txn K --timeout-ms MS
      opens a transaction, writes K records, and exits without ending it (a producer that dies
      mid-transaction). {"pending": [keys]}
  txn_eos.py read      --bootstrap B --topic T --isolation read_committed|read_uncommitted
                       --expect N [--idle-ms MS] [--max-ms MS]
      reads every partition from the start until N records came and nothing more for idle-ms
      (or max-ms passed). {"keys": [keys in arrival order], "seconds": s}
  txn_eos.py isolation --bootstrap B --topic T --id ID
      on partition 0: commits (c1, c2), aborts (a1, a2), leaves (o1) open; reads it with a
      read_uncommitted and a read_committed consumer and takes the latest offset each sees
      (librdkafka's ListOffsets uses the consumer's isolation level); then commits o1 and
      reads on with read_committed. {"ru": [keys], "rc_before": [keys], "ru_high": n,
      "rc_high_before": n, "rc_after": [keys]}
  txn_eos.py transform --bootstrap B --input I --output O --group G --id ID --batch K
      consume-transform-produce: a first batch is processed in a transaction that is aborted
      (the group's offsets must stay uncommitted), then every input record is copied to O as
      "out-<key>" inside transactions that also commit the group's offsets
      (send_offsets_to_transaction). {"offsets_after_abort": {p: off}, "offsets_after": {p:
      off}, "consumed_until": {p: offset after the last record}, "high_watermarks": {p: hw},
      "inputs": n, "transactions": t}
"""

import argparse
import json
import os
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition


def producer(bootstrap, txn_id, timeout_ms=60000):
    return Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id,
                     "transaction.timeout.ms": timeout_ms,
                     "message.timeout.ms": min(timeout_ms, 30000),
                     "linger.ms": 5})


def partitions_of(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "txn-eos-meta"})
    try:
        md = c.list_topics(topic, timeout=20)
        return sorted(md.topics[topic].partitions.keys())
    finally:
        c.close()


def produce(args):
    parts = partitions_of(args.bootstrap, args.topic)
    p = producer(args.bootstrap, args.id)
    p.init_transactions(30)
    out = {"committed": [], "aborted": []}
    for t in range(1, args.transactions + 1):
        keys = ["%s-%d-%d-%d" % (args.id, os.getpid(), t, i) for i in range(args.per_txn)]
        p.begin_transaction()
        for i, k in enumerate(keys):
            p.produce(args.topic, key=k.encode(), value=("v-" + k).encode(),
                      partition=parts[i % len(parts)])
        if args.abort_every and t % args.abort_every == 0:
            p.flush(30)  # the records are in the log before the abort marker
            p.abort_transaction(30)
            out["aborted"] += keys
        else:
            p.commit_transaction(30)
            out["committed"] += keys
    print(json.dumps(out))


def hang(args):
    parts = partitions_of(args.bootstrap, args.topic)
    p = producer(args.bootstrap, args.id, args.timeout_ms)
    p.init_transactions(30)
    p.begin_transaction()
    keys = ["%s-hung-%d" % (args.id, i) for i in range(args.per_txn)]
    delivered = []
    for i, k in enumerate(keys):
        p.produce(args.topic, key=k.encode(), value=b"never committed",
                  partition=parts[i % len(parts)],
                  on_delivery=lambda err, msg: delivered.append(err is None))
    p.flush(30)
    print(json.dumps({"pending": keys, "delivered": sum(delivered)}), flush=True)
    # Dies without EndTxn, without closing: only the transaction timeout can end it.
    os._exit(0)


def reader(bootstrap, topic, parts, isolation):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "txn-eos-reader",
                  "enable.auto.commit": False, "isolation.level": isolation})
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    return c


def poll_keys(c, expect, idle_ms, max_ms):
    """Keys polled until `expect` came and nothing more for idle_ms, or max_ms passed."""
    start = time.monotonic()
    keys = []
    last = time.monotonic()
    while True:
        now = time.monotonic()
        if now - start > max_ms / 1000:
            break
        if len(keys) >= expect and now - last > idle_ms / 1000:
            break
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            raise KafkaException(m.error())
        keys.append(m.key().decode() if m.key() else "")
        last = time.monotonic()
    return keys


def read(args):
    parts = partitions_of(args.bootstrap, args.topic)
    c = reader(args.bootstrap, args.topic, parts, args.isolation)
    start = time.monotonic()
    keys = poll_keys(c, args.expect, args.idle_ms, args.max_ms)
    c.close()
    print(json.dumps({"keys": keys, "seconds": round(time.monotonic() - start, 2)}))


def isolation(args):
    p = producer(args.bootstrap, args.id)
    p.init_transactions(30)
    for keys, end in ((["c1", "c2"], p.commit_transaction), (["a1", "a2"], p.abort_transaction),
                      (["o1"], None)):
        p.begin_transaction()
        for k in keys:
            p.produce(args.topic, key=k.encode(), value=b"v", partition=0)
        p.flush(30)
        if end is not None:
            end(30)
    out = {}
    ru = reader(args.bootstrap, args.topic, [0], "read_uncommitted")
    rc = reader(args.bootstrap, args.topic, [0], "read_committed")
    out["ru"] = poll_keys(ru, 5, args.idle_ms, args.max_ms)
    # The open transaction holds read_committed back: idle_ms for it to (wrongly) read more.
    out["rc_before"] = poll_keys(rc, 2, args.idle_ms, args.max_ms)
    tp = TopicPartition(args.topic, 0)
    out["ru_high"] = ru.get_watermark_offsets(tp, 10, cached=False)[1]
    out["rc_high_before"] = rc.get_watermark_offsets(tp, 10, cached=False)[1]
    p.commit_transaction(30)
    out["rc_after"] = poll_keys(rc, 1, args.idle_ms, args.max_ms)
    rc.close()
    ru.close()
    print(json.dumps(out))


def committed_offsets(consumer, topic, parts):
    """The group's committed offsets. Right after commit_transaction() the markers may still be
    on their way: a read_committed consumer's fetch of them is then UNSTABLE_OFFSET_COMMIT
    (KIP-447), which librdkafka hands to the application; retried here for up to 20 s."""
    deadline = time.monotonic() + 20
    while True:
        try:
            got = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=20)
            return {str(tp.partition): tp.offset for tp in got}
        except KafkaException as e:
            if e.args[0].code() != KafkaError.UNSTABLE_OFFSET_COMMIT or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def poll_batch(consumer, n, wait_s):
    """Up to n records, waiting at most wait_s for the first."""
    out = []
    deadline = time.monotonic() + wait_s
    while len(out) < n and time.monotonic() < deadline:
        m = consumer.poll(0.2)
        if m is None:
            if out:
                break
            continue
        if m.error():
            raise KafkaException(m.error())
        out.append(m)
    return out


def transform(args):
    parts = partitions_of(args.bootstrap, args.input)
    c = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group,
                  "enable.auto.commit": False, "isolation.level": "read_committed",
                  "auto.offset.reset": "earliest"})
    c.subscribe([args.input])
    p = producer(args.bootstrap, args.id)
    p.init_transactions(30)

    def process(batch, commit):
        p.begin_transaction()
        for m in batch:
            p.produce(args.output, key=("out-" + m.key().decode()).encode(), value=m.value(),
                      partition=m.partition())
        p.send_offsets_to_transaction(c.position(c.assignment()),
                                      c.consumer_group_metadata(), 30)
        if commit:
            p.commit_transaction(30)
        else:
            p.flush(30)
            p.abort_transaction(30)

    out = {}
    first = poll_batch(c, args.batch, 60)
    if not first:
        raise RuntimeError("no input record within 60 s")
    process(first, commit=False)
    out["offsets_after_abort"] = committed_offsets(c, args.input, parts)
    # The aborted batch is processed again: back to the committed positions (none: the start).
    for tp in c.assignment():
        c.seek(TopicPartition(tp.topic, tp.partition, 0))
    inputs = 0
    transactions = 0
    consumed = {}
    while inputs < args.inputs:
        batch = poll_batch(c, args.batch, 30)
        if not batch:
            raise RuntimeError("input ran dry after %d of %d records" % (inputs, args.inputs))
        process(batch, commit=True)
        inputs += len(batch)
        transactions += 1
        for m in batch:
            consumed[str(m.partition())] = max(consumed.get(str(m.partition()), 0), m.offset() + 1)
    out["offsets_after"] = committed_offsets(c, args.input, parts)
    # Offsets count the markers too: a committed position lies between the offset after the
    # last record consumed and the partition's end.
    out["consumed_until"] = consumed
    out["high_watermarks"] = {
        str(p): c.get_watermark_offsets(TopicPartition(args.input, p), timeout=10)[1]
        for p in parts}
    out["inputs"] = inputs
    out["transactions"] = transactions
    c.close()
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["produce", "hang", "read", "isolation", "transform"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic")
    ap.add_argument("--id")
    ap.add_argument("--transactions", type=int, default=1)
    ap.add_argument("--per-txn", type=int, default=5)
    ap.add_argument("--abort-every", type=int, default=0)
    ap.add_argument("--timeout-ms", type=int, default=60000)
    ap.add_argument("--isolation", default="read_committed")
    ap.add_argument("--expect", type=int, default=0)
    ap.add_argument("--idle-ms", type=int, default=2000)
    ap.add_argument("--max-ms", type=int, default=30000)
    ap.add_argument("--input")
    ap.add_argument("--output")
    ap.add_argument("--group")
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--inputs", type=int, default=0)
    args = ap.parse_args()
    {"produce": produce, "hang": hang, "read": read, "isolation": isolation,
     "transform": transform}[args.mode](args)


if __name__ == "__main__":
    main()
