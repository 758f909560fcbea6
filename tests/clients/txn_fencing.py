#!/usr/bin/env python3
"""Zombie fencing with confluent-kafka (librdkafka): two transactional producers with one
transactional.id. The second init_transactions() must fence the first, whose next
transactional operation then fails with a fatal "fenced" error; the second produces inside a
transaction. Prints one JSON line on stdout:
{"init1": err|null, "init2": err|null, "zombie_error": str|null, "zombie_fatal": bool|null,
 "produced": bool, "seconds": float}

  python3 tests/clients/txn_fencing.py --bootstrap 127.0.0.1:9092 --topic t --id tx-1
"""

import argparse
import json
import time

from confluent_kafka import KafkaException, Producer


def producer(bootstrap, txn_id):
    return Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id,
                     "transaction.timeout.ms": 60000, "message.timeout.ms": 20000})


def attempt(fn):
    """None on success, else (message, fatal)."""
    try:
        fn()
        return None
    except KafkaException as e:
        err = e.args[0]
        return (str(err), err.fatal())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--id", required=True)
    args = ap.parse_args()
    start = time.monotonic()
    out = {"init1": None, "init2": None, "zombie_error": None, "zombie_fatal": None,
           "produced": False}

    first = producer(args.bootstrap, args.id)
    r = attempt(lambda: first.init_transactions(30))
    out["init1"] = r and r[0]
    second = producer(args.bootstrap, args.id)
    r = attempt(lambda: second.init_transactions(30))
    out["init2"] = r and r[0]

    # The zombie: its AddPartitionsToTxn (sent when the record is flushed) is refused.
    def zombie():
        first.begin_transaction()
        first.produce(args.topic, key=b"zombie", value=b"must not be accepted")
        left = first.flush(20)
        if left:
            raise RuntimeError("%d record(s) still queued" % left)
        first.commit_transaction(20)
    try:
        r = attempt(zombie)
    except RuntimeError as e:
        r = (str(e), False)
    if r:
        out["zombie_error"], out["zombie_fatal"] = r

    # The live incarnation adds a partition and writes inside its transaction.
    delivered = []
    second.begin_transaction()
    second.produce(args.topic, key=b"live", value=b"inside a transaction",
                   on_delivery=lambda err, msg: delivered.append(err is None))
    second.flush(20)
    out["produced"] = delivered == [True]
    out["seconds"] = round(time.monotonic() - start, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
