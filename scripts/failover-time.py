#!/usr/bin/env python3
r"""Failover time of a Rivulet cluster: kill -9 the leader of a partition while a producer
writes to it with acks=all, and measure the time from the kill to the first acknowledged write
that follows.

Usage:
  scripts/local-cluster.sh start
  python3 scripts/failover-time.py                       # 3 runs against scripts/local-cluster.sh
  python3 scripts/failover-time.py --runs 5 --json failover.jsonl

  # The Docker Compose cluster (deploy/docker-compose.yml, started with `-p rivulet`):
  C='docker-compose -p rivulet -f deploy/docker-compose.yml'
  python3 scripts/failover-time.py \
      --kill-cmd "docker kill \$($C ps -q node{id})" --restart-cmd "$C start node{id}"

What one run does:
  1. asks the cluster (Metadata) which node leads PARTITION of TOPIC and waits until that
     partition's ISR holds every replica;
  2. a producer thread writes one small record to that partition every --interval-ms
     (confluent-kafka / librdkafka, acks=all, enable.idempotence=true), and timestamps every
     delivery report on a monotonic clock;
  3. after --warmup seconds it kills the leader: `kill -9 PID` with the pid from
     local-cluster/node<ID>/pid (or --kill-cmd, with {id} replaced by the node id; the clock
     then starts when the command returns, as `docker kill` takes a moment to act);
  4. the **failover time** is the time from the kill to the first successful delivery report
     received after it (a record acknowledged by the new leader). It also reports the longest
     gap between consecutive acknowledgements around the kill and any failed deliveries;
  5. restarts the node (`scripts/local-cluster.sh start`, or --restart-cmd) and waits until it
     is back in the partition's ISR before the next run.
At the end it reads the partition back from the beginning and checks that every acknowledged
record is there exactly once (--no-verify skips this).

Options: --bootstrap (default 127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094), --topic
(default `failover`, created with --partitions 3 and --replication-factor 3 if missing),
--partition (default 0), --runs (3), --interval-ms (5), --warmup (3 s), --after (5 s: how long to
keep producing after the first post-kill acknowledgement), --isr-timeout (120 s),
--local-dir (default ./local-cluster), -X KEY=VALUE (extra librdkafka producer settings),
--json PATH (append one JSON line per run).

Requires: python3 -m pip install confluent-kafka. Delivery reports are served by a poll loop
every millisecond, so times are accurate to about a millisecond plus the scheduling noise of the
machine.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

try:
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError:
    sys.exit("failover-time.py needs confluent-kafka: python3 -m pip install confluent-kafka")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Distinguishes this invocation's records from earlier ones in the same topic.
TAG = f"ft{int(time.time())}"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def partition_state(admin, topic, partition):
    md = admin.list_topics(topic=topic, timeout=5)
    t = md.topics.get(topic)
    if t is None or t.error is not None or partition not in t.partitions:
        return None
    p = t.partitions[partition]
    return {"leader": p.leader, "replicas": list(p.replicas), "isr": list(p.isrs)}


def ensure_topic(admin, args):
    md = admin.list_topics(timeout=10)
    if args.topic in md.topics and md.topics[args.topic].error is None:
        return
    log(f"creating topic {args.topic} ({args.partitions} partitions, RF {args.replication_factor})")
    fs = admin.create_topics(
        [NewTopic(args.topic, num_partitions=args.partitions,
                  replication_factor=args.replication_factor)])
    for f in fs.values():
        f.result(timeout=30)


def wait_full_isr(admin, args, timeout):
    """Waits until the partition has a leader and its ISR holds every replica."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            st = partition_state(admin, args.topic, args.partition)
        except Exception as e:  # noqa: BLE001 - the node asked may be down
            st, last = None, str(e)
        if st and st["leader"] >= 0 and sorted(st["isr"]) == sorted(st["replicas"]):
            return st
        if st:
            last = st
        time.sleep(0.5)
    raise SystemExit(f"partition {args.topic}/{args.partition} not fully in sync after "
                     f"{timeout}s (last seen: {last})")


def run_cmd(template, node_id):
    cmd = template.replace("{id}", str(node_id))
    log(f"$ {cmd}")
    subprocess.run(cmd, shell=True, check=True)


def kill_leader(args, node_id):
    """SIGKILLs the node; returns the monotonic time just before the signal was sent."""
    if args.kill_cmd:
        # The command (docker kill ...) takes a while before the signal lands; the leader
        # still acknowledges meanwhile. Count from when the command returns, when the node is
        # dead: this can only shorten the measured failover, by the command's return latency.
        run_cmd(args.kill_cmd, node_id)
        return time.monotonic()
    pid_file = os.path.join(args.local_dir, f"node{node_id}", "pid")
    with open(pid_file) as f:
        pid = int(f.read().strip())
    t = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    log(f"kill -9 {pid} (node {node_id})")
    return t


def restart_node(args, node_id):
    if args.restart_cmd:
        run_cmd(args.restart_cmd, node_id)
    else:
        env = dict(os.environ, RIVULET_LOCAL_DIR=args.local_dir)
        subprocess.run([os.path.join(ROOT, "scripts", "local-cluster.sh"), "start"],
                       check=True, env=env, stdout=subprocess.DEVNULL)


class Writer:
    """Produces one record every interval to one partition and timestamps delivery reports."""

    def __init__(self, args, run):
        conf = {
            "bootstrap.servers": args.bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 0,
            "message.timeout.ms": 60000,
        }
        for kv in args.X:
            k, _, v = kv.partition("=")
            conf[k] = v
        self.p = Producer(conf)
        self.args = args
        self.run = run
        self.acks = []  # (monotonic time, seq, offset)
        self.errors = []  # (monotonic time, seq, error)
        self.sent = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _cb(self, seq):
        def cb(err, msg):
            t = time.monotonic()
            with self.lock:
                if err is None:
                    self.acks.append((t, seq, msg.offset()))
                else:
                    self.errors.append((t, seq, str(err)))
        return cb

    def _loop(self):
        interval = self.args.interval_ms / 1000.0
        nxt = time.monotonic()
        seq = 0
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= nxt:
                value = f"{TAG}-run{self.run}-{seq}".encode()
                try:
                    self.p.produce(self.args.topic, value=value, partition=self.args.partition,
                                   on_delivery=self._cb(seq))
                    seq += 1
                    self.sent = seq
                except BufferError:
                    pass
                nxt += interval
                if nxt < now - 1:  # fell far behind (descheduled): do not burst
                    nxt = now
            self.p.poll(0.001)
        self.p.flush(60)

    def start(self):
        self.thread.start()

    def finish(self):
        self.stop.set()
        self.thread.join()


def one_run(admin, args, run):
    st = wait_full_isr(admin, args, args.isr_timeout)
    leader = st["leader"]
    log(f"run {run}: {args.topic}/{args.partition} leader {leader}, replicas {st['replicas']}, "
        f"isr {st['isr']}")
    w = Writer(args, run)
    w.start()
    time.sleep(args.warmup)
    with w.lock:
        before = len(w.acks)
    if before == 0:
        w.finish()
        raise SystemExit(f"run {run}: no acknowledgement during the {args.warmup}s warm-up")
    t_kill = kill_leader(args, leader)
    # Wait for the first acknowledgement after the kill, then keep writing a while.
    deadline = t_kill + args.isr_timeout
    first = None
    while time.monotonic() < deadline:
        with w.lock:
            first = next((a for a in w.acks[before:] if a[0] > t_kill), None)
        if first:
            break
        time.sleep(0.01)
    time.sleep(args.after)
    w.finish()
    acks, errors = list(w.acks), list(w.errors)
    if first is None:
        raise SystemExit(f"run {run}: no acknowledgement within {args.isr_timeout}s of the kill")
    last_before = max((a[0] for a in acks if a[0] <= t_kill), default=None)
    times = sorted(a[0] for a in acks)
    max_gap = max((b - a for a, b in zip(times, times[1:])), default=0.0)
    after_st = None
    try:
        after_st = partition_state(admin, args.topic, args.partition)
    except Exception:  # noqa: BLE001
        pass
    res = {
        "run": run,
        "killed_node": leader,
        "new_leader": after_st["leader"] if after_st else None,
        "isr_after": after_st["isr"] if after_st else None,
        "kill_to_first_ack_s": round(first[0] - t_kill, 3),
        "last_ack_before_kill_s": round(t_kill - last_before, 3) if last_before else None,
        "max_ack_gap_s": round(max_gap, 3),
        "sent": w.sent,
        "acked": len(acks),
        "failed": len(errors),
        "errors": sorted({e[2] for e in errors})[:5],
    }
    log(f"run {run}: kill -> first ack {res['kill_to_first_ack_s']:.3f} s "
        f"(new leader {res['new_leader']}, isr {res['isr_after']}), longest gap between acks "
        f"{res['max_ack_gap_s']:.3f} s, {res['acked']}/{res['sent']} acked, "
        f"{res['failed']} failed")
    restart_node(args, leader)
    t0 = time.monotonic()
    wait_full_isr(admin, args, args.isr_timeout)
    res["rejoin_isr_s"] = round(time.monotonic() - t0, 3)
    log(f"run {run}: node {leader} restarted and back in the ISR after {res['rejoin_isr_s']:.1f} s")
    return res, [(a[1], a[2]) for a in acks]


def verify(args, acked_by_run):
    """Every acknowledged record is in the partition, once, at the offset it was acked with."""
    c = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "failover-time-verify",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    c.assign([TopicPartition(args.topic, args.partition, 0)])
    seen = {}
    dup = 0
    while True:
        m = c.poll(10)
        if m is None:
            break
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                break
            raise SystemExit(f"verify: {m.error()}")
        v = m.value().decode(errors="replace")
        if not v.startswith(TAG + "-"):
            continue
        if v in seen:
            dup += 1
        seen[v] = m.offset()
    c.close()
    missing = wrong = 0
    for run, acks in acked_by_run.items():
        for seq, off in acks:
            o = seen.get(f"{TAG}-run{run}-{seq}")
            if o is None:
                missing += 1
            elif o != off:
                wrong += 1
    total = sum(len(a) for a in acked_by_run.values())
    log(f"verify: {total} acknowledged records; {missing} missing, {wrong} at another offset, "
        f"{dup} duplicates in the partition ({len(seen)} records read)")
    return missing == 0 and wrong == 0 and dup == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094")
    ap.add_argument("--topic", default="failover")
    ap.add_argument("--partition", type=int, default=0)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--replication-factor", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--interval-ms", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--after", type=float, default=5.0)
    ap.add_argument("--isr-timeout", type=float, default=120.0)
    ap.add_argument("--local-dir", default=os.environ.get("RIVULET_LOCAL_DIR",
                                                          os.path.join(ROOT, "local-cluster")))
    ap.add_argument("--kill-cmd")
    ap.add_argument("--restart-cmd")
    ap.add_argument("-X", action="append", default=[])
    ap.add_argument("--json")
    ap.add_argument("--no-verify", action="store_true")
    args = ap.parse_args()
    if bool(args.kill_cmd) != bool(args.restart_cmd):
        ap.error("--kill-cmd and --restart-cmd go together")

    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    ensure_topic(admin, args)
    results, acked = [], {}
    for run in range(1, args.runs + 1):
        res, acks = one_run(admin, args, run)
        results.append(res)
        acked[run] = acks
        print(json.dumps(res), flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(res) + "\n")
    gaps = [r["kill_to_first_ack_s"] for r in results]
    log(f"kill -> first acknowledged write: {', '.join(f'{g:.3f}' for g in gaps)} s "
        f"(max {max(gaps):.3f} s)")
    ok = True
    if not args.no_verify:
        ok = verify(args, acked)
    sys.exit(0 if ok and all(r["failed"] == 0 for r in results) else 1)


if __name__ == "__main__":
    main()
