#!/usr/bin/env python3
"""Starts a transactional producer (init_transactions) and reports how that ended, as one JSON
line on stdout: {"ok": bool, "error": "..." or null, "fatal": bool or null, "seconds": float}.
Rivulet has no transactions yet, so the test expects a quick, non-retriable failure that says
so, instead of a retriable timeout after transaction.timeout / max.block.ms (30 s here).

  python3 tests/clients/transactional_init.py --bootstrap 127.0.0.1:9092 --client confluent
"""

import argparse
import json
import time


def confluent(bootstrap, timeout):
    from confluent_kafka import KafkaException, Producer

    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": "rivulet-txn-probe"})
    try:
        p.init_transactions(timeout)
        return {"ok": True, "error": None, "fatal": None}
    except KafkaException as e:
        err = e.args[0]
        return {"ok": False, "error": str(err), "fatal": err.fatal()}


def kafka_python(bootstrap, timeout):
    import kafka

    p = kafka.KafkaProducer(bootstrap_servers=bootstrap, transactional_id="rivulet-txn-probe",
                            max_block_ms=int(timeout * 1000))
    try:
        p.init_transactions()
        return {"ok": True, "error": None, "fatal": None}
    except Exception as e:  # noqa: BLE001 - the type is what the test reports
        return {"ok": False, "error": "%s: %s" % (type(e).__name__, e),
                "fatal": not getattr(e, "retriable", False)}
    finally:
        p.close(timeout=5)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--client", choices=["confluent", "kafka-python"], default="confluent")
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args()
    start = time.monotonic()
    run = confluent if args.client == "confluent" else kafka_python
    out = run(args.bootstrap, args.timeout)
    out["seconds"] = round(time.monotonic() - start, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
