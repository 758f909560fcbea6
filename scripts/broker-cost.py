#!/usr/bin/env python3
"""A broker's cost per GB: disk bytes written per byte produced and CPU-seconds per GB.

Usage: scripts/broker-cost.py BROKER_BINARY LABEL RECORDS [CLIENT_BINARY]

Starts `BROKER_BINARY serve` on a fresh data directory (ports 19392 and 19644), produces
RECORDS records of 1 KiB with acks=1 to a 6-partition topic with `rivulet bench produce`
(CLIENT_BINARY, default the broker binary), waits until the broker is idle, then consumes
everything back with `rivulet bench consume`. Per phase it prints the broker's user and
kernel CPU-seconds per GB (from /proc/PID/stat) and its /proc/PID/io write_bytes and wchar
per byte produced; after the produce, the data directory's size per byte produced.

Before each phase it touches 3 GB of memory: the VMs here reclaim idle guest memory and the
first process to touch it again pays in kernel time (compare warm with warm). Linux only.
"""
import json, os, shutil, signal, socket, subprocess, sys, tempfile, time

binary, label, records = sys.argv[1], sys.argv[2], sys.argv[3]
client = sys.argv[4] if len(sys.argv) > 4 else binary
work = tempfile.mkdtemp(prefix=f"broker-cost-{label}-")
data = os.path.join(work, "data")
port, admin = 19392, 19644
tick = os.sysconf("SC_CLK_TCK")

def touch_memory():
    # The host reclaims idle guest memory; touching it first keeps kernel time honest.
    b = bytearray(3 << 30)
    for i in range(0, len(b), 4096):
        b[i] = 1
    del b

def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) / tick, int(f[12]) / tick

def io(pid):
    d = {}
    for line in open(f"/proc/{pid}/io"):
        k, v = line.split(":")
        d[k] = int(v)
    return d

def wait_idle(pid):
    last = sum(cpu(pid))
    while True:
        time.sleep(2)
        now = sum(cpu(pid))
        if now - last < 0.02:
            return
        last = now

def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total

shutil.rmtree(data, ignore_errors=True)
log = open(os.path.join(work, "serve.log"), "w")
broker = subprocess.Popen([binary, "serve", "--data-dir", data, "--listen", f"127.0.0.1:{port}",
                           "--admin-listen", f"127.0.0.1:{admin}"], stdout=log, stderr=log)
try:
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline:
                raise SystemExit("broker did not listen")
            time.sleep(0.2)
    time.sleep(2)
    results = {"label": label}
    for phase, args in [
        ("produce", ["bench", "produce", "--topic", "bench", "--partitions", "6", "--records",
                     records, "--record-bytes", "1024", "--acks", "1"]),
        ("consume", ["bench", "consume", "--topic", "bench"]),
    ]:
        wait_idle(broker.pid)
        touch_memory()
        u0, s0 = cpu(broker.pid)
        io0 = io(broker.pid)
        t0 = time.time()
        jpath = os.path.join(work, f"{phase}.jsonl")
        out = subprocess.run([client] + args + ["--bootstrap", f"127.0.0.1:{port}", "--json", jpath],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stdout, out.stderr)
            raise SystemExit(f"{phase} failed")
        wait_idle(broker.pid)
        u1, s1 = cpu(broker.pid)
        io1 = io(broker.pid)
        res = json.loads(open(jpath).read().strip().splitlines()[-1])
        gb = 1024 * int(records) / 1e9
        results[phase] = {
            "MB_per_s": res["mb_per_s"],
            "user_s_per_GB": round((u1 - u0) / gb, 2),
            "sys_s_per_GB": round((s1 - s0) / gb, 2),
            "cpu_s_per_GB": round((u1 - u0 + s1 - s0) / gb, 2),
            "disk_write_bytes_per_byte": round((io1["write_bytes"] - io0["write_bytes"]) / (gb * 1e9), 2),
            "wchar_per_byte": round((io1["wchar"] - io0["wchar"]) / (gb * 1e9), 2),
            "wall_s": round(time.time() - t0, 1),
        }
        if phase == "produce":
            results[phase]["data_dir_bytes_per_byte"] = round(du(data) / (gb * 1e9), 2)
    print(json.dumps(results))
finally:
    broker.send_signal(signal.SIGTERM)
    try:
        broker.wait(30)
    except subprocess.TimeoutExpired:
        broker.kill()
        broker.wait()
    shutil.rmtree(work, ignore_errors=True)
