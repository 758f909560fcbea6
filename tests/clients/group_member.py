#!/usr/bin/env python3
"""One long-running consumer-group member: subscribes, consumes, commits, and writes what it
does as JSON lines to --out, until SIGTERM (clean close: commit, then LeaveGroup) or SIGKILL.

Clients:
  --client confluent     confluent-kafka (librdkafka); --protocol classic (JoinGroup/SyncGroup
                         with a client-side --assignor) or consumer (KIP-848,
                         group.protocol=consumer: the broker assigns; session and heartbeat are
                         the broker's, so no session/heartbeat/assignor settings are sent)
  --client kafka-python  kafka-python (classic protocol only)

Every line of --out is one JSON object, written and flushed as it happens (a SIGKILLed member
leaves every line it wrote; only the last one can be cut short). "t" is time.monotonic()
(CLOCK_MONOTONIC, comparable across processes on one machine). Partitions are [topic, p].

  {"ev":"started","t":..,"pid":..,"client":..,"protocol":..,"group":..,"topics":[..],"client_id":..}
  {"ev":"assigned","t":..,"parts":[..],"owned":[..],"member":..}   parts: what this callback
        added (eager: the whole assignment); owned: everything owned after it
  {"ev":"revoked","t":..,"parts":[..],"owned":[..]}                 logged before the commit
  {"ev":"lost","t":..,"parts":[..],"owned":[..]}                    ownership lost (no commit)
  {"ev":"owned","t":..,"owned":[..],"tracked":[..]}                 confluent: the client's
        assignment() disagreed with the callbacks' bookkeeping; owned is the client's
  {"ev":"rec","t":..,"topic":..,"p":..,"o":..,"n":..}                n consecutive offsets from o,
        consumed in one poll (one line per partition and contiguous run per poll), written
        before their offsets are stored or committed: at-least-once
  {"ev":"committed","t":..,"offsets":[[topic,p,next_offset],..],"src":"sync"|"auto"|"revoke"|"close"}
  {"ev":"commit_failed","t":..,"err":..,"offsets":[..],"src":..}
  {"ev":"error","t":..,"err":..}                                    first occurrence of each error
  {"ev":"closing","t":..}   the poll loop has ended: nothing is consumed after this
  {"ev":"closed","t":..}    close() returned (LeaveGroup sent, except for static members)

Commit modes:
  auto          enable.auto.commit (librdkafka: offsets are stored explicitly after the records
                are written to --out, so an auto commit never covers an unwritten record; not
                offered for kafka-python, whose auto commit covers everything poll() returned)
  sync-every-N  a synchronous commit of the written positions after every N records
Both also commit synchronously in the revoke callback and before close.

Example:
  python3 tests/clients/group_member.py --bootstrap 127.0.0.1:9092 --topic orders \
      --group billing --out /tmp/m1.jsonl --commit sync-every-100
"""

import argparse
import json
import os
import signal
import sys
import time

STOP = False


def on_signal(signum, frame):
    global STOP
    STOP = True


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True, help="topic, or a comma-separated list")
    p.add_argument("--group", required=True)
    p.add_argument("--client", choices=["confluent", "kafka-python"], default="confluent")
    p.add_argument("--protocol", choices=["classic", "consumer"], default="classic")
    p.add_argument("--assignor", default=None, help="classic: range | roundrobin | cooperative-sticky")
    p.add_argument("--remote-assignor", default=None, help="consumer protocol: uniform | range")
    p.add_argument("--instance-id", default=None, help="group.instance.id (static membership)")
    p.add_argument("--session-timeout-ms", type=int, default=None, help="classic only")
    p.add_argument("--heartbeat-interval-ms", type=int, default=None, help="classic only; default session/3")
    p.add_argument("--commit", default="auto", help="auto | sync-every-N")
    p.add_argument("--auto-commit-interval-ms", type=int, default=1000)
    p.add_argument("--offset-reset", choices=["earliest", "latest"], default="earliest")
    p.add_argument("--client-id", default=None)
    p.add_argument("--out", required=True, help="JSON-lines event file (appended to)")
    p.add_argument("-X", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                   help="extra client setting (librdkafka name for confluent, kwarg for kafka-python)")
    args = p.parse_args()
    args.topics = [t for t in args.topic.split(",") if t]
    if args.commit == "auto":
        args.commit_every = None
    elif args.commit.startswith("sync-every-"):
        args.commit_every = int(args.commit[len("sync-every-"):])
        if args.commit_every < 1:
            p.error("--commit sync-every-N needs N >= 1")
    else:
        p.error("--commit must be auto or sync-every-N")
    if args.protocol == "consumer" and args.client != "confluent":
        p.error("--protocol consumer needs --client confluent")
    if args.protocol == "consumer" and (args.assignor or args.session_timeout_ms or args.heartbeat_interval_ms):
        p.error("--protocol consumer: assignor, session and heartbeat belong to the broker")
    if args.client == "kafka-python" and args.commit_every is None:
        p.error("kafka-python: use --commit sync-every-N (its auto commit is not at-least-once here)")
    if args.client_id is None:
        args.client_id = "gm-" + os.path.splitext(os.path.basename(args.out))[0]
    return args


def log(msg):
    print("[%s %s] %s" % (time.strftime("%H:%M:%S"), os.getpid(), msg), file=sys.stderr, flush=True)


class Out:
    """The event file: one JSON object per line, flushed to the kernel after every line."""

    def __init__(self, path):
        self.f = open(path, "a", encoding="utf-8")
        self.errors_seen = set()

    def write(self, ev, t=None, **fields):
        obj = {"ev": ev, "t": round(time.monotonic() if t is None else t, 6)}
        obj.update(fields)
        self.f.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.f.flush()

    def error(self, err):
        err = str(err)
        log("error: " + err)
        if err not in self.errors_seen and len(self.errors_seen) < 100:
            self.errors_seen.add(err)
            self.write("error", err=err)


def tps(items):
    return sorted([t, p] for (t, p) in items)


def runs(offsets):
    """Sorted offsets -> [(first, count)] of consecutive runs."""
    out = []
    for o in sorted(set(offsets)):
        if out and out[-1][0] + out[-1][1] == o:
            out[-1][1] += 1
        else:
            out.append([o, 1])
    return out


class Member:
    """Bookkeeping shared by both clients: what is owned, what was processed, what to commit."""

    def __init__(self, args, out, cooperative):
        self.args = args
        self.out = out
        self.cooperative = cooperative
        self.owned = set()
        # (topic, partition) -> next offset to consume, for records written but not committed.
        self.pending = {}
        self.since_commit = 0

    # -- ownership ---------------------------------------------------------------------------

    def on_assigned(self, parts, member_id=None):
        parts = set(parts)
        if self.cooperative:
            self.owned |= parts
        else:
            self.owned = set(parts)
        self.out.write("assigned", parts=tps(parts), owned=tps(self.owned), member=member_id)

    def on_revoked(self, parts, commit):
        parts = set(parts)
        self.out.write("revoked", parts=tps(parts), owned=tps(self.owned - parts))
        mine = {tp: o for tp, o in self.pending.items() if tp in parts}
        if mine:
            commit(mine, "revoke")
        for tp in parts:
            self.pending.pop(tp, None)
        self.owned -= parts

    def on_lost(self, parts):
        parts = set(parts)
        self.owned -= parts
        for tp in parts:
            self.pending.pop(tp, None)
        self.out.write("lost", parts=tps(parts), owned=tps(self.owned))

    def check_owned(self, actual):
        """Trust the client's own view if the callbacks' bookkeeping disagrees with it."""
        actual = set(actual)
        if actual != self.owned:
            log("assignment() %r differs from the callbacks' %r" % (sorted(actual), sorted(self.owned)))
            self.out.write("owned", owned=tps(actual), tracked=tps(self.owned))
            self.owned = actual

    # -- records -----------------------------------------------------------------------------

    def processed(self, batch):
        """batch: {(topic, p): [offsets]} from one poll. Writes rec lines, then remembers the
        positions to commit. Returns {(topic, p): next_offset}."""
        now = time.monotonic()
        positions = {}
        n = 0
        for (t, p) in sorted(batch):
            offs = batch[(t, p)]
            for first, count in runs(offs):
                self.out.write("rec", t=now, topic=t, p=p, o=first, n=count)
            positions[(t, p)] = max(offs) + 1
            n += len(offs)
        for tp, o in positions.items():
            if o > self.pending.get(tp, -1):
                self.pending[tp] = o
        self.since_commit += n
        return positions

    def due(self):
        return self.args.commit_every is not None and self.since_commit >= self.args.commit_every

    def take_pending(self):
        mine = {tp: o for tp, o in self.pending.items() if tp in self.owned}
        return mine


# -- confluent-kafka ---------------------------------------------------------------------------


def run_confluent(args, out):
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    cooperative = args.protocol == "consumer" or args.assignor == "cooperative-sticky"
    conf = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "client.id": args.client_id,
        "auto.offset.reset": args.offset_reset,
        "enable.auto.commit": args.commit_every is None,
        "auto.commit.interval.ms": args.auto_commit_interval_ms,
        # Offsets are stored by hand once the records are written to --out.
        "enable.auto.offset.store": False,
        "topic.metadata.refresh.interval.ms": 5000,
        "reconnect.backoff.max.ms": 1000,
        "error_cb": lambda err: out.error(err),
    }
    if args.protocol == "consumer":
        conf["group.protocol"] = "consumer"
        if args.remote_assignor:
            conf["group.remote.assignor"] = args.remote_assignor
    else:
        if args.assignor:
            conf["partition.assignment.strategy"] = args.assignor
        if args.session_timeout_ms:
            conf["session.timeout.ms"] = args.session_timeout_ms
            conf["heartbeat.interval.ms"] = args.heartbeat_interval_ms or max(100, args.session_timeout_ms // 3)
        elif args.heartbeat_interval_ms:
            conf["heartbeat.interval.ms"] = args.heartbeat_interval_ms
    if args.instance_id:
        conf["group.instance.id"] = args.instance_id
    for kv in args.extra:
        k, v = kv.split("=", 1)
        conf[k] = v

    member = None  # set below; the commit callback needs it

    def on_commit(err, partitions):
        offs = [[tp.topic, tp.partition, tp.offset] for tp in partitions or [] if tp.error is None]
        if err is not None:
            out.write("commit_failed", err=str(err), offsets=offs, src="auto")
        elif offs:
            out.write("committed", offsets=offs, src="auto")

    if args.commit_every is None:
        conf["on_commit"] = on_commit

    c = Consumer(conf)

    def commit(offsets, src):
        """Synchronous commit of {(topic, p): next_offset}; logs the outcome."""
        if not offsets:
            return True
        tpl = [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]
        want = [[t, p, o] for (t, p), o in sorted(offsets.items())]
        try:
            res = c.commit(offsets=tpl, asynchronous=False)
        except KafkaException as e:
            out.write("commit_failed", err=str(e), offsets=want, src=src)
            return False
        ok = [[tp.topic, tp.partition, tp.offset] for tp in res or [] if tp.error is None]
        bad = [[tp.topic, tp.partition, str(tp.error)] for tp in res or [] if tp.error is not None]
        if bad:
            out.write("commit_failed", err="per-partition errors", offsets=bad, src=src)
        if ok:
            out.write("committed", offsets=ok, src=src)
        for t, p, o in ok:
            if member.pending.get((t, p)) == o:
                del member.pending[(t, p)]
        return not bad

    member = Member(args, out, cooperative)

    def member_id():
        try:
            return c.memberid()
        except Exception:  # noqa: BLE001 - not available in every state
            return None

    def assigned(consumer, partitions):
        member.on_assigned([(tp.topic, tp.partition) for tp in partitions], member_id())

    def revoked(consumer, partitions):
        member.on_revoked([(tp.topic, tp.partition) for tp in partitions], commit)

    def lost(consumer, partitions):
        member.on_lost([(tp.topic, tp.partition) for tp in partitions])

    out.write("started", pid=os.getpid(), client="confluent", protocol=args.protocol, group=args.group,
              topics=args.topics, client_id=args.client_id, instance_id=args.instance_id,
              assignor=args.assignor, commit=args.commit)
    c.subscribe(args.topics, on_assign=assigned, on_revoke=revoked, on_lost=lost)
    while not STOP:
        msgs = c.consume(num_messages=500, timeout=0.2)
        batch = {}
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    out.error(err)
                    if err.fatal():
                        out.write("closing")
                        log("fatal error, exiting")
                        sys.exit(2)
                continue
            batch.setdefault((m.topic(), m.partition()), []).append(m.offset())
        if batch:
            positions = member.processed(batch)
            if args.commit_every is None:
                store = [TopicPartition(t, p, o) for (t, p), o in positions.items() if (t, p) in member.owned]
                if store:
                    try:
                        c.store_offsets(offsets=store)
                    except KafkaException as e:
                        out.error("store_offsets: %s" % e)
        if member.due():
            member.since_commit = 0
            commit(member.take_pending(), "sync")
        if not STOP:
            try:
                member.check_owned((tp.topic, tp.partition) for tp in c.assignment())
            except KafkaException as e:
                out.error("assignment(): %s" % e)
    out.write("closing")
    commit(member.take_pending(), "close")
    c.close()
    out.write("closed")


# -- kafka-python ------------------------------------------------------------------------------


def run_kafka_python(args, out):
    from kafka import KafkaConsumer, TopicPartition
    from kafka.consumer.subscription_state import ConsumerRebalanceListener
    from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from kafka.structs import OffsetAndMetadata

    assignors = {
        "range": RangePartitionAssignor,
        "roundrobin": RoundRobinPartitionAssignor,
        "cooperative-sticky": CooperativeStickyAssignor,
    }
    kwargs = {
        "bootstrap_servers": args.bootstrap.split(","),
        "group_id": args.group,
        "client_id": args.client_id,
        "auto_offset_reset": args.offset_reset,
        "enable_auto_commit": False,
        "max_poll_records": 500,
        "reconnect_backoff_max_ms": 1000,
        "metadata_max_age_ms": 5000,
    }
    if args.assignor:
        kwargs["partition_assignment_strategy"] = [assignors[args.assignor]]
    if args.session_timeout_ms:
        kwargs["session_timeout_ms"] = args.session_timeout_ms
        kwargs["heartbeat_interval_ms"] = args.heartbeat_interval_ms or max(100, args.session_timeout_ms // 3)
    elif args.heartbeat_interval_ms:
        kwargs["heartbeat_interval_ms"] = args.heartbeat_interval_ms
    if args.instance_id:
        kwargs["group_instance_id"] = args.instance_id
    for kv in args.extra:
        k, v = kv.split("=", 1)
        kwargs[k] = int(v) if v.lstrip("-").isdigit() else v

    cooperative = args.assignor == "cooperative-sticky"
    member = Member(args, out, cooperative)
    c = KafkaConsumer(**kwargs)

    def commit(offsets, src):
        if not offsets:
            return True
        want = [[t, p, o] for (t, p), o in sorted(offsets.items())]
        tpo = {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()}
        try:
            c.commit(offsets=tpo)
        except RuntimeError as e:
            # kafka-python 3 may run the revoke callback on its IO thread, where a blocking
            # commit is refused. Send the commit without waiting instead: it goes out on the
            # coordinator connection ahead of the JoinGroup, so the coordinator applies it
            # under the old generation before the partitions move.
            if src != "revoke":
                out.write("commit_failed", err=repr(e), offsets=want, src=src)
                return False
            try:
                c.commit_async(offsets=tpo)
            except Exception as e2:  # noqa: BLE001
                out.write("commit_failed", err=repr(e2), offsets=want, src=src)
                return False
            src = "revoke-async"
        except Exception as e:  # noqa: BLE001 - kafka-python raises many types
            out.write("commit_failed", err=repr(e), offsets=want, src=src)
            return False
        out.write("committed", offsets=want, src=src)
        for t, p, o in want:
            if member.pending.get((t, p)) == o:
                del member.pending[(t, p)]
        return True

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            member.on_revoked([(tp.topic, tp.partition) for tp in revoked], commit)

        def on_partitions_assigned(self, assigned):
            member.on_assigned([(tp.topic, tp.partition) for tp in assigned], None)

        def on_partitions_lost(self, lost):
            member.on_lost([(tp.topic, tp.partition) for tp in lost])

    out.write("started", pid=os.getpid(), client="kafka-python", protocol="classic", group=args.group,
              topics=args.topics, client_id=args.client_id, instance_id=args.instance_id,
              assignor=args.assignor, commit=args.commit)
    c.subscribe(topics=args.topics, listener=Listener())
    while not STOP:
        polled = c.poll(timeout_ms=200, max_records=500)
        batch = {}
        for tp, records in polled.items():
            for r in records:
                batch.setdefault((tp.topic, tp.partition), []).append(r.offset)
        if batch:
            member.processed(batch)
        if member.due():
            member.since_commit = 0
            commit(member.take_pending(), "sync")
        # No check_owned() here: under EAGER, kafka-python keeps revoked partitions in
        # assignment() (paused, "pending revocation") until the rebalance completes.
    out.write("closing")
    commit(member.take_pending(), "close")
    c.close(autocommit=False)
    out.write("closed")


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    out = Out(args.out)
    if args.client == "confluent":
        run_confluent(args, out)
    else:
        run_kafka_python(args, out)


if __name__ == "__main__":
    main()
