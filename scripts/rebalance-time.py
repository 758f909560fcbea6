#!/usr/bin/env python3
r"""Rebalance time of a Rivulet consumer group, for the classic protocol and KIP-848
(group.protocol=consumer), measured with real member processes (tests/clients/group_member.py).

Usage:
  cargo run --release -p rivulet-broker -- serve          # or scripts/local-cluster.sh start
  python3 scripts/rebalance-time.py --bootstrap 127.0.0.1:9092 --protocol both --runs 5
  python3 scripts/rebalance-time.py --bootstrap 127.0.0.1:19092,127.0.0.1:19093 \
      --replication-factor 3 --protocol classic --session-timeout-ms 6000 --json rebalance.jsonl

What one run does (a fresh topic and group each run):
  1. a producer thread writes --rate records/s round-robin over every partition (explicit
     partitions, so every partition keeps receiving records; acks=all, idempotent);
  2. starts --members group_member.py processes and waits for a steady state: the members'
     assignments are disjoint, cover every partition, and every member has consumed records;
  3. (a) member killed: SIGKILLs the member owning the most partitions (no LeaveGroup, no
     commit) and measures
        kill->reassigned   until every partition it owned is assigned to a survivor,
        kill->reconsumed   until every partition it owned has been consumed by a survivor
                           (the figure for BENCHMARKS.md);
     then waits for the survivors to be steady again;
  4. (b) member added: starts one more member and measures
        add->first record  from spawning the process to its first consumed record (includes
                           the interpreter and client start-up, reported separately as
                           add->subscribed),
        subscribed->first record  from the member's subscribe() to its first record;
  5. stops every member (SIGTERM: commit, LeaveGroup) and the producer.
Times come from one monotonic clock (CLOCK_MONOTONIC) shared by this script and the members'
event files, so they are accurate to a few milliseconds plus the members' poll interval
(200 ms at most with no records; records arrive every partitions/rate seconds per partition).

What dominates: a killed member is noticed when its session expires. Classic protocol: the
client's session.timeout.ms (--session-timeout-ms; the broker must allow it between
groups.min_session_timeout_ms and groups.max_session_timeout_ms). KIP-848: the broker's
groups.consumer_session_timeout_ms (45 s by default!) and groups.consumer_heartbeat_interval_ms;
this script cannot set those, so it prints what it measured and you record the broker's
configuration next to it. A new classic group also waits groups.initial_rebalance_delay_ms
before its first assignment (not part of (a) or (b), which happen in a running group).

Options: --bootstrap, --protocol classic|consumer|both (default both), --client confluent|
kafka-python (classic only), --assignor (classic; default range), --remote-assignor (KIP-848),
--members (3), --partitions (6), --replication-factor (1), --rate (records/s, 300),
--session-timeout-ms (classic, 6000), --runs (3), --timeout (per wait, 120 s), --json PATH
(append one JSON line per run), --keep DIR (keep the member event files there).

The last line of stdout is a JSON summary: per protocol the min/median/max of every figure.
Requires: python3 -m pip install confluent-kafka (and kafka-python for --client kafka-python).
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENTS = os.path.join(ROOT, "tests", "clients")
MEMBER = os.path.join(CLIENTS, "group_member.py")
sys.path.insert(0, CLIENTS)
sys.dont_write_bytecode = True  # no __pycache__ in tests/clients

try:
    import group_tool  # noqa: E402 - needs the path above
except ImportError as e:
    sys.exit("rebalance-time.py needs confluent-kafka (python3 -m pip install confluent-kafka): %s" % e)

TAG = "rb%d" % int(time.time())


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


class Member:
    """One group_member.py process and its event file, read incrementally."""

    def __init__(self, name, argv, out_path, err_path):
        self.name = name
        self.out_path = out_path
        self.err_path = err_path
        self.events = []
        self._pos = 0
        self._partial = b""
        self.spawned_at = time.monotonic()
        self.err = open(err_path, "ab")
        self.proc = subprocess.Popen(argv + ["--out", out_path], stdin=subprocess.DEVNULL, stdout=self.err,
                                     stderr=self.err)
        self.killed_at = None

    def refresh(self):
        try:
            with open(self.out_path, "rb") as f:
                f.seek(self._pos)
                data = f.read()
        except FileNotFoundError:
            return
        self._pos += len(data)
        self._partial += data
        *lines, self._partial = self._partial.split(b"\n")
        for line in lines:
            if line.strip():
                try:
                    self.events.append(json.loads(line))
                except ValueError:
                    pass
        if self.killed_at is None and self.proc.poll() is not None and not any(
            e["ev"] == "closed" for e in self.events
        ):
            raise SystemExit("member %s exited with %s; see %s" % (self.name, self.proc.returncode, self.err_path))

    @property
    def running(self):
        return self.killed_at is None and self.proc.poll() is None

    def owned(self):
        owned = set()
        for e in self.events:
            if "owned" in e:
                owned = {tuple(x) for x in e["owned"]}
            elif e["ev"] == "closing":
                owned = set()
        return owned

    def recs(self):
        return [e for e in self.events if e["ev"] == "rec"]

    def started_at(self):
        for e in self.events:
            if e["ev"] == "started":
                return e["t"]
        return None

    def kill9(self):
        self.refresh()
        t = time.monotonic()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.killed_at = t
        return t

    def terminate(self, timeout):
        if not self.running:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log("member %s did not exit within %.0f s of SIGTERM; killing it" % (self.name, timeout))
            self.proc.kill()
            self.proc.wait()


def wait(what, timeout, members, cond):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        for m in members:
            m.refresh()
        ok, last = cond()
        if ok:
            return
        if time.monotonic() > deadline:
            raise SystemExit("timed out after %.0f s waiting until %s; last: %s" % (timeout, what, last))
        time.sleep(0.02)


def steady(members, all_tps):
    running = [m for m in members if m.running]
    seen = {}
    for m in running:
        owned = m.owned()
        if not owned:
            return False, "%s owns nothing" % m.name
        if not m.recs():
            return False, "%s has consumed nothing" % m.name
        for tp in owned:
            if tp in seen:
                return False, "%s and %s both own %s" % (seen[tp], m.name, tp)
            seen[tp] = m.name
    missing = sorted(set(all_tps) - set(seen))
    if missing:
        return False, "nobody owns %s" % missing
    return True, None


def first_after(members, tps, after, kind):
    """For each tp: the first time after `after` at which one of `members` logged `kind` for it
    (kind "rec": consumed it; "assigned": owned it). None if not yet for some tp."""
    firsts = {}
    for m in members:
        for e in m.events:
            if e["t"] <= after:
                continue
            if kind == "rec" and e["ev"] == "rec":
                tp = (e["topic"], e["p"])
                if tp in tps and (tp not in firsts or e["t"] < firsts[tp]):
                    firsts[tp] = e["t"]
            elif kind == "assigned" and "owned" in e:
                for tp in (tuple(x) for x in e["owned"]):
                    if tp in tps and (tp not in firsts or e["t"] < firsts[tp]):
                        firsts[tp] = e["t"]
    if set(firsts) != set(tps):
        return None, sorted(set(tps) - set(firsts))
    return firsts, None


def member_argv(args, protocol, topic, group):
    argv = [sys.executable, MEMBER, "--bootstrap", args.bootstrap, "--topic", topic, "--group", group,
            "--protocol", protocol, "--commit", "auto" if args.client == "confluent" else "sync-every-100"]
    if protocol == "classic":
        argv += ["--client", args.client, "--assignor", args.assignor,
                 "--session-timeout-ms", str(args.session_timeout_ms)]
    else:
        argv += ["--client", "confluent"]
        if args.remote_assignor:
            argv += ["--remote-assignor", args.remote_assignor]
    return argv


def one_run(args, protocol, run, workdir):
    topic = "rebalance-%s-%s-%d" % (TAG, protocol, run)
    group = "rebalance-%s-%s-%d" % (TAG, protocol, run)
    group_tool.create_topic(args.bootstrap, topic, args.partitions, args.replication_factor)
    all_tps = [(topic, p) for p in range(args.partitions)]
    feeder = group_tool.Feeder(args.bootstrap, topic, range(args.partitions), args.rate)
    members = []
    argv = member_argv(args, protocol, topic, group)

    def spawn(name):
        m = Member(name, argv + ["--client-id", "%s-%s" % (group, name)],
                   os.path.join(workdir, "%s-%s.jsonl" % (group, name)),
                   os.path.join(workdir, "%s-%s.stderr.log" % (group, name)))
        members.append(m)
        return m

    try:
        for i in range(args.members):
            spawn("m%d" % (i + 1))
        wait("%d members are steady" % args.members, args.timeout, members, lambda: steady(members, all_tps))

        # (a) kill the member with the most partitions.
        victim = max((m for m in members if m.running), key=lambda m: len(m.owned()))
        owned = victim.owned()
        t_kill = victim.kill9()
        survivors = [m for m in members if m.running]
        log("%s run %d: SIGKILLed %s owning %s" % (protocol, run, victim.name, sorted(owned)))
        result = {}

        def reconsumed():
            firsts, missing = first_after(survivors, owned, t_kill, "rec")
            if firsts is None:
                return False, "not consumed again yet: %s" % missing
            result["rec"] = firsts
            return True, None

        wait("the killed member's partitions are consumed again", args.timeout, members, reconsumed)
        assigned, _ = first_after(survivors, owned, t_kill, "assigned")
        kill_reconsumed = max(result["rec"].values()) - t_kill
        kill_reassigned = (max(assigned.values()) - t_kill) if assigned else None
        wait("the survivors are steady", args.timeout, members, lambda: steady(members, all_tps))

        # (b) add a member.
        newcomer = spawn("m%d" % (args.members + 1))
        t_add = newcomer.spawned_at

        def first_record():
            recs = newcomer.recs()
            return (True, None) if recs else (False, "the new member has consumed nothing yet")

        wait("the new member consumes", args.timeout, members, first_record)
        t_first = newcomer.recs()[0]["t"]
        t_subscribed = newcomer.started_at()
        first_assigned = next((e["t"] for e in newcomer.events if e["ev"] == "assigned" and e["owned"]), None)
        wait("the group is steady with the new member", args.timeout, members, lambda: steady(members, all_tps))
        return {
            "protocol": protocol,
            "client": args.client if protocol == "classic" else "confluent",
            "assignor": args.assignor if protocol == "classic" else (args.remote_assignor or "broker default"),
            "run": run,
            "members": args.members,
            "partitions": args.partitions,
            "rate": args.rate,
            "session_timeout_ms": args.session_timeout_ms if protocol == "classic" else None,
            "killed_partitions": len(owned),
            "kill_reassigned_ms": round(kill_reassigned * 1000, 1) if kill_reassigned is not None else None,
            "kill_reconsumed_ms": round(kill_reconsumed * 1000, 1),
            "add_first_record_ms": round((t_first - t_add) * 1000, 1),
            "add_subscribed_ms": round((t_subscribed - t_add) * 1000, 1) if t_subscribed else None,
            "subscribed_first_record_ms": round((t_first - t_subscribed) * 1000, 1) if t_subscribed else None,
            "subscribed_assigned_ms": round((first_assigned - t_subscribed) * 1000, 1)
            if (first_assigned and t_subscribed) else None,
        }
    finally:
        for m in members:
            m.terminate(30)
        report = feeder.stop()
        if report["failed"]:
            log("producer failures: %r" % report["failed"][:5])


FIGURES = [
    ("kill_reassigned_ms", "kill->reassigned"),
    ("kill_reconsumed_ms", "kill->reconsumed"),
    ("add_subscribed_ms", "add->subscribed"),
    ("subscribed_assigned_ms", "subscribed->assigned"),
    ("subscribed_first_record_ms", "subscribed->first rec"),
    ("add_first_record_ms", "add->first rec"),
]


def print_table(rows):
    head = ["protocol", "run"] + [label for _, label in FIGURES]
    widths = [max(len(h), 8) for h in head]
    print("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    for r in rows:
        cells = [r["protocol"], str(r["run"])] + [
            "-" if r[k] is None else "%.0f" % r[k] for k, _ in FIGURES
        ]
        print("  ".join(c.rjust(w) for c, w in zip(cells, widths)))


def summarize(rows):
    out = {}
    for protocol in sorted({r["protocol"] for r in rows}):
        mine = [r for r in rows if r["protocol"] == protocol]
        out[protocol] = {}
        for k, _ in FIGURES:
            vals = [r[k] for r in mine if r[k] is not None]
            if vals:
                out[protocol][k] = {
                    "min": min(vals),
                    "median": round(statistics.median(vals), 1),
                    "max": max(vals),
                }
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--protocol", choices=["classic", "consumer", "both"], default="both")
    ap.add_argument("--client", choices=["confluent", "kafka-python"], default="confluent")
    ap.add_argument("--assignor", default="range")
    ap.add_argument("--remote-assignor", default=None)
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--replication-factor", type=int, default=1)
    ap.add_argument("--rate", type=int, default=300)
    ap.add_argument("--session-timeout-ms", type=int, default=6000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--json", metavar="PATH", help="append one JSON line per run")
    ap.add_argument("--keep", metavar="DIR", help="keep the member event files in DIR")
    args = ap.parse_args()
    if args.members < 2 or args.partitions < args.members + 1:
        ap.error("need --members >= 2 and --partitions > --members (every member, the added one too, gets a partition)")
    protocols = ["classic", "consumer"] if args.protocol == "both" else [args.protocol]

    workdir = args.keep or tempfile.mkdtemp(prefix="rebalance-time-")
    os.makedirs(workdir, exist_ok=True)
    log("bootstrap %s; %d members on %d partitions; %d records/s; member files in %s"
        % (args.bootstrap, args.members, args.partitions, args.rate, workdir))
    rows = []
    try:
        for protocol in protocols:
            for run in range(1, args.runs + 1):
                row = one_run(args, protocol, run, workdir)
                rows.append(row)
                log("%s run %d: %s" % (protocol, run, json.dumps(row)))
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(json.dumps(row) + "\n")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(rows)
    print(json.dumps({"runs": rows, "summary": summarize(rows)}))


if __name__ == "__main__":
    main()
