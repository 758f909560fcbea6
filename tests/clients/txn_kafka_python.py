#!/usr/bin/env python3
"""Transactions with kafka-python (3.x): one committed and one aborted transaction, each also
sending a group offset with send_offsets_to_transaction. Prints one JSON line on stdout:
{"committed": [keys], "aborted": [keys], "group_offset": committed offset of the group}

  python3 tests/clients/txn_kafka_python.py --bootstrap 127.0.0.1:9092 --topic t --id tx --group g
"""

import argparse
import json
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--id", required=True)
    ap.add_argument("--group", required=True)
    args = ap.parse_args()
    p = KafkaProducer(bootstrap_servers=args.bootstrap, transactional_id=args.id)
    p.init_transactions()
    tp = TopicPartition(args.topic, 0)
    out = {"committed": [], "aborted": []}
    for name, offset, commit in (("kp-commit", 7, True), ("kp-abort", 9, False)):
        p.begin_transaction()
        keys = ["%s-%s-%d" % (args.id, name, i) for i in range(3)]
        for k in keys:
            p.send(args.topic, key=k.encode(), value=b"v", partition=0)
        p.send_offsets_to_transaction({tp: OffsetAndMetadata(offset, "", -1)}, args.group)
        if commit:
            p.commit_transaction()
            out["committed"] += keys
        else:
            p.flush()
            p.abort_transaction()
            out["aborted"] += keys
    p.close()
    # The commit's offset (7), never the abort's (9). Right after the commit its marker may
    # still be on the way to the offsets partition: wait for it to show.
    c = KafkaConsumer(bootstrap_servers=args.bootstrap, group_id=args.group,
                      enable_auto_commit=False)
    deadline = time.monotonic() + 20
    got = c.committed(tp)
    while got is None and time.monotonic() < deadline:
        time.sleep(0.1)
        got = c.committed(tp)
    c.close()
    out["group_offset"] = got
    print(json.dumps(out))


if __name__ == "__main__":
    main()
