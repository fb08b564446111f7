"""`scripts/bench --cluster N`: what replication costs, on N local brokers.

Every broker runs on 127.0.0.1 with ports of its own (Kafka and controller listeners, every node a
controller voter) and is pinned to the broker core like the single-node run, so the figures show
what the extra copies cost on the same hardware; sluice-bench runs on the load core. Figures:

  1. produce 1 KiB acks=all to an RF N topic on the cluster against the same on an RF 1 topic on
     one broker (fresh, alone), as a ratio;
  2. CPU per MB of each broker during that produce (utime + stime from /proc/PID/stat before and
     after), next to the CPU per MB of one broker serving the RF 1 produce and of the leader
     serving a catch-up consumer of the RF N topic;
  3. end to end at a fixed 50 MB/s with RF N acks=all: p50, p99, p99.9;
  4. kill -9 of a partition's leader while a producer (confluent-kafka, acks=all) sends a record
     every FAILOVER_SEND_INTERVAL_SECS: the time from the kill to the first acknowledgement of a
     record sent after it (which only a new leader can give); skipped without confluent-kafka.

`bench` is the scripts/bench module: its process, broker and table helpers are reused here.
"""

import json
import subprocess
import time

FAILOVER_SEND_INTERVAL_SECS = 0.005
# A failover that takes longer than this is reported as not done: far above the fencing session
# timeout (9 s by default) plus an election.
FAILOVER_SECS_MAX = 60
TOPIC_READY_SECS_MAX = 30


def node_argv(bench, binary, node, ports, data_dir):
    voters = ",".join(f"{i}@127.0.0.1:{controller}" for i, (_, controller) in sorted(ports.items()))
    kafka, controller = ports[node]
    return bench.pinned(bench.BROKER_CORE, [
        binary, "serve", "--node-id", node, "--listen", f"127.0.0.1:{kafka}",
        "--controller-listen", f"127.0.0.1:{controller}", "--controller-voters", voters,
        "--data-dir", data_dir / f"node-{node}", "--shards", "1"])


def start_cluster(bench, size, data_dir, results_dir):
    """N brokers, node ids 1..N; every one is started before any is waited for, as the voters
    wait for each other."""
    binary = bench.REPO / "target" / "release" / "sluice"
    ports = {node: (bench.free_port(), bench.free_port()) for node in range(1, size + 1)}
    nodes = {}
    for node in ports:
        nodes[node] = bench.Broker(f"node-{node}", ports[node][0],
                                   node_argv(bench, binary, node, ports, data_dir),
                                   results_dir / f"cluster-node-{node}.log")
        log = open(nodes[node].log_path, "a")
        nodes[node].process = subprocess.Popen([str(arg) for arg in nodes[node].argv], stdout=log,
                                               stderr=subprocess.STDOUT)
    for broker in nodes.values():
        bench.wait_listening(broker.port, broker.process, bench.BROKER_START_SECS_MAX)
    return nodes


def bootstrap_of(nodes, without=None):
    """Every node's address but `without`'s, comma-separated (confluent-kafka's form)."""
    return ",".join(broker.bootstrap for node, broker in nodes.items() if node != without)


def first_address(nodes):
    return next(iter(nodes.values())).bootstrap


def sluice_cli(bench, argv, results_dir, timeout=60):
    return bench.run([str(bench.REPO / "target" / "release" / "sluice")] + [str(arg) for arg in argv],
                     results_dir / "cluster-cli.log", timeout=timeout)


def describe_partition(bench, nodes, topic, results_dir, without=None):
    """(leader, ISR) of partition 0 of `topic`, or None while it is unknown."""
    bootstrap = next(broker.bootstrap for node, broker in nodes.items() if node != without)
    done = sluice_cli(bench, ["topic", "describe", topic, "-b", bootstrap], results_dir)
    if done.returncode != 0:
        return None
    for line in done.stdout.splitlines():
        fields = line.replace("\t", " ").split()
        if "Partition:" in fields and "Leader:" in fields and "Isr:" in fields:
            leader = int(fields[fields.index("Leader:") + 1])
            isr = [int(member) for member in fields[fields.index("Isr:") + 1].split(",") if member]
            return leader, isr
    return None


def create_topic(bench, nodes, topic, results_dir):
    """Creates `topic` with one partition on every broker and returns its leader once the ISR
    holds them all."""
    sluice_cli(bench, ["topic", "create", topic, "--partitions", "1", "--replication-factor", len(nodes),
                       "-b", first_address(nodes)], results_dir)
    deadline = time.monotonic() + TOPIC_READY_SECS_MAX
    while time.monotonic() < deadline:
        described = describe_partition(bench, nodes, topic, results_dir)
        if described and described[0] in nodes and len(described[1]) == len(nodes):
            return described[0]
        time.sleep(0.2)
    raise RuntimeError(f"{topic}: no leader with a full ISR after {TOPIC_READY_SECS_MAX} s")


def bench_run(bench, bootstrap, name, bench_args, results_dir, brokers):
    """One sluice-bench run; returns (its JSON report, CPU seconds of each broker in `brokers`)."""
    json_path = results_dir / f"cluster-{name}.json"
    argv = bench.pinned(bench.LOAD_CORE, [bench.REPO / "target" / "release" / "sluice-bench", "--bootstrap",
                                          bootstrap, "--json", json_path] + bench_args)
    before = {node: broker.cpu_secs() for node, broker in brokers.items()}
    done = bench.run(argv, results_dir / f"cluster-{name}.log", check=False)
    cpu = {node: broker.cpu_secs() - before[node] for node, broker in brokers.items()}
    if done.returncode not in (0, 2) or not json_path.exists():
        raise RuntimeError(f"sluice-bench {name} failed: {(done.stderr or done.stdout).strip()[-300:]}")
    return json.loads(json_path.read_text()), cpu


def moved_mb(report):
    side = report.get("produce") or report.get("consume")
    return side["throughput"]["bytes"] / 1e6


def cpu_ms_per_mb(cpu_secs, mb):
    return 1000 * cpu_secs / mb if mb else None


def rf1_baseline(bench, args, results_dir):
    """RF 1 acks=all produce on one fresh broker, with its CPU per MB."""
    broker = bench.sluice_broker(args.data_dir, results_dir)
    broker.start()
    try:
        produce = ["--workload", "produce", "--partitions", "1", "--record-size", str(bench.RECORD_BYTES),
                   "--duration", str(args.duration), "--acks", "all", "--topic", "bench-rf1"]
        report, cpu = bench_run(bench, broker.bootstrap, "rf1-produce", produce, results_dir, {1: broker})
    finally:
        broker.stop()
    return {"summary": bench.summarize(report), "broker_cpu_ms_per_mb": cpu_ms_per_mb(cpu[1], moved_mb(report))}


def replicated_produce(bench, args, nodes, results_dir):
    """RF N acks=all produce at full speed, then a catch-up consume of what it wrote."""
    topic = "bench-replicated"
    leader = create_topic(bench, nodes, topic, results_dir)
    produce = ["--workload", "produce", "--partitions", "1", "--record-size", str(bench.RECORD_BYTES),
               "--duration", str(args.duration), "--acks", "all", "--topic", topic]
    # sluice-bench's consumers talk only to the broker they bootstrap from: the leader.
    report, cpu = bench_run(bench, nodes[leader].bootstrap, "produce", produce, results_dir, nodes)
    mb = moved_mb(report)
    consumed, consume_cpu = bench_run(bench, nodes[leader].bootstrap, "consume",
                                      ["--workload", "consume", "--topic", topic], results_dir, nodes)
    return {
        "leader": leader,
        "summary": bench.summarize(report),
        "broker_cpu_ms_per_mb": {str(node): cpu_ms_per_mb(secs, mb) for node, secs in cpu.items()},
        "consume": bench.summarize(consumed),
        "consume_leader_cpu_ms_per_mb": cpu_ms_per_mb(consume_cpu[leader], moved_mb(consumed)),
    }


def replicated_e2e(bench, args, nodes, results_dir):
    topic = "bench-replicated-e2e"
    leader = create_topic(bench, nodes, topic, results_dir)
    e2e = ["--workload", "e2e", "--partitions", "1", "--record-size", str(bench.RECORD_BYTES), "--acks", "all",
           "--rate", str(bench.E2E_RATE_RECORDS_PER_SEC), "--duration", str(args.duration), "--topic", topic]
    report, _ = bench_run(bench, nodes[leader].bootstrap, "e2e-50mbs", e2e, results_dir, nodes)
    return bench.summarize(report)


def failover(bench, nodes, results_dir):
    """kill -9 of the leader of a fresh RF N topic while records are produced: seconds from the
    kill to the first acknowledgement of a record sent after it."""
    try:
        import confluent_kafka
    except ImportError:
        bench.note("skipping the failover time: the confluent-kafka Python package is not installed")
        return None
    topic = "bench-failover"
    leader = create_topic(bench, nodes, topic, results_dir)
    producer = confluent_kafka.Producer({
        "bootstrap.servers": bootstrap_of(nodes), "acks": "all", "linger.ms": 0,
        "message.timeout.ms": FAILOVER_SECS_MAX * 1000, "topic.metadata.refresh.fast.interval.ms": 10})
    producer.produce(topic, b"before the kill", partition=0)
    if producer.flush(TOPIC_READY_SECS_MAX) != 0:
        raise RuntimeError("failover: the first record was not acknowledged")
    acked_at = []

    def delivered(error, _message):
        if error is None and not acked_at:
            acked_at.append(time.monotonic())

    killed_at = time.monotonic()
    nodes[leader].process.kill()
    nodes[leader].process.wait(timeout=10)
    while not acked_at and time.monotonic() - killed_at < FAILOVER_SECS_MAX:
        producer.produce(topic, b"after the kill", partition=0, on_delivery=delivered)
        producer.poll(FAILOVER_SEND_INTERVAL_SECS)
    producer.flush(0)
    described = describe_partition(bench, nodes, topic, results_dir, without=leader)
    return {"killed_leader": leader, "new_leader": described[0] if described else None,
            "secs": acked_at[0] - killed_at if acked_at else None}


def run(bench, args, results, results_dir):
    """Runs every cluster figure into results["cluster"]."""
    size = args.cluster
    cluster = {"size": size}
    results["cluster"] = cluster
    bench.step("RF 1 acks=all on one broker (the baseline)")
    cluster["rf1"] = rf1_baseline(bench, args, results_dir)
    bench.note(f"RF 1: {bench.describe(cluster['rf1']['summary'])}")
    bench.step(f"{size} brokers on 127.0.0.1")
    data_dir = args.data_dir / "cluster"
    nodes = start_cluster(bench, size, data_dir, results_dir)
    try:
        cluster["replicated"] = replicated_produce(bench, args, nodes, results_dir)
        bench.note(f"RF {size}: {bench.describe(cluster['replicated']['summary'])}")
        cluster["e2e_50mbs"] = replicated_e2e(bench, args, nodes, results_dir)
        bench.note(f"RF {size} e2e 50 MB/s: {bench.describe(cluster['e2e_50mbs'])}")
        cluster["failover"] = failover(bench, nodes, results_dir)
        bench.note(f"failover: {cluster['failover']}")
    except RuntimeError as error:
        bench.note(f"cluster: {error}")
        cluster["error"] = str(error)
    finally:
        for broker in nodes.values():
            broker.stop()


def format_ms(value):
    return "—" if value is None else f"{value:.2f} ms"


def table(bench, results):
    """The cluster figures as a markdown table (figure, value, note)."""
    cluster = results["cluster"]
    size = cluster["size"]
    rf1 = cluster.get("rf1") or {}
    replicated = cluster.get("replicated") or {}
    fmt = bench.format_value
    rf1_mb = (rf1.get("summary") or {}).get("produce_mb_per_sec")
    rf3_mb = (replicated.get("summary") or {}).get("produce_mb_per_sec")
    ratio = f"{rf3_mb / rf1_mb:.2f}" if rf1_mb and rf3_mb else "—"
    rows = [
        ["produce 1 KiB acks=all, RF 1, one broker", fmt(rf1_mb, "MB/s"), "baseline"],
        [f"produce 1 KiB acks=all, RF {size}, {size} brokers", fmt(rf3_mb, "MB/s"),
         f"ratio to RF 1: {ratio}"],
        [f"  RF {size} acks=all ack latency p99", fmt((replicated.get("summary") or {}).get("ack_p99_us"), "µs"),
         ""],
        ["RF 1 produce: broker CPU per MB", format_ms(rf1.get("broker_cpu_ms_per_mb")), "CPU ms per MB produced"],
    ]
    for node, per_mb in sorted((replicated.get("broker_cpu_ms_per_mb") or {}).items()):
        role = "leader" if int(node) == replicated.get("leader") else "follower"
        rows.append([f"RF {size} produce: node {node} ({role}) CPU per MB", format_ms(per_mb),
                     "CPU ms per MB replicated"])
    rows.append(["catch-up consume of that topic: leader CPU per MB",
                 format_ms(replicated.get("consume_leader_cpu_ms_per_mb")),
                 f"at {fmt((replicated.get('consume') or {}).get('consume_mb_per_sec'), 'MB/s')}"])
    e2e = cluster.get("e2e_50mbs") or {}
    for label, key in (("p50", "e2e_p50_us"), ("p99", "e2e_p99_us"), ("p99.9", "e2e_p99_9_us")):
        rows.append([f"e2e 50 MB/s 1 KiB RF {size} acks=all: {label}", fmt(e2e.get(key), "µs"),
                     f"consumed {fmt(e2e.get('consume_mb_per_sec'), 'MB/s')}" if label == "p50" else ""])
    failed = cluster.get("failover") or {}
    rows.append(["kill -9 of the leader to the first acks=all ack on the new leader",
                 fmt(failed.get("secs"), "s"),
                 f"node {failed.get('killed_leader')} killed, node {failed.get('new_leader')} leads" if failed else
                 "not measured"])
    verify = sum((part or {}).get("verify_errors") or 0 for part in (replicated.get("consume"), e2e))
    rows.append(["lost + duplicated + reordered (consume, e2e)", f"{verify:g}", ""])
    if cluster.get("error"):
        rows.append(["error", cluster["error"], ""])
    return bench.markdown(["figure", "value", "note"], rows)
