#!/usr/bin/env python3
"""read_committed against read_uncommitted with confluent-kafka (librdkafka): a transactional
producer commits one transaction (c1, c2), aborts one (a1, a2) and leaves a third open (o1);
then a read_committed and a read_uncommitted consumer read partition 0 from the start, and the
watermarks each isolation level sees are taken (librdkafka's ListOffsets uses the consumer's
isolation level: the last stable offset for read_committed). Then the open transaction is
committed and the read_committed consumer reads on. Prints one JSON line on stdout:
{"rc_before": [keys], "ru": [keys], "rc_high_before": int, "ru_high": int,
 "rc_after": [keys], "errors": [str], "seconds": float}

  python3 tests/clients/txn_isolation.py --bootstrap 127.0.0.1:9092 --topic t --id tx-1
"""

import argparse
import json
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition


def consumer(bootstrap, isolation):
    return Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-%s" % time.time(),
                     "enable.auto.commit": False, "isolation.level": isolation,
                     "auto.offset.reset": "earliest"})


def read_keys(c, topic, quiet_s, limit_s, want=None):
    """Keys read from partition 0 until `want` keys are in or nothing new came for quiet_s."""
    keys = []
    deadline = time.monotonic() + limit_s
    last_new = time.monotonic()
    while time.monotonic() < deadline:
        if want is not None and len(keys) >= want:
            break
        if want is None and time.monotonic() - last_new > quiet_s:
            break
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            raise KafkaException(m.error())
        keys.append(m.key().decode())
        last_new = time.monotonic()
    return keys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--id", required=True)
    args = ap.parse_args()
    start = time.monotonic()
    out = {"errors": []}
    p = Producer({"bootstrap.servers": args.bootstrap, "transactional.id": args.id,
                  "transaction.timeout.ms": 60000, "message.timeout.ms": 20000})
    p.init_transactions(30)
    for keys, end in ((["c1", "c2"], p.commit_transaction), (["a1", "a2"], p.abort_transaction),
                      (["o1"], None)):
        p.begin_transaction()
        for k in keys:
            p.produce(args.topic, key=k.encode(), value=b"v", partition=0)
        if p.flush(20):
            out["errors"].append("records of %s still queued" % keys)
        if end is not None:
            end(30)

    tp = TopicPartition(args.topic, 0, 0)
    rc = consumer(args.bootstrap, "read_committed")
    rc.assign([tp])
    ru = consumer(args.bootstrap, "read_uncommitted")
    ru.assign([tp])
    out["ru"] = read_keys(ru, args.topic, 3, 30, want=5)
    # The open transaction holds read_committed back: give it time to (wrongly) read more.
    out["rc_before"] = read_keys(rc, args.topic, 3, 30)
    out["rc_high_before"] = rc.get_watermark_offsets(TopicPartition(args.topic, 0), 10, cached=False)[1]
    out["ru_high"] = ru.get_watermark_offsets(TopicPartition(args.topic, 0), 10, cached=False)[1]

    p.commit_transaction(30)
    out["rc_after"] = read_keys(rc, args.topic, 3, 30, want=1)
    rc.close()
    ru.close()
    out["seconds"] = round(time.monotonic() - start, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
