#!/usr/bin/env python3
"""Admin API checks with kafka-python's KafkaAdminClient (what Kafka's own tools and many
scripts use). Each subcommand prints one JSON object on the last line of stdout with what the
client saw; the Rust test (tests/admin.rs) asserts on it. Errors are reported as the class name
of the exception the client raised, so a refusal reads like it does against Kafka.

  scenario --topic T
      creates T (1 partition), produces 10 records, then: describe_cluster / describe_topics /
      describe_groups authorized operations, delete_records (4, past the high watermark),
      earliest offset, a read below the log start, describe_configs (topic with synonyms and
      documentation, broker, group), incremental alter (SET, DELETE, APPEND on a non-list),
      alter of a read-only broker config and of a group config, describe_log_dirs, create_partitions with explicit
      assignments (valid, unknown node, wrong replication factor, wrong count).
  earliest --topic T
      {"earliest": offset of partition 0}

Common: --bootstrap HOST:PORT
"""

import argparse
import json
import re
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata
from kafka.admin import (
    AlterConfigOp,
    ConfigResource,
    ConfigResourceType,
    KafkaAdminClient,
    NewPartitions,
    NewTopic,
)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def err_name(e):
    return type(e).__name__


def attempt(f):
    """(result, None) or (None, exception class name)."""
    try:
        return f(), None
    except Exception as e:  # noqa: BLE001 - the class name is the observation
        log("%s: %r" % (err_name(e), e))
        return None, err_name(e)


def earliest(bootstrap, topic):
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        return c.beginning_offsets([tp])[tp]
    finally:
        c.close()


def alter_result(res):
    """The per-resource outcome of alter_configs: 'ok' or the error class name, and the
    error messages by resource."""
    out, messages = {}, {}
    for rtype, by_name in res.items():
        for name, r in by_name.items():
            key = "%s/%s" % (rtype, name)
            if r == "OK":
                out[key] = "ok"
            else:
                # kafka-python reports "[Error 40] InvalidConfigurationError: message".
                m = re.match(r"\[Error -?\d+\] (\w+)(?:: (.*))?", str(r), re.S)
                out[key] = m.group(1) if m else str(r)
                messages[key] = (m.group(2) if m else None) or ""
    return out, messages


def configs_of(admin, rtype, name, **kw):
    res = admin.describe_configs([ConfigResource(rtype, name)], config_filter="all", **kw)
    return res[rtype.name.lower()][name]


def scenario(bootstrap, topic):
    out = {}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    for i in range(10):
        producer.send(topic, value=b"v%d" % i, partition=0).get(timeout=30)
    producer.close()

    # Authorized operations (kafka-python asks for them and decodes the bitfield).
    cluster, out["describe_cluster_error"] = attempt(admin.describe_cluster)
    out["cluster_operations"] = sorted((cluster or {}).get("authorized_operations") or [])
    topics, out["describe_topics_error"] = attempt(lambda: admin.describe_topics([topic]))
    out["topic_operations"] = sorted(((topics or [{}])[0]).get("authorized_operations") or [])
    # The group must exist: DescribeGroups v6+ answers GROUP_ID_NOT_FOUND, without
    # operations, for an unknown one (as Kafka 4.x does). A committed offset makes it.
    committer = KafkaConsumer(bootstrap_servers=bootstrap, group_id="admin-tool-group",
                              enable_auto_commit=False)
    committer.assign([TopicPartition(topic, 0)])
    committer.commit({TopicPartition(topic, 0): OffsetAndMetadata(0, "", -1)})
    committer.close()
    # The offsets topic (and so the coordinator) appears with the first group request:
    # retry while the coordinator is not there yet, as Kafka's own tools do.
    deadline = time.monotonic() + 30
    while True:
        groups, out["describe_groups_error"] = attempt(
            lambda: admin.describe_groups(["admin-tool-group"], include_authorized_operations=True)
        )
        if out["describe_groups_error"] not in ("CoordinatorNotAvailableError",
                                                "CoordinatorLoadInProgressError",
                                                "NotCoordinatorError") \
                or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    group = (groups or {}).get("admin-tool-group") or {}
    ops = group.get("authorized_operations")
    out["group_operations"] = sorted(ops or [])

    # DeleteRecords.
    tp = TopicPartition(topic, 0)
    deleted, out["delete_records_error"] = attempt(lambda: admin.delete_records({tp: 4}))
    out["low_watermark"] = (deleted or {}).get(tp, {}).get("low_watermark")
    _, out["delete_past_hw_error"] = attempt(lambda: admin.delete_records({tp: 100}))
    out["earliest"] = earliest(bootstrap, topic)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="none",
        consumer_timeout_ms=5000,
    )
    consumer.assign([tp])
    consumer.seek(tp, 2)
    below, out["read_below_start_error"] = attempt(lambda: consumer.poll(timeout_ms=5000))
    consumer.seek(tp, 4)
    got = []
    deadline = time.monotonic() + 10
    while len(got) < 6 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=1000).values():
            got.extend(r.offset for r in records)
    out["read_from_start"] = got
    consumer.close()

    # DescribeConfigs: types, synonyms, documentation.
    tc = configs_of(admin, ConfigResourceType.TOPIC, topic, include_synonyms=True)
    out["topic_config_types"] = {k: v.get("config_type") for k, v in tc.items()}
    out["retention_synonyms"] = [s["name"] for s in tc.get("retention.ms", {}).get("synonyms", [])]
    bc = configs_of(admin, ConfigResourceType.BROKER, "1")
    out["broker_configs"] = {k: [v.get("value"), v.get("config_type"), v.get("config_source")]
                             for k, v in bc.items()}
    gc, out["group_configs_error"] = attempt(
        lambda: configs_of(admin, ConfigResourceType.GROUP, "admin-tool-group"))
    out["group_configs"] = {k: [v.get("value"), v.get("config_type")] for k, v in (gc or {}).items()}

    # IncrementalAlterConfigs.
    messages = {}

    def alter(rtype, name, configs, **kw):
        r, e = attempt(lambda: admin.alter_configs(
            [ConfigResource(rtype, name, configs)], incremental=True, raise_on_unknown=False, **kw))
        if e:
            return e
        result, msgs = alter_result(r)
        messages.update(msgs)
        return result

    out["set_retention"] = alter(ConfigResourceType.TOPIC, topic, {
        "retention.ms": (AlterConfigOp.SET, "3600000"),
        "segment.ms": (AlterConfigOp.SET, "600000"),
    })
    after_set = configs_of(admin, ConfigResourceType.TOPIC, topic)
    out["after_set"] = {k: [after_set[k]["value"], after_set[k]["config_source"]]
                        for k in ("retention.ms", "segment.ms")}
    out["delete_segment_ms"] = alter(ConfigResourceType.TOPIC, topic, {
        "segment.ms": (AlterConfigOp.DELETE, None),
    })
    after_delete = configs_of(admin, ConfigResourceType.TOPIC, topic)
    out["after_delete"] = {k: [after_delete[k]["value"], after_delete[k]["config_source"]]
                           for k in ("retention.ms", "segment.ms")}
    out["append_non_list"] = alter(ConfigResourceType.TOPIC, topic, {
        "retention.ms": (AlterConfigOp.APPEND, "1"),
    })
    out["validate_only"] = alter(ConfigResourceType.TOPIC, topic, {
        "retention.ms": (AlterConfigOp.SET, "5"),
    }, validate_only=True)
    out["retention_after_validate_only"] = configs_of(
        admin, ConfigResourceType.TOPIC, topic)["retention.ms"]["value"]
    # broker.id is read-only (log.* defaults are dynamic: tests/admin.rs covers those).
    out["alter_broker"] = alter(ConfigResourceType.BROKER, "1", {
        "broker.id": (AlterConfigOp.SET, "7"),
    })
    out["alter_group"] = alter(ConfigResourceType.GROUP, "admin-tool-group", {
        "consumer.session.timeout.ms": (AlterConfigOp.SET, "50000"),
    })

    out["alter_messages"] = messages

    # DescribeLogDirs.
    dirs, out["describe_log_dirs_error"] = attempt(admin.describe_log_dirs)
    out["log_dirs"] = [
        {
            "log_dir": d["log_dir"],
            "total_bytes": d.get("total_bytes"),
            "usable_bytes": d.get("usable_bytes"),
            "partitions": {
                "%s/%d" % (t["name"], p["partition_index"]): p["partition_size"]
                for t in d["topics"] for p in t["partitions"]
            },
        }
        for b in (dirs or []) for d in b["log_dirs"]
    ]

    # CreatePartitions with explicit assignments.
    def grow(total, assignments):
        r, e = attempt(lambda: admin.create_partitions(
            {topic: NewPartitions(total_count=total, new_assignments=assignments)}))
        return e or "ok"

    out["grow_unknown_node"] = grow(2, [[7]])
    out["grow_wrong_replication_factor"] = grow(2, [[1, 1]])
    out["grow_wrong_count"] = grow(3, [[1]])
    out["grow_valid"] = grow(2, [[1]])
    md = admin.describe_topics([topic])[0]
    out["partitions_after"] = {p["partition_index"]: p["replica_nodes"] for p in md["partitions"]}
    admin.close()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["scenario", "earliest"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    a = ap.parse_args()
    if a.command == "scenario":
        res = scenario(a.bootstrap, a.topic)
    else:
        res = {"earliest": earliest(a.bootstrap, a.topic)}
    print(json.dumps(res, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
