"""Shared bookkeeping for the Python client scripts: what was acknowledged, and whether
what a consumer reads back agrees with it.

An acknowledged record is (seq, partition, offset, key, value). `seq` is the order in
which the producer handed the record to its client library; `value` embeds `seq`, so every
value is unique and a value read twice is a duplicate.

The checks (docs/semantics.md: an acknowledged record is durable at its offset):
  1. every acknowledged record is read back at its acknowledged (partition, offset) with the
     same key and value;
  2. within a partition, acknowledged records have offsets in the order they were sent;
  3. no value is read back twice (no duplicates), and offsets within a partition are strictly
     increasing as read;
  4. with --exact (no failed deliveries), nothing was read that was not acknowledged.
"""

import json
import sys
import time


def value_for(seq, value_bytes):
    """A unique, self-describing value of about `value_bytes` bytes."""
    head = "v-%08d-" % seq
    pad = max(0, value_bytes - len(head))
    return head + ("x" * pad)


def key_for(seq, distinct_keys):
    return "key-%05d" % (seq % distinct_keys)


def save_acked(path, topic, acked, failed):
    with open(path, "w") as f:
        json.dump({"topic": topic, "acked": acked, "failed": failed}, f)


def load_acked(path):
    with open(path) as f:
        doc = json.load(f)
    return doc["topic"], doc["acked"], doc.get("failed", [])


def verify(acked, consumed, exact):
    """acked: list of dicts {seq, partition, offset, key, value}.
    consumed: dict partition -> list of (offset, key, value) in the order read.
    Returns a list of human-readable problems (empty when everything agrees)."""
    problems = []

    def note(msg):
        if len(problems) < 50:
            problems.append(msg)
        elif len(problems) == 50:
            problems.append("... (more problems omitted)")

    by_position = {}
    seen_values = {}
    for partition, records in consumed.items():
        last_offset = -1
        for offset, key, value in records:
            if offset <= last_offset:
                note("partition %s: offset %d read after offset %d" % (partition, offset, last_offset))
            last_offset = offset
            by_position[(int(partition), offset)] = (key, value)
            if value in seen_values:
                note(
                    "duplicate value %r at %s:%d, first read at %s:%d"
                    % (value[:24], partition, offset, seen_values[value][0], seen_values[value][1])
                )
            else:
                seen_values[value] = (partition, offset)

    for rec in acked:
        pos = (int(rec["partition"]), int(rec["offset"]))
        got = by_position.get(pos)
        if got is None:
            note("acknowledged record seq=%d missing at %d:%d" % (rec["seq"], pos[0], pos[1]))
        elif got != (rec["key"], rec["value"]):
            note(
                "acknowledged record seq=%d at %d:%d: expected %r=%r, read %r=%r"
                % (rec["seq"], pos[0], pos[1], rec["key"], rec["value"][:24], got[0], (got[1] or "")[:24])
            )

    last_by_partition = {}
    for rec in sorted(acked, key=lambda r: r["seq"]):
        p = int(rec["partition"])
        prev = last_by_partition.get(p)
        if prev is not None and rec["offset"] <= prev["offset"]:
            note(
                "partition %d: seq=%d acknowledged at offset %d, but earlier seq=%d at offset %d"
                % (p, rec["seq"], rec["offset"], prev["seq"], prev["offset"])
            )
        last_by_partition[p] = rec

    if exact:
        acked_values = {rec["value"] for rec in acked}
        extra = [v for v in seen_values if v not in acked_values]
        if extra:
            note("%d records read that were never acknowledged, e.g. %r" % (len(extra), extra[0][:24]))

    return problems


def summary(client, topic, acked, failed, consumed, problems, timings):
    counts = {str(p): len(recs) for p, recs in sorted(consumed.items())}
    return {
        "client": client,
        "topic": topic,
        "acked": len(acked),
        "failed": len(failed),
        "consumed": sum(len(r) for r in consumed.values()),
        "consumed_per_partition": counts,
        "problems": problems,
        "ok": not problems,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }


def finish(doc):
    """Print the one-line JSON summary (the last line of stdout) and exit 0 only if ok."""
    print(json.dumps(doc, sort_keys=True))
    sys.stdout.flush()
    sys.exit(0 if doc["ok"] else 1)


class Stopwatch:
    def __init__(self):
        self.timings = {}
        self._start = None
        self._name = None

    def start(self, name):
        self._name = name
        self._start = time.monotonic()

    def stop(self):
        self.timings[self._name] = time.monotonic() - self._start
