#!/usr/bin/env python3
r"""Apache Kafka and Rivulet side by side: the same loads, one broker after the other, in one run
on this machine, printed with their ratio.

Usage:
  cargo build --release -p rivulet-broker
  python3 scripts/bench-vs-kafka.py --quick            # a short run (a few minutes)
  python3 scripts/bench-vs-kafka.py                    # the full run (1 GB per phase)
  python3 scripts/bench-vs-kafka.py --nodes 3          # three nodes, RF=3, acks=all, min ISR 2
  python3 scripts/bench-vs-kafka.py --flush every      # fsync after every message, both brokers
  python3 scripts/bench-vs-kafka.py --json results.jsonl

For each broker (Apache Kafka 4.3.1 from tools/apache-kafka, then `rivulet serve` from the release
build), on fresh data directories:
  1. start it (1 node, or 3 combined broker+controller nodes / a 3-node Rivulet cluster);
  2. for each driver (Kafka's kafka-producer-perf-test/kafka-consumer-perf-test, and
     `rivulet bench produce/consume`) and each record size (100 B, 1 KiB): create a topic with
     kafka-topics (same tool, same settings on both brokers), produce as fast as the broker takes
     it, then consume everything from the beginning;
  3. latency: produce 1 KiB records at a fixed rate below saturation (--rate) and take the
     driver's send -> acknowledgement percentiles (p50, p99, p99.9);
  4. broker CPU: utime and stime of every broker process (/proc/PID/stat) before and after each
     produce and consume phase, once the broker is idle again, as CPU-seconds per GB of record
     values, user and kernel apart; peak RSS is VmHWM at the end (summed over nodes);
  5. with --nodes 3: scripts/failover-time.py SIGKILLs the leader of a partition under an
     acks=all producer (one record every 5 ms); the figure is the longest gap between two
     acknowledgements around the kill (--failover-runs, default 1);
  6. stop it and delete its data.
Before each measured phase the script touches --warm-gb GiB of memory (on these virtual machines
the host takes back idle guest memory, and the first process to touch it again pays in kernel
time), so both brokers start each phase on warm memory.

Settings (equal for both; printed at the start of the run):
  acks=1 on one node; acks=all with RF=3 and min.insync.replicas=2 on three nodes.
  --flush default: no explicit flush per message (flush.messages and flush.ms at Long.MAX, both
  brokers' defaults); --flush every: flush.messages=1 (Kafka: log.flush.interval.messages=1,
  Rivulet: RIVULET_LOG__FLUSH_MESSAGES=1).
  Drivers run with their own defaults otherwise: the Java producer (linger.ms=5, batch.size=16384,
  idempotence off with acks=1), `rivulet bench` (librdkafka, linger.ms=5, batch.size=1000000).
  Topics have --partitions partitions (default 6).
MB = 1,000,000 bytes of record values. Ratio = Rivulet / Kafka (above 1 means Rivulet does more
of a "more is better" figure, or uses more of a cost).

Requires: java 17+ and mvn (tools/apache-kafka/kafka.sh resolves Kafka's jars from Maven
Central), and a release build of rivulet (--rivulet-bin, default target/release/rivulet or
$CARGO_TARGET_DIR/release/rivulet).
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KAFKA_SH = os.path.join(ROOT, "tools", "apache-kafka", "kafka.sh")
KAFKA_BIN = os.path.join(ROOT, "tools", "apache-kafka", "bin")
LOCAL_CLUSTER = os.path.join(ROOT, "scripts", "local-cluster.sh")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, env=None, timeout=1800, check=True):
    """Runs a command, returns its stdout; on failure prints its output and exits."""
    p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p.stdout


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_port(port, pid_fn, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if time.monotonic() > deadline:
            sys.exit(f"{what}: port {port} not open after {timeout}s")
        for pid in pid_fn():
            if not os.path.exists(f"/proc/{pid}"):
                sys.exit(f"{what}: process {pid} exited during start-up")
        time.sleep(0.2)


def cpu_ticks(pids):
    """(user, system) CPU seconds summed over pids."""
    user = system = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            # The command name may hold spaces; fields after ")" are fixed.
            fields = f.read().rsplit(")", 1)[1].split()
        user += int(fields[11])  # field 14, utime
        system += int(fields[12])  # field 15, stime
    return user / CLK_TCK, system / CLK_TCK


def wait_idle(pids, timeout=20.0):
    """Waits until the brokers burn less than 2 % of a core over half a second."""
    deadline = time.monotonic() + timeout
    last = sum(cpu_ticks(pids))
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = sum(cpu_ticks(pids))
        if now - last < 0.01:
            return
        last = now


def vm_hwm_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def warm_memory(gib):
    """Touches `gib` GiB, one byte per 4 KiB page, then frees it (see the module docs)."""
    if gib <= 0:
        return
    code = ("import mmap\n"
            f"m = mmap.mmap(-1, {int(gib * (1 << 30))})\n"
            "for i in range(0, len(m), 4096): m[i] = 1\n")
    subprocess.run([sys.executable, "-c", code], check=True)


class Kafka:
    name = "kafka"

    def __init__(self, args, workdir):
        self.args = args
        self.env = dict(os.environ, APACHE_KAFKA_DIR=os.path.join(workdir, "kafka"),
                        APACHE_KAFKA_PORT=str(args.kafka_port),
                        APACHE_KAFKA_CONTROLLER_PORT=str(args.kafka_port + 100))
        if args.flush == "every":
            self.env["APACHE_KAFKA_PROPS"] = "log.flush.interval.messages=1"

    def bootstrap(self):
        return ",".join(f"127.0.0.1:{self.args.kafka_port + i}" for i in range(self.args.nodes))

    def start(self):
        run([KAFKA_SH, "start", str(self.args.nodes)], env=self.env, timeout=300)

    def pids(self):
        out = []
        for n in range(1, self.args.nodes + 1):
            pid = run([KAFKA_SH, "pid", str(n)], env=self.env, check=False).strip()
            if pid:
                out.append(int(pid))
        return out

    def node_dirs(self):
        return self.env["APACHE_KAFKA_DIR"]

    def restart_cmd(self):
        return f"APACHE_KAFKA_DIR={self.env['APACHE_KAFKA_DIR']} " \
               f"APACHE_KAFKA_PORT={self.args.kafka_port} " \
               f"APACHE_KAFKA_CONTROLLER_PORT={self.args.kafka_port + 100} {KAFKA_SH} start 3"

    def stop(self):
        run([KAFKA_SH, "clean"], env=self.env, timeout=120, check=False)


class Rivulet:
    name = "rivulet"

    def __init__(self, args, workdir):
        self.args = args
        self.dir = os.path.join(workdir, "rivulet")
        self.proc = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RIVULET_")}
        self.env["RUST_LOG"] = "warn"
        if args.flush == "every":
            self.env["RIVULET_LOG__FLUSH_MESSAGES"] = "1"

    def bootstrap(self):
        return ",".join(f"127.0.0.1:{self.args.rivulet_port + i}" for i in range(self.args.nodes))

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        if self.args.nodes == 1:
            self.log = open(os.path.join(self.dir, "node.log"), "w")
            self.proc = subprocess.Popen(
                [self.args.rivulet_bin, "serve", "--data-dir", os.path.join(self.dir, "data"),
                 "--listen", f"127.0.0.1:{self.args.rivulet_port}"],
                env=self.env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                cwd=self.dir)
            wait_port(self.args.rivulet_port, self.pids, "rivulet")
        else:
            env = dict(self.env, RIVULET_BIN=self.args.rivulet_bin, RIVULET_LOCAL_DIR=self.dir,
                       RIVULET_LOCAL_KAFKA_PORT=str(self.args.rivulet_port),
                       RIVULET_LOCAL_CLUSTER_PORT=str(self.args.rivulet_port + 100))
            run([LOCAL_CLUSTER, "start"], env=env, timeout=300)
            self.cluster_env = env

    def pids(self):
        if self.args.nodes == 1:
            return [self.proc.pid] if self.proc and self.proc.poll() is None else []
        out = []
        for n in range(1, self.args.nodes + 1):
            try:
                with open(os.path.join(self.dir, f"node{n}", "pid")) as f:
                    out.append(int(f.read().strip()))
            except (OSError, ValueError):
                pass
        return out

    def node_dirs(self):
        return self.dir

    def restart_cmd(self):
        return " ".join(f"{k}={v}" for k, v in self.cluster_env.items()
                        if k.startswith("RIVULET_")) + f" {LOCAL_CLUSTER} start"

    def stop(self):
        if self.args.nodes == 1:
            if self.proc and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        else:
            run([LOCAL_CLUSTER, "clean"], env=self.cluster_env, timeout=120, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def kafka_tool(tool, *argv, timeout=1800):
    return run([os.path.join(KAFKA_BIN, f"{tool}.sh"), *argv], timeout=timeout)


def create_topic(bootstrap, topic, args):
    argv = ["--bootstrap-server", bootstrap, "--create", "--topic", topic,
            "--partitions", str(args.partitions), "--replication-factor", str(args.nodes)]
    if args.nodes > 1:
        argv += ["--config", "min.insync.replicas=2"]
    kafka_tool("kafka-topics", *argv)


def acks(args):
    return "all" if args.nodes > 1 else "1"


# --- drivers: each returns {"records_per_s", "mb_per_s", and for produce p50/p99/p999_ms} ---

PERF_LINE = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
    r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th")


def kafka_produce(bootstrap, topic, records, size, rate, args):
    out = kafka_tool(
        "kafka-producer-perf-test", "--topic", topic, "--num-records", str(records),
        "--record-size", str(size), "--throughput", str(rate or -1),
        "--producer-props", f"bootstrap.servers={bootstrap}", f"acks={acks(args)}")
    m = None
    for m in PERF_LINE.finditer(out):
        pass
    if not m:
        sys.exit(f"unexpected kafka-producer-perf-test output:\n{out[-2000:]}")
    rps = float(m.group(2))
    # The tool's latency percentiles are whole milliseconds.
    return {"records_per_s": rps, "mb_per_s": rps * size / 1e6, "p50_ms": float(m.group(6)),
            "p99_ms": float(m.group(8)), "p999_ms": float(m.group(9))}


def kafka_consume(bootstrap, topic, records, size, args):
    out = kafka_tool("kafka-consumer-perf-test", "--bootstrap-server", bootstrap,
                     "--topic", topic, "--messages", str(records), "--timeout", "60000")
    lines = [l for l in out.splitlines() if l.strip()]
    header = [h.strip() for h in lines[-2].split(",")]
    values = [v.strip() for v in lines[-1].split(",")]
    row = dict(zip(header, values))
    # fetch.* excludes the group join (rebalance.time.ms), which is not the broker's throughput.
    rps = float(row["fetch.nMsg.sec"])
    return {"records_per_s": rps, "mb_per_s": rps * size / 1e6}


def rivulet_bench(kind, bootstrap, topic, argv, args):
    path = os.path.join(args.workdir, "rivulet-bench.jsonl")
    if os.path.exists(path):
        os.remove(path)
    run([args.rivulet_bin, "bench", kind, "--bootstrap", bootstrap, "--topic", topic,
         "--json", path, *argv], env={k: v for k, v in os.environ.items()
                                      if k != "RIVULET_BOOTSTRAP"})
    with open(path) as f:
        r = json.loads(f.read().strip().splitlines()[-1])
    out = {"records_per_s": r["records_per_s"], "mb_per_s": r["mb_per_s"]}
    for k in ("p50_ms", "p99_ms", "p999_ms"):
        if r.get(k) is not None:
            out[k] = r[k]
    return out


def rivulet_produce(bootstrap, topic, records, size, rate, args):
    return rivulet_bench("produce", bootstrap, topic,
                         ["--records", str(records), "--record-bytes", str(size),
                          "--acks", acks(args), "--rate", str(rate)], args)


def rivulet_consume(bootstrap, topic, records, size, args):
    return rivulet_bench("consume", bootstrap, topic, ["--records", str(records)], args)


DRIVERS = {"kafka-perf": (kafka_produce, kafka_consume), "rivulet-bench": (rivulet_produce,
                                                                           rivulet_consume)}


def measured(broker, args, fn):
    """Runs fn on warm memory; returns its result plus the brokers' CPU over it."""
    warm_memory(args.warm_gb)
    pids = broker.pids()
    wait_idle(pids)
    u0, s0 = cpu_ticks(pids)
    t0 = time.monotonic()
    result = fn()
    wait_idle(pids)
    u1, s1 = cpu_ticks(pids)
    result["seconds"] = round(time.monotonic() - t0, 2)
    result["cpu_user_s"] = round(u1 - u0, 2)
    result["cpu_sys_s"] = round(s1 - s0, 2)
    return result


def bench_broker(broker, args):
    results = []
    log(f"\n==> {broker.name}: starting {args.nodes} node(s)")
    try:
        broker.start()
        b = broker.bootstrap()
        for driver in args.drivers:
            produce, consume = DRIVERS[driver]
            for size in args.sizes:
                records = args.records_100 if size <= 100 else args.records_1k
                topic = f"bench-{driver}-{size}"
                create_topic(b, topic, args)
                gb = records * size / 1e9
                log(f"  {driver}: produce {records} x {size} B")
                r = measured(broker, args, lambda: produce(b, topic, records, size, 0, args))
                results.append(dict(r, broker=broker.name, driver=driver, phase="produce",
                                    record_bytes=size, records=records, gb=gb))
                log(f"  {driver}: consume {records} x {size} B")
                r = measured(broker, args, lambda: consume(b, topic, records, size, args))
                results.append(dict(r, broker=broker.name, driver=driver, phase="consume",
                                    record_bytes=size, records=records, gb=gb))
            topic = f"latency-{driver}"
            create_topic(b, topic, args)
            n = args.rate * args.latency_secs
            log(f"  {driver}: latency, {n} x 1024 B at {args.rate}/s")
            r = measured(broker, args, lambda: produce(b, topic, n, 1024, args.rate, args))
            results.append(dict(r, broker=broker.name, driver=driver, phase="latency",
                                record_bytes=1024, records=n, gb=n * 1024 / 1e9))
        rss = [vm_hwm_mib(p) for p in broker.pids()]
        results.append({"broker": broker.name, "phase": "rss", "peak_rss_mib": round(sum(rss)),
                        "per_node_mib": [round(x) for x in rss]})
        if args.nodes == 3 and args.failover_runs > 0:
            results += failover(broker, b, args)
    finally:
        broker.stop()
    return results


def failover(broker, bootstrap, args):
    """scripts/failover-time.py against either broker: SIGKILL the leader of a partition under
    an acks=all producer (librdkafka, one record every 5 ms), time the next acknowledgement."""
    path = os.path.join(args.workdir, "failover.jsonl")
    if os.path.exists(path):
        os.remove(path)
    kill = f"kill -9 $(cat {broker.node_dirs()}/node{{id}}/pid)"
    log(f"  failover: {args.failover_runs} leader SIGKILL(s)")
    # Its progress (which node was killed, when the next ack came, the read-back check) goes
    # to our stderr. It exits 1 when the read-back finds an acknowledged record missing or at
    # another offset: that is recorded with the timing, not a reason to lose the whole run.
    p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "failover-time.py"),
                        "--bootstrap", bootstrap, "--runs", str(args.failover_runs),
                        "--kill-cmd", kill, "--restart-cmd", broker.restart_cmd(),
                        "--json", path],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=900)
    runs = []
    if os.path.exists(path):
        with open(path) as f:
            runs = [json.loads(l) for l in f if l.strip()]
    if not runs:
        log(f"  failover: no result (failover-time.py exited {p.returncode})")
        return []
    if p.returncode != 0:
        log(f"  failover: failover-time.py exited {p.returncode} (see its verify line above)")
    return [{"broker": broker.name, "phase": "failover", "exit_code": p.returncode,
             "kill_to_first_ack_s": [r["kill_to_first_ack_s"] for r in runs],
             "max_ack_gap_s": [r["max_ack_gap_s"] for r in runs]}]


def fmt(v, digits=1):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}" if v != int(v) or digits else f"{v:.0f}"


def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "-"


def report(results, args):
    by = {}
    for r in results:
        by[(r["broker"], r.get("driver"), r["phase"], r.get("record_bytes"))] = r
    rows = []
    for driver in args.drivers:
        for size in args.sizes:
            for phase in ("produce", "consume"):
                k, v = (by.get(("kafka", driver, phase, size)),
                        by.get(("rivulet", driver, phase, size)))
                if not (k and v):
                    continue
                for metric, key in (("MB/s", "mb_per_s"), ("records/s", "records_per_s")):
                    rows.append((driver, f"{phase} {size} B", metric, k[key], v[key]))
                for metric, key in (("CPU-s/GB user", "cpu_user_s"), ("CPU-s/GB kernel", "cpu_sys_s")):
                    rows.append((driver, f"{phase} {size} B", metric, k[key] / k["gb"],
                                 v[key] / v["gb"]))
        k, v = by.get(("kafka", driver, "latency", 1024)), by.get(("rivulet", driver, "latency", 1024))
        if k and v:
            for metric in ("p50_ms", "p99_ms", "p999_ms"):
                rows.append((driver, f"latency 1 KiB at {args.rate}/s", metric.replace("_", " "),
                             k.get(metric), v.get(metric)))
    k, v = by.get(("kafka", None, "rss", None)), by.get(("rivulet", None, "rss", None))
    if k and v:
        rows.append(("-", "whole run", "peak RSS MiB", k["peak_rss_mib"], v["peak_rss_mib"]))
    k, v = by.get(("kafka", None, "failover", None)), by.get(("rivulet", None, "failover", None))
    if k and v:
        # The longest gap between acknowledgements, not failover-time.py's "kill to first ack":
        # a response the dying leader had already sent can arrive just after the kill and make
        # that figure a few milliseconds.
        kk, vv = max(k["max_ack_gap_s"]), max(v["max_ack_gap_s"])
        rows.append(("librdkafka", "leader SIGKILL, acks=all", "longest ack gap s (max of runs)",
                     kk, vv))
    print(f"\n| driver | load | metric | Apache Kafka | Rivulet | Rivulet / Kafka |")
    print("|---|---|---|---:|---:|---:|")
    for d, load, metric, kv, rv in rows:
        digits = 2 if "CPU" in metric or "ms" in metric or "gap" in metric else 1
        print(f"| {d} | {load} | {metric} | {fmt(kv, digits)} | {fmt(rv, digits)} | {ratio(rv, kv)} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 1)[1])
    ap.add_argument("--quick", action="store_true",
                    help="small loads: 300k x 100 B, 100k x 1 KiB, 10 s of latency")
    ap.add_argument("--nodes", type=int, choices=(1, 3), default=1)
    ap.add_argument("--flush", choices=("default", "every"), default="default")
    ap.add_argument("--drivers", default="kafka-perf,rivulet-bench")
    ap.add_argument("--brokers", default="kafka,rivulet")
    ap.add_argument("--sizes", default="100,1024")
    ap.add_argument("--records-100", type=int, help="default 5,000,000 (--quick 300,000)")
    ap.add_argument("--records-1k", type=int, help="default 1,000,000 (--quick 100,000)")
    ap.add_argument("--rate", type=int, help="records/s of the latency phase (default 10,000, "
                    "--quick 5,000)")
    ap.add_argument("--latency-secs", type=int, help="default 30 (--quick 10)")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--warm-gb", type=float, default=2.0)
    ap.add_argument("--failover-runs", type=int, default=1,
                    help="with --nodes 3: leader SIGKILLs timed by scripts/failover-time.py")
    ap.add_argument("--kafka-port", type=int, default=29092)
    # Below the kernel's ephemeral range (32768+): a cluster port there can be taken by an
    # outgoing connection's source port before its node binds it.
    ap.add_argument("--rivulet-port", type=int, default=21092)
    ap.add_argument("--rivulet-bin")
    ap.add_argument("--workdir", help="where data directories go (default: a temp dir)")
    ap.add_argument("--json", help="append every result as one JSON line to this file")
    args = ap.parse_args()
    # --quick changes the defaults only: explicit sizes win.
    defaults = ((300_000, 100_000, 5000, 10) if args.quick
                else (5_000_000, 1_000_000, 10_000, 30))
    for name, value in zip(("records_100", "records_1k", "rate", "latency_secs"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.drivers = [d for d in args.drivers.split(",") if d]
    for d in args.drivers:
        if d not in DRIVERS:
            sys.exit(f"unknown driver {d!r}: choose from {', '.join(DRIVERS)}")
    args.sizes = [int(s) for s in args.sizes.split(",")]
    if not args.rivulet_bin:
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        args.rivulet_bin = os.path.join(target, "release", "rivulet")
    if not os.access(args.rivulet_bin, os.X_OK):
        sys.exit(f"{args.rivulet_bin} missing: cargo build --release -p rivulet-broker "
                 "(or pass --rivulet-bin)")
    if not shutil.which("java"):
        sys.exit("java not found: install a Java 17+ runtime (apt-get install openjdk-17-jre-headless)")
    run([KAFKA_SH, "classpath"], timeout=900)
    own_workdir = args.workdir is None
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="bench-vs-kafka-")
    log(f"bench-vs-kafka: {args.nodes} node(s), acks={acks(args)}, flush={args.flush}, "
        f"partitions={args.partitions}, sizes={args.sizes}, records 100 B={args.records_100}, "
        f"1 KiB={args.records_1k}, latency {args.rate}/s x {args.latency_secs}s, "
        f"warm {args.warm_gb} GiB, load average {os.getloadavg()[0]:.1f}, workdir {args.workdir}")
    results = []
    try:
        for name in args.brokers.split(","):
            broker = {"kafka": Kafka, "rivulet": Rivulet}[name](args, args.workdir)
            results += bench_broker(broker, args)
    finally:
        if own_workdir:
            shutil.rmtree(args.workdir, ignore_errors=True)
    meta = {"nodes": args.nodes, "flush": args.flush, "partitions": args.partitions,
            "load_average_1m_at_end": round(os.getloadavg()[0], 1),
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if args.json:
        with open(args.json, "a") as f:
            for r in results:
                f.write(json.dumps(dict(r, **meta)) + "\n")
    print(f"\nbench-vs-kafka: {args.nodes} node(s), acks={acks(args)}, flush={args.flush}, "
          f"{args.partitions} partitions; load average at the end {meta['load_average_1m_at_end']}")
    report(results, args)


if __name__ == "__main__":
    main()
