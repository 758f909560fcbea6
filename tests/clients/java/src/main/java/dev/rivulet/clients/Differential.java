package dev.rivulet.clients;

import java.io.FileOutputStream;
import java.io.OutputStreamWriter;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.DeleteRecordsOptions;
import org.apache.kafka.clients.admin.DescribeLogDirsOptions;
import org.apache.kafka.clients.admin.ListOffsetsOptions;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Differential conformance: the same client calls against any broker, writing what the client
 * observes as JSON lines, one per step: {@code {"step": NAME, "obs": VALUE}}. tests/differential.rs
 * runs it against Apache Kafka and against Rivulet and compares the two files step by step.
 *
 * <pre>
 *   java ... dev.rivulet.clients.Main differential BOOTSTRAP PREFIX   (-Drivulet.out=FILE)
 * </pre>
 *
 * Observations are kept to what a client can rely on: error classes (the Kafka error code the
 * client mapped; never the message text), offsets, timestamps, counts, states, config values.
 * What legitimately differs between two brokers is normalized here, not dropped: timestamps are
 * written relative to {@link #BASE_TS} (the scenarios set them) or as "append-time" when the
 * broker stamped them within the step; node ids, ports, cluster ids and topic ids become
 * booleans ("present") or placeholders. A step that throws records its error and the run goes on,
 * so one difference never hides the others.
 */
final class Differential {
    /**
     * The CreateTime every scenario record gets (plus a small offset), so timestamps compare.
     * An hour before the run: a fixed date long past would be older than the default 7-day
     * retention, and Apache Kafka's first retention check (30 s after it starts) deletes such
     * records in the middle of the run.
     */
    static final long BASE_TS = System.currentTimeMillis() / 1000 * 1000 - 3_600_000;

    /** Short waits: every step is expected to answer at once on a healthy single node. */
    static final long CALL_TIMEOUT_MS = 15_000;

    /**
     * For the calls that only end by timing out on both brokers (the client retries a retriable
     * error until its deadline): long enough for one answer, short enough to keep the run fast.
     */
    static final int SHORT_TIMEOUT_MS = 1_000;

    /** How long a successful change may take to show in a describe (see {@link #settled}). */
    static final long SETTLE_MS = 2_000;

    private final String bootstrap;
    private final String prefix;
    private final PrintWriter out;
    private Admin admin;
    private long lastStepNanos = System.nanoTime();

    private Differential(String bootstrap, String prefix, PrintWriter out) {
        this.bootstrap = bootstrap;
        this.prefix = prefix;
        this.out = out;
    }

    /** A step's body: returns the observation (any JSON-able value). */
    @FunctionalInterface
    interface Body {
        Object call() throws Exception;
    }

    static void run(String bootstrap, String prefix) throws Exception {
        String path = System.getProperty("rivulet.out");
        if (path == null) {
            throw new Main.CheckFailed("-Drivulet.out=FILE is required (where the observations go)");
        }
        try (PrintWriter out = new PrintWriter(new OutputStreamWriter(new FileOutputStream(path), StandardCharsets.UTF_8));
                Admin admin = Admin.create(Main.common(bootstrap, "differential-admin"))) {
            Differential d = new Differential(bootstrap, prefix, out);
            d.admin = admin;
            d.all();
        }
    }

    private void all() throws Exception {
        cluster();
        produceMatrix();
        logAppendTime();
        fetchAndListOffsets();
        createTopicsBad();
        deleteTopics();
        configs();
        createPartitions();
        deleteRecords();
        groups("classic");
        groups("consumer");
        assignCommit();
        patternSubscribe();
        staticMember();
        groupOffsetsAdmin();
        unknownTopics();
        logDirs();
    }

    // ---- recording ----

    private void record(String step, Object obs) {
        Map<String, Object> line = new LinkedHashMap<>();
        line.put("step", step);
        line.put("obs", obs);
        out.println(Json.write(line));
        out.flush();
        // The time since the previous step, to see where a slow run spends it.
        long now = System.nanoTime();
        Main.step(step + " (" + TimeUnit.NANOSECONDS.toMillis(now - lastStepNanos) + " ms)");
        lastStepNanos = now;
    }

    private void step(String step, Body body) {
        Object obs;
        try {
            obs = body.call();
        } catch (Throwable t) {
            obs = Map.of("error", errorName(t));
        }
        record(step, obs);
    }

    /** The class of the error the client raised, unwrapped from the future's wrappers. */
    static String errorName(Throwable t) {
        Throwable e = t;
        while ((e instanceof ExecutionException || e instanceof CompletionException) && e.getCause() != null) {
            e = e.getCause();
        }
        String name = e.getClass().getSimpleName();
        // A KafkaException around a more specific cause (the producer's callbacks) names both.
        if (e.getClass() == org.apache.kafka.common.KafkaException.class && e.getCause() != null) {
            name += "(" + e.getCause().getClass().getSimpleName() + ")";
        }
        return name;
    }

    static <T> T get(KafkaFuture<T> f) throws Exception {
        return f.get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS);
    }

    /** "ok" for a call that succeeded, else its error. */
    static Object outcome(KafkaFuture<?> f) {
        try {
            get(f);
            return "ok";
        } catch (Throwable t) {
            return Map.of("error", errorName(t));
        }
    }

    private String t(String name) {
        return prefix + "-" + name;
    }

    private void createTopic(String name, int partitions, Map<String, String> configs) throws Exception {
        get(admin.createTopics(List.of(new NewTopic(name, partitions, (short) 1).configs(configs))).all());
        // Both brokers answer CreateTopics before every partition has a leader everywhere: wait
        // until the metadata says so, so the next step does not race it.
        Main.pollUntil("topic " + name + " has leaders", () -> sleepQuietly(50), () -> {
            try {
                TopicDescription d = get(admin.describeTopics(List.of(name)).allTopicNames()).get(name);
                return d.partitions().size() == partitions
                        && d.partitions().stream().allMatch(p -> p.leader() != null && !p.leader().isEmpty());
            } catch (Exception e) {
                return false;
            }
        }, () -> name);
    }

    static void sleepQuietly(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private Properties producerProps(String acks, String compression, Boolean idempotence) {
        Properties p = Main.common(bootstrap, "differential-producer");
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        p.put("acks", acks);
        p.put("compression.type", compression);
        if (idempotence != null) {
            p.put("enable.idempotence", idempotence.toString());
        }
        p.put("linger.ms", "20");
        p.put("max.block.ms", "5000");
        p.put("delivery.timeout.ms", "20000");
        return p;
    }

    private Properties consumerProps(String group, String protocol) {
        Properties p = Main.common(bootstrap, "differential-consumer");
        p.put("key.deserializer", StringDeserializer.class.getName());
        p.put("value.deserializer", StringDeserializer.class.getName());
        p.put("enable.auto.commit", "false");
        p.put("auto.offset.reset", "earliest");
        if (group != null) {
            p.put("group.id", group);
            p.put("group.protocol", protocol);
            if (protocol.equals("classic")) {
                p.put("session.timeout.ms", "6000");
                p.put("heartbeat.interval.ms", "300");
            }
        }
        return p;
    }

    /** Sends {@code values} to one partition, with CreateTime BASE_TS + ts[i]; returns the acks. */
    private List<Object> send(KafkaProducer<String, String> producer, String topic, Integer partition,
            List<String> values, long[] ts) throws Exception {
        List<java.util.concurrent.Future<RecordMetadata>> futures = new ArrayList<>();
        for (int i = 0; i < values.size(); i++) {
            ProducerRecord<String, String> r = new ProducerRecord<>(topic, partition, BASE_TS + ts[i], "k" + i, values.get(i));
            r.headers().add("h", ("hv" + i).getBytes(StandardCharsets.UTF_8));
            futures.add(producer.send(r));
        }
        producer.flush();
        List<Object> acks = new ArrayList<>();
        for (var f : futures) {
            try {
                RecordMetadata m = f.get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS);
                acks.add(List.of(m.partition(), m.offset(), relTs(m.timestamp())));
            } catch (Throwable e) {
                acks.add(Map.of("error", errorName(e)));
            }
        }
        return acks;
    }

    /** A timestamp relative to BASE_TS when a scenario set it, else a placeholder. */
    static Object relTs(long ts) {
        if (ts == -1) {
            return -1;
        }
        long rel = ts - BASE_TS;
        if (rel >= 0 && rel < 100_000) {
            return rel;
        }
        long now = System.currentTimeMillis();
        // A broker-assigned time (LogAppendTime) within the last minute: equal in meaning.
        return (ts <= now && ts > now - 60_000) ? "recent" : "other:" + rel;
    }

    static Map<String, Object> recordObs(ConsumerRecord<String, String> r) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("offset", r.offset());
        m.put("key", r.key());
        m.put("value", r.value());
        m.put("ts", relTs(r.timestamp()));
        m.put("tsType", r.timestampType().toString());
        List<Object> headers = new ArrayList<>();
        for (Header h : r.headers()) {
            headers.add(List.of(h.key(), h.value() == null ? "null" : new String(h.value(), StandardCharsets.UTF_8)));
        }
        m.put("headers", headers);
        m.put("leaderEpochPresent", r.leaderEpoch().isPresent());
        return m;
    }

    /** Reads partitions from their start until {@code count} records arrived (or 10 s passed). */
    private List<Object> readAll(Collection<TopicPartition> tps, int count, Properties props) {
        List<Object> got = new ArrayList<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(props)) {
            c.assign(tps);
            c.seekToBeginning(tps);
            long deadline = System.currentTimeMillis() + 10_000;
            while (got.size() < count && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    Map<String, Object> m = recordObs(r);
                    m.put("partition", r.partition());
                    got.add(m);
                }
            }
        }
        return got;
    }

    // ---- scenarios ----

    private void cluster() {
        step("describeCluster", () -> {
            DescribeClusterResult d = admin.describeCluster();
            Collection<Node> nodes = get(d.nodes());
            Node controller = get(d.controller());
            String clusterId = get(d.clusterId());
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("nodes", nodes.size());
            m.put("nodeHostIsBootstrapHost", nodes.stream().allMatch(n -> bootstrap.startsWith(n.host() + ":")));
            m.put("nodeHasRack", nodes.stream().anyMatch(Node::hasRack));
            m.put("controllerPresent", controller != null && !controller.isEmpty());
            m.put("clusterIdPresent", clusterId != null && !clusterId.isEmpty());
            return m;
        });
    }

    private static final String[] ACKS = {"0", "1", "all"};
    private static final String[] CODECS = {"none", "gzip", "snappy", "lz4", "zstd"};

    private void produceMatrix() throws Exception {
        String topic = t("produce");
        createTopic(topic, ACKS.length * CODECS.length * 2, Map.of());
        int partition = 0;
        int expected = 0;
        List<TopicPartition> tps = new ArrayList<>();
        for (String acks : ACKS) {
            for (String codec : CODECS) {
                for (boolean idem : new boolean[] {false, true}) {
                    int p = partition++;
                    tps.add(new TopicPartition(topic, p));
                    String name = "produce acks=" + acks + " compression=" + codec + " idempotence=" + idem;
                    step(name, () -> {
                        try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps(acks, codec, idem))) {
                            return send(producer, topic, p, List.of("a" + p, "b" + p, "c" + p), new long[] {p * 10L, p * 10L + 1, p * 10L + 2});
                        }
                    });
                    // enable.idempotence=true with acks other than all is refused by the client.
                    if (!idem || acks.equals("all")) {
                        expected += 3;
                    }
                }
            }
        }
        int count = expected;
        step("produce read back every partition", () -> {
            List<Object> got = readAll(tps, count, consumerProps(null, null));
            got.sort((a, b) -> {
                @SuppressWarnings("unchecked")
                Map<String, Object> x = (Map<String, Object>) a;
                @SuppressWarnings("unchecked")
                Map<String, Object> y = (Map<String, Object>) b;
                int c = Integer.compare((Integer) x.get("partition"), (Integer) y.get("partition"));
                return c != 0 ? c : Long.compare((Long) x.get("offset"), (Long) y.get("offset"));
            });
            return got;
        });
    }

    private void logAppendTime() throws Exception {
        String topic = t("append-time");
        createTopic(topic, 1, Map.of("message.timestamp.type", "LogAppendTime"));
        step("produce to a LogAppendTime topic", () -> {
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps("all", "lz4", true))) {
                return send(producer, topic, 0, List.of("x", "y"), new long[] {1, 2});
            }
        });
        step("read a LogAppendTime topic", () ->
                readAll(List.of(new TopicPartition(topic, 0)), 2, consumerProps(null, null)));
    }

    private void fetchAndListOffsets() throws Exception {
        String topic = t("fetch");
        createTopic(topic, 1, Map.of());
        TopicPartition tp = new TopicPartition(topic, 0);
        // One gzip batch of five records, timestamps out of order (max-timestamp is offset 3).
        long[] ts = {10, 30, 20, 40, 25};
        step("produce one batch of five", () -> {
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps("all", "gzip", true))) {
                return send(producer, topic, 0, List.of("r0", "r1", "r2", "r3", "r4"), ts);
            }
        });
        step("fetch from the middle of a batch", () -> {
            try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(null, null))) {
                c.assign(List.of(tp));
                c.seek(tp, 2);
                List<Object> got = new ArrayList<>();
                long deadline = System.currentTimeMillis() + 10_000;
                while (got.size() < 3 && System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                        got.add(recordObs(r));
                    }
                }
                return Map.of("records", got, "position", c.position(tp));
            }
        });
        for (String reset : new String[] {"none", "earliest", "latest"}) {
            step("fetch past the end, auto.offset.reset=" + reset, () -> {
                Properties p = consumerProps(null, null);
                p.put("auto.offset.reset", reset);
                try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
                    c.assign(List.of(tp));
                    c.seek(tp, 100);
                    List<Object> offsets = new ArrayList<>();
                    long deadline = System.currentTimeMillis() + 3_000;
                    try {
                        while (System.currentTimeMillis() < deadline && offsets.isEmpty()) {
                            for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                                offsets.add(r.offset());
                            }
                            if (c.position(tp) != 100 && reset.equals("latest")) {
                                break;
                            }
                        }
                    } catch (Exception e) {
                        return Map.of("error", errorName(e));
                    }
                    return Map.of("offsets", offsets, "position", c.position(tp));
                }
            });
        }
        for (String isolation : new String[] {"read_uncommitted", "read_committed"}) {
            step("fetch with isolation.level=" + isolation, () -> {
                Properties p = consumerProps(null, null);
                p.put("isolation.level", isolation);
                Map<String, Object> m = new LinkedHashMap<>();
                try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
                    m.put("beginning", c.beginningOffsets(List.of(tp)).get(tp));
                    m.put("end", c.endOffsets(List.of(tp)).get(tp));
                }
                m.put("records", readAll(List.of(tp), 5, p).size());
                return m;
            });
        }
        Map<String, OffsetSpec> specs = new LinkedHashMap<>();
        specs.put("earliest", OffsetSpec.earliest());
        specs.put("latest", OffsetSpec.latest());
        specs.put("maxTimestamp", OffsetSpec.maxTimestamp());
        specs.put("forTimestamp(BASE+15)", OffsetSpec.forTimestamp(BASE_TS + 15));
        specs.put("forTimestamp(BASE+30)", OffsetSpec.forTimestamp(BASE_TS + 30));
        specs.put("forTimestamp(BASE+41)", OffsetSpec.forTimestamp(BASE_TS + 41));
        specs.put("forTimestamp(0)", OffsetSpec.forTimestamp(0));
        for (var e : specs.entrySet()) {
            step("listOffsets " + e.getKey(), () -> {
                ListOffsetsResultInfo info = get(admin.listOffsets(Map.of(tp, e.getValue())).partitionResult(tp));
                return List.of(info.offset(), relTs(info.timestamp()), info.leaderEpoch().isPresent());
            });
        }
        step("listOffsets of an unknown partition", () -> {
            TopicPartition bad = new TopicPartition(topic, 7);
            return outcome(admin.listOffsets(Map.of(bad, OffsetSpec.latest()),
                    new ListOffsetsOptions().timeoutMs(SHORT_TIMEOUT_MS)).partitionResult(bad));
        });
        step("consumer offsetsForTimes", () -> {
            try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(null, null))) {
                var r = c.offsetsForTimes(Map.of(tp, BASE_TS + 15)).get(tp);
                var none = c.offsetsForTimes(Map.of(tp, BASE_TS + 1000)).get(tp);
                return List.of(r == null ? "null" : List.of(r.offset(), relTs(r.timestamp())), String.valueOf(none));
            }
        });
    }

    private void createTopicsBad() {
        Map<String, NewTopic> cases = new LinkedHashMap<>();
        cases.put("name of 250 chars", new NewTopic("a".repeat(250), 1, (short) 1));
        cases.put("name of 249 chars", new NewTopic("b".repeat(249), 1, (short) 1));
        cases.put("name with a space", new NewTopic("bad name", 1, (short) 1));
        cases.put("name with a slash", new NewTopic("bad/name", 1, (short) 1));
        cases.put("name .", new NewTopic(".", 1, (short) 1));
        cases.put("name ..", new NewTopic("..", 1, (short) 1));
        cases.put("unknown config key", new NewTopic(t("c-unknown"), 1, (short) 1).configs(Map.of("no.such.config", "1")));
        cases.put("retention.ms=abc", new NewTopic(t("c-ret"), 1, (short) 1).configs(Map.of("retention.ms", "abc")));
        cases.put("cleanup.policy=bogus", new NewTopic(t("c-policy"), 1, (short) 1).configs(Map.of("cleanup.policy", "bogus")));
        cases.put("min.insync.replicas=0", new NewTopic(t("c-isr"), 1, (short) 1).configs(Map.of("min.insync.replicas", "0")));
        cases.put("0 partitions", new NewTopic(t("c-zero"), 0, (short) 1));
        cases.put("-5 partitions", new NewTopic(t("c-neg"), -5, (short) 1));
        cases.put("replication factor 3 on one broker", new NewTopic(t("c-rf3"), 1, (short) 3));
        cases.put("replication factor 0", new NewTopic(t("c-rf0"), 1, (short) 0));
        cases.put("broker defaults (no partitions or RF given)", new NewTopic(t("c-defaults"), java.util.Optional.empty(), java.util.Optional.empty()));
        for (var e : cases.entrySet()) {
            step("createTopics " + e.getKey(), () -> {
                CreateTopicsResult r = admin.createTopics(List.of(e.getValue()));
                Object o = outcome(r.all());
                if (!"ok".equals(o)) {
                    return o;
                }
                String name = e.getValue().name();
                return Map.of("partitions", get(r.numPartitions(name)), "replicationFactor", get(r.replicationFactor(name)));
            });
        }
        step("createTopics an existing name", () -> outcome(admin.createTopics(List.of(new NewTopic(t("c-defaults"), 1, (short) 1))).all()));
        step("createTopics validateOnly", () -> {
            Object o = outcome(admin.createTopics(List.of(new NewTopic(t("c-validate"), 2, (short) 1)),
                    new CreateTopicsOptions().validateOnly(true)).all());
            return List.of(o, get(admin.listTopics().names()).contains(t("c-validate")));
        });
        step("createTopics two in one request, one bad", () -> {
            CreateTopicsResult r = admin.createTopics(List.of(new NewTopic(t("c-pair-good"), 1, (short) 1),
                    new NewTopic(t("c-pair-bad"), 1, (short) 1).configs(Map.of("retention.ms", "x"))));
            return List.of(outcome(r.values().get(t("c-pair-good"))), outcome(r.values().get(t("c-pair-bad"))));
        });
    }

    private void deleteTopics() throws Exception {
        step("deleteTopics an unknown topic", () -> outcome(admin.deleteTopics(List.of(t("never-created"))).all()));
        String topic = t("to-delete");
        createTopic(topic, 2, Map.of());
        step("deleteTopics an existing topic", () -> outcome(admin.deleteTopics(List.of(topic)).all()));
        step("describeTopics after delete", () -> {
            Object last = null;
            // Deletion is asynchronous on both brokers: poll briefly for the topic to vanish.
            for (int i = 0; i < 50; i++) {
                last = outcome(admin.describeTopics(List.of(topic)).allTopicNames());
                if (!"ok".equals(last)) {
                    break;
                }
                sleepQuietly(100);
            }
            return last;
        });
    }

    private static final List<String> TOPIC_KEYS = List.of("cleanup.policy", "retention.ms", "retention.bytes",
            "max.message.bytes", "min.insync.replicas", "message.timestamp.type", "compression.type",
            "unclean.leader.election.enable", "segment.bytes", "segment.ms");

    private Object describeTopicConfig(String topic, List<String> keys) throws Exception {
        ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        Config config = get(admin.describeConfigs(List.of(res)).all()).get(res);
        Map<String, Object> m = new TreeMap<>();
        for (String k : keys) {
            ConfigEntry e = config.get(k);
            m.put(k, e == null ? "absent" : List.of(String.valueOf(e.value()), e.source().toString(), e.isReadOnly(), e.isSensitive()));
        }
        return m;
    }

    private void configs() throws Exception {
        String topic = t("configs");
        createTopic(topic, 1, Map.of("retention.ms", "3600000", "max.message.bytes", "200000"));
        ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        step("describeConfigs of a topic", () -> describeTopicConfig(topic, TOPIC_KEYS));
        step("describeConfigs of the broker (keys clients and tools read)", () -> {
            int id = get(admin.describeCluster().nodes()).iterator().next().id();
            ConfigResource broker = new ConfigResource(ConfigResource.Type.BROKER, String.valueOf(id));
            Config config = get(admin.describeConfigs(List.of(broker)).all()).get(broker);
            Map<String, Object> m = new TreeMap<>();
            for (String k : List.of("auto.create.topics.enable", "default.replication.factor", "num.partitions",
                    "message.max.bytes", "log.retention.ms", "log.retention.hours", "log.segment.bytes",
                    "min.insync.replicas", "offsets.retention.minutes", "group.min.session.timeout.ms")) {
                ConfigEntry e = config.get(k);
                m.put(k, e == null ? "absent" : List.of(String.valueOf(e.value()), e.source().toString(), e.isReadOnly()));
            }
            return m;
        });
        step("describeConfigs of an unknown topic", () -> {
            ConfigResource bad = new ConfigResource(ConfigResource.Type.TOPIC, t("never-created"));
            return outcome(admin.describeConfigs(List.of(bad)).all());
        });
        Map<String, List<AlterConfigOp>> alters = new LinkedHashMap<>();
        alters.put("SET retention.ms=1000", List.of(new AlterConfigOp(new ConfigEntry("retention.ms", "1000"), AlterConfigOp.OpType.SET)));
        alters.put("SET unknown key", List.of(new AlterConfigOp(new ConfigEntry("no.such.config", "1"), AlterConfigOp.OpType.SET)));
        alters.put("SET retention.ms=abc", List.of(new AlterConfigOp(new ConfigEntry("retention.ms", "abc"), AlterConfigOp.OpType.SET)));
        alters.put("SET cleanup.policy=bogus", List.of(new AlterConfigOp(new ConfigEntry("cleanup.policy", "bogus"), AlterConfigOp.OpType.SET)));
        alters.put("APPEND to a non-list key", List.of(new AlterConfigOp(new ConfigEntry("retention.ms", "5"), AlterConfigOp.OpType.APPEND)));
        alters.put("DELETE max.message.bytes", List.of(new AlterConfigOp(new ConfigEntry("max.message.bytes", ""), AlterConfigOp.OpType.DELETE)));
        alters.put("DELETE an unknown key", List.of(new AlterConfigOp(new ConfigEntry("no.such.config", ""), AlterConfigOp.OpType.DELETE)));
        alters.put("SET a key twice in one request", List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "1"), AlterConfigOp.OpType.SET),
                new AlterConfigOp(new ConfigEntry("retention.ms", "2"), AlterConfigOp.OpType.SET)));
        for (var e : alters.entrySet()) {
            step("incrementalAlterConfigs " + e.getKey(), () -> {
                List<String> keys = List.of("retention.ms", "cleanup.policy", "max.message.bytes");
                Object before = describeTopicConfig(topic, keys);
                Object o = outcome(admin.incrementalAlterConfigs(Map.of(res, e.getValue())).all());
                return List.of(o, settled(o, before, () -> describeTopicConfig(topic, keys)));
            });
        }
        // APPEND / SUBTRACT on the one list-typed key clients use, on a topic of their own so a
        // refused step does not change what the other steps see.
        String listTopic = t("configs-list");
        createTopic(listTopic, 1, Map.of());
        ConfigResource listRes = new ConfigResource(ConfigResource.Type.TOPIC, listTopic);
        Map<String, AlterConfigOp> listOps = new LinkedHashMap<>();
        listOps.put("APPEND cleanup.policy=delete (present)", new AlterConfigOp(new ConfigEntry("cleanup.policy", "delete"), AlterConfigOp.OpType.APPEND));
        listOps.put("SUBTRACT cleanup.policy=compact (absent)", new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"), AlterConfigOp.OpType.SUBTRACT));
        listOps.put("APPEND cleanup.policy=compact", new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"), AlterConfigOp.OpType.APPEND));
        for (var e : listOps.entrySet()) {
            step("incrementalAlterConfigs " + e.getKey(), () -> {
                Object before = describeTopicConfig(listTopic, List.of("cleanup.policy"));
                Object o = outcome(admin.incrementalAlterConfigs(Map.of(listRes, List.of(e.getValue()))).all());
                return List.of(o, settled(o, before, () -> describeTopicConfig(listTopic, List.of("cleanup.policy"))));
            });
        }
        step("incrementalAlterConfigs of an unknown topic", () -> outcome(admin.incrementalAlterConfigs(Map.of(
                new ConfigResource(ConfigResource.Type.TOPIC, t("never-created")),
                List.of(new AlterConfigOp(new ConfigEntry("retention.ms", "1000"), AlterConfigOp.OpType.SET)))).all()));
        // The legacy AlterConfigs is gone from the 4.x Admin client; tests/differential.rs sends
        // it as a raw frame to both brokers instead.
    }

    /**
     * What {@code describe} shows once a successful change is visible. Apache Kafka answers an
     * alter when its controller committed it and the broker applies it a moment later, so a
     * describe right after may still show the old state; wait (bounded) for it to change. A
     * failed (or no-op) change is described after the bound.
     */
    static Object settled(Object outcome, Object before, Body describe) throws Exception {
        Object now = describe.call();
        if (!"ok".equals(outcome)) {
            return now;
        }
        long deadline = System.currentTimeMillis() + SETTLE_MS;
        while (now.equals(before) && System.currentTimeMillis() < deadline) {
            sleepQuietly(50);
            now = describe.call();
        }
        return now;
    }

    private void createPartitions() throws Exception {
        String topic = t("partitions");
        createTopic(topic, 1, Map.of());
        step("createPartitions increase 1 -> 3", () -> {
            Body count = () -> get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic).partitions().size();
            Object before = count.call();
            Object o = outcome(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(3))).all());
            return List.of(o, settled(o, before, count));
        });
        step("createPartitions decrease 3 -> 2", () -> outcome(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(2))).all()));
        step("createPartitions same 3 -> 3", () -> outcome(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(3))).all()));
        step("createPartitions of an unknown topic", () -> outcome(admin.createPartitions(Map.of(t("never-created"), NewPartitions.increaseTo(3))).all()));
    }

    private void deleteRecords() throws Exception {
        String topic = t("delete-records");
        createTopic(topic, 1, Map.of());
        TopicPartition tp = new TopicPartition(topic, 0);
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps("all", "none", true))) {
            send(producer, topic, 0, List.of("0", "1", "2", "3", "4"), new long[] {0, 1, 2, 3, 4});
        }
        step("deleteRecords before offset 2", () -> get(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(2))).lowWatermarks().get(tp)).lowWatermark());
        step("deleteRecords before offset 1 (below the low watermark)", () -> get(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(1))).lowWatermarks().get(tp)).lowWatermark());
        step("deleteRecords before offset 10 (past the end)", () -> outcome(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(10))).lowWatermarks().get(tp)));
        step("deleteRecords of an unknown partition", () -> {
            TopicPartition bad = new TopicPartition(topic, 5);
            return outcome(admin.deleteRecords(Map.of(bad, RecordsToDelete.beforeOffset(1)),
                    new DeleteRecordsOptions().timeoutMs(SHORT_TIMEOUT_MS)).lowWatermarks().get(bad));
        });
        step("after deleteRecords: earliest, latest, records", () -> {
            long earliest = get(admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp)).offset();
            long latest = get(admin.listOffsets(Map.of(tp, OffsetSpec.latest())).partitionResult(tp)).offset();
            List<Object> offsets = new ArrayList<>();
            for (Object r : readAll(List.of(tp), 3, consumerProps(null, null))) {
                offsets.add(((Map<?, ?>) r).get("offset"));
            }
            return List.of(earliest, latest, offsets);
        });
        step("deleteRecords to the high watermark", () -> get(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(-1))).lowWatermarks().get(tp)).lowWatermark());
    }

    /** A group's description with member ids, hosts and client ids left out (they differ). */
    private Object describeGroup(String group) throws Exception {
        ConsumerGroupDescription d = get(admin.describeConsumerGroups(List.of(group)).describedGroups().get(group));
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("state", d.groupState().toString());
        m.put("type", d.type().toString());
        m.put("simple", d.isSimpleConsumerGroup());
        m.put("assignor", d.partitionAssignor());
        m.put("coordinatorPresent", d.coordinator() != null && !d.coordinator().isEmpty());
        List<Object> members = new ArrayList<>();
        for (MemberDescription md : d.members()) {
            List<Object> parts = new ArrayList<>();
            md.assignment().topicPartitions().stream().map(TopicPartition::toString).sorted().forEach(parts::add);
            members.add(List.of(String.valueOf(md.groupInstanceId().orElse(null)), parts));
        }
        members.sort((a, b) -> a.toString().compareTo(b.toString()));
        m.put("members", members);
        return m;
    }

    private Object committed(String group) throws Exception {
        Map<TopicPartition, OffsetAndMetadata> offsets = get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
        Map<String, Object> m = new TreeMap<>();
        for (var e : offsets.entrySet()) {
            m.put(e.getKey().toString(), e.getValue() == null ? "null" : List.of(e.getValue().offset(), e.getValue().metadata()));
        }
        return m;
    }

    /** Records the rebalance listener's callbacks, as (callback, partition count). */
    static final class Listener implements ConsumerRebalanceListener {
        private final List<String> events = Collections.synchronizedList(new ArrayList<>());

        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
            add("revoked", partitions);
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
            add("assigned", partitions);
        }

        @Override
        public void onPartitionsLost(Collection<TopicPartition> partitions) {
            add("lost", partitions);
        }

        /**
         * Which member gets which partitions, and in how many steps a KIP-848 coordinator hands
         * them over, depends on member ids and heartbeat timing on any broker; the order of the
         * callback kinds does not. So: kinds only, empty callbacks dropped, repeats collapsed.
         */
        private void add(String kind, Collection<TopicPartition> partitions) {
            synchronized (events) {
                if (!partitions.isEmpty() && (events.isEmpty() || !events.get(events.size() - 1).equals(kind))) {
                    events.add(kind);
                }
            }
        }

        List<String> events() {
            synchronized (events) {
                return new ArrayList<>(events);
            }
        }
    }

    private void fillTopic(String topic, int partitions, int perPartition) throws Exception {
        createTopic(topic, partitions, Map.of());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps("all", "none", true))) {
            for (int p = 0; p < partitions; p++) {
                List<String> values = new ArrayList<>();
                long[] ts = new long[perPartition];
                for (int i = 0; i < perPartition; i++) {
                    values.add("p" + p + "-" + i);
                    ts[i] = i;
                }
                send(producer, topic, p, values, ts);
            }
        }
    }

    /** Polls {@code c} until it owns {@code partitions} partitions and read {@code records} records. */
    static int pollUntilOwns(KafkaConsumer<String, String> c, int partitions, int records, long ms) {
        int read = 0;
        long deadline = System.currentTimeMillis() + ms;
        while (System.currentTimeMillis() < deadline && (c.assignment().size() != partitions || read < records)) {
            ConsumerRecords<String, String> got = c.poll(Duration.ofMillis(100));
            read += got.count();
        }
        return read;
    }

    private void groups(String protocol) throws Exception {
        String topic = t("group-" + protocol);
        String group = t("g-" + protocol);
        fillTopic(topic, 3, 2);
        Listener l1 = new Listener();
        Listener l2 = new Listener();
        try (KafkaConsumer<String, String> c1 = new KafkaConsumer<>(consumerProps(group, protocol))) {
            c1.subscribe(List.of(topic), l1);
            step("group " + protocol + ": one member subscribes and reads", () -> {
                int read = pollUntilOwns(c1, 3, 6, 20_000);
                c1.commitSync();
                return Map.of("read", read, "assignment", c1.assignment().size(), "listener", l1.events());
            });
            step("group " + protocol + ": committed and described", () -> List.of(committed(group), describeGroup(group)));
            try (KafkaConsumer<String, String> c2 = new KafkaConsumer<>(consumerProps(group, protocol))) {
                c2.subscribe(List.of(topic), l2);
                step("group " + protocol + ": a second member joins", () -> {
                    long deadline = System.currentTimeMillis() + 20_000;
                    int read = 0;
                    while (System.currentTimeMillis() < deadline
                            && (c1.assignment().size() + c2.assignment().size() != 3 || c1.assignment().isEmpty() || c2.assignment().isEmpty())) {
                        read += c1.poll(Duration.ofMillis(50)).count();
                        read += c2.poll(Duration.ofMillis(50)).count();
                    }
                    List<Integer> sizes = new ArrayList<>(List.of(c1.assignment().size(), c2.assignment().size()));
                    Collections.sort(sizes);
                    return Map.of("readAgain", read, "sizes", sizes, "listener1", l1.events(),
                            "listener2", l2.events());
                });
                step("group " + protocol + ": two members described", () -> {
                    Map<String, Object> d = new LinkedHashMap<>();
                    @SuppressWarnings("unchecked")
                    Map<String, Object> desc = (Map<String, Object>) describeGroup(group);
                    d.put("state", desc.get("state"));
                    d.put("type", desc.get("type"));
                    d.put("assignor", desc.get("assignor"));
                    d.put("members", ((List<?>) desc.get("members")).size());
                    return d;
                });
                step("group " + protocol + ": deleteConsumerGroupOffsets of a subscribed topic", () ->
                        outcome(admin.deleteConsumerGroupOffsets(group, Set.of(new TopicPartition(topic, 0))).all()));
                step("group " + protocol + ": alterConsumerGroupOffsets of an active group", () ->
                        outcome(admin.alterConsumerGroupOffsets(group, Map.of(new TopicPartition(topic, 0), new OffsetAndMetadata(0))).all()));
                step("group " + protocol + ": deleteConsumerGroups of an active group", () ->
                        outcome(admin.deleteConsumerGroups(List.of(group)).all()));
                c2.close(CloseOptions.timeout(Duration.ofMillis(CALL_TIMEOUT_MS)));
            }
            step("group " + protocol + ": after the second member left", () -> {
                int read = pollUntilOwns(c1, 3, 0, 20_000);
                List<String> events = l1.events();
                return Map.of("assignment", c1.assignment().size(), "readAgain", read, "listener1", events);
            });
            c1.close(CloseOptions.timeout(Duration.ofMillis(CALL_TIMEOUT_MS)));
            step("group " + protocol + ": listener after close", () -> l1.events());
        }
        step("group " + protocol + ": described after every member left", () -> describeGroup(group));
    }

    private void assignCommit() throws Exception {
        String topic = t("assign");
        String group = t("g-assign");
        fillTopic(topic, 2, 3);
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        step("assign + commitSync with metadata", () -> {
            try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(group, "classic"))) {
                c.assign(List.of(p0, p1));
                c.commitSync(Map.of(p0, new OffsetAndMetadata(2, "meta-0"), p1, new OffsetAndMetadata(3, "")));
                var committed = c.committed(Set.of(p0, p1));
                return List.of(committed.get(p0).offset(), committed.get(p0).metadata(), committed.get(p1).offset(),
                        committed.get(p1).metadata());
            }
        });
        step("assign + commit: the group described", () -> List.of(describeGroup(group), committed(group)));
        step("assign + commit past the end of the log", () -> {
            try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(group, "classic"))) {
                c.commitSync(Map.of(p0, new OffsetAndMetadata(1000)));
                return c.committed(Set.of(p0)).get(p0).offset();
            } catch (Exception e) {
                return Map.of("error", errorName(e));
            }
        });
        step("assign + commit to an unknown partition", () -> {
            try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(group, "classic"))) {
                c.commitSync(Map.of(new TopicPartition(topic, 9), new OffsetAndMetadata(1)), Duration.ofMillis(SHORT_TIMEOUT_MS));
                return "ok";
            } catch (Exception e) {
                return Map.of("error", errorName(e));
            }
        });
    }

    private void patternSubscribe() throws Exception {
        fillTopic(t("pat-a"), 1, 1);
        fillTopic(t("pat-b"), 2, 1);
        for (String protocol : new String[] {"classic", "consumer"}) {
            step("pattern subscribe " + protocol, () -> {
                try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(t("g-pat-" + protocol), protocol))) {
                    c.subscribe(Pattern.compile(Pattern.quote(prefix) + "-pat-.*"));
                    int read = pollUntilOwns(c, 3, 3, 20_000);
                    List<String> parts = new ArrayList<>();
                    c.assignment().forEach(tp -> parts.add(tp.toString()));
                    Collections.sort(parts);
                    return Map.of("read", read, "assignment", parts);
                }
            });
        }
    }

    private void staticMember() throws Exception {
        String topic = t("static");
        String group = t("g-static");
        fillTopic(topic, 2, 1);
        step("static member joins", () -> {
            Properties p = consumerProps(group, "classic");
            p.put("group.instance.id", "instance-1");
            Listener l = new Listener();
            try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
                c.subscribe(List.of(topic), l);
                int read = pollUntilOwns(c, 2, 2, 20_000);
                Object described = describeGroup(group);
                c.close(CloseOptions.timeout(Duration.ofMillis(CALL_TIMEOUT_MS)));
                return Map.of("read", read, "described", described, "listener", l.events());
            }
        });
        // A closed static member stays in the group until its session times out (no LeaveGroup).
        step("static member closed: group described", () -> describeGroup(group));
        step("the static member rejoins with the same instance id", () -> {
            Properties p = consumerProps(group, "classic");
            p.put("group.instance.id", "instance-1");
            try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
                c.subscribe(List.of(topic));
                // Nothing was committed: it reads both records again from the earliest offset.
                int read = pollUntilOwns(c, 2, 2, 20_000);
                return Map.of("assignment", c.assignment().size(), "read", read);
            }
        });
    }

    private void groupOffsetsAdmin() throws Exception {
        String topic = t("group-offsets");
        String group = t("g-offsets");
        fillTopic(topic, 2, 4);
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        step("alterConsumerGroupOffsets of a new group", () -> List.of(
                outcome(admin.alterConsumerGroupOffsets(group, Map.of(p0, new OffsetAndMetadata(1), p1, new OffsetAndMetadata(4, "m"))).all()),
                committed(group)));
        step("alterConsumerGroupOffsets (reset to earliest)", () -> List.of(
                outcome(admin.alterConsumerGroupOffsets(group, Map.of(p0, new OffsetAndMetadata(0))).all()),
                committed(group)));
        step("deleteConsumerGroupOffsets of an empty group", () -> List.of(
                outcome(admin.deleteConsumerGroupOffsets(group, Set.of(p1)).all()), committed(group)));
        step("describe the offsets-only group", () -> describeGroup(group));
        step("listConsumerGroupOffsets of an unknown group", () -> committed(t("g-never")));
        step("describeConsumerGroups of an unknown group", () -> describeGroup(t("g-never")));
        step("deleteConsumerGroups of an unknown group", () -> outcome(admin.deleteConsumerGroups(List.of(t("g-never"))).all()));
        step("deleteConsumerGroups of an empty group", () -> List.of(
                outcome(admin.deleteConsumerGroups(List.of(group)).all()), committed(group)));
    }

    private void unknownTopics() throws Exception {
        step("describeTopics of an unknown topic", () -> outcome(admin.describeTopics(List.of(t("never-created"))).allTopicNames()));
        step("consumer partitionsFor an unknown topic", () -> {
            Properties p = consumerProps(null, null);
            p.put("allow.auto.create.topics", "false");
            try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
                return String.valueOf(c.partitionsFor(t("never-created-2"), Duration.ofMillis(SHORT_TIMEOUT_MS)));
            }
        });
        step("produce to partition 7 of a one-partition topic", () -> {
            Properties p = producerProps("all", "none", true);
            p.put("max.block.ms", String.valueOf(SHORT_TIMEOUT_MS));
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
                return send(producer, t("fetch"), 7, List.of("x"), new long[] {0});
            }
        });
        step("produce to an unknown topic (broker auto-creation)", () -> {
            Properties p = producerProps("all", "none", true);
            p.put("max.block.ms", String.valueOf(SHORT_TIMEOUT_MS));
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
                List<Object> acks = send(producer, t("auto-created"), null, List.of("x"), new long[] {0});
                return List.of(acks, get(admin.listTopics().names()).contains(t("auto-created")));
            }
        });
        step("transactional producer: initTransactions, send, commit", () -> {
            // A topic of its own: the other steps' offsets must not depend on this one.
            createTopic(t("txn"), 1, Map.of());
            Properties p = producerProps("all", "none", true);
            p.put("transactional.id", t("txn"));
            // Apache Kafka creates its transaction state topic on the first initTransactions.
            p.put("max.block.ms", String.valueOf(CALL_TIMEOUT_MS));
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
                producer.initTransactions();
                producer.beginTransaction();
                List<Object> acks = send(producer, t("txn"), 0, List.of("t"), new long[] {60});
                producer.commitTransaction();
                return acks;
            }
        });
        step("produce with a null key and value", () -> {
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps("1", "none", false))) {
                RecordMetadata m = producer.send(new ProducerRecord<>(t("fetch"), 0, BASE_TS + 50, (String) null, (String) null)).get(CALL_TIMEOUT_MS, TimeUnit.MILLISECONDS);
                return List.of(m.offset(), relTs(m.timestamp()), m.serializedKeySize(), m.serializedValueSize());
            }
        });
        step("produce a record over max.message.bytes", () -> {
            String topic = t("small");
            createTopic(topic, 1, Map.of("max.message.bytes", "1000"));
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps("all", "none", true))) {
                return send(producer, topic, 0, List.of("x".repeat(5000)), new long[] {0});
            }
        });
        step("topic metadata of the created topics", () -> {
            TopicDescription d = get(admin.describeTopics(List.of(t("fetch"))).allTopicNames()).get(t("fetch"));
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("internal", d.isInternal());
            m.put("topicIdPresent", d.topicId() != null);
            List<Object> parts = new ArrayList<>();
            for (TopicPartitionInfo p : d.partitions()) {
                parts.add(List.of(p.partition(), p.replicas().size(), p.isr().size(), p.leader() != null,
                        p.elr() == null ? "null" : p.elr().size(), p.lastKnownElr() == null ? "null" : p.lastKnownElr().size()));
            }
            m.put("partitions", parts);
            m.put("authorizedOperations", String.valueOf(d.authorizedOperations()));
            return m;
        });
    }

    private void logDirs() {
        step("describeLogDirs", () -> {
            Collection<Node> nodes = get(admin.describeCluster().nodes());
            int id = nodes.iterator().next().id();
            Map<String, LogDirDescription> dirs = get(admin.describeLogDirs(List.of(id)).allDescriptions()).get(id);
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("dirs", dirs.size());
            TopicPartition tp = new TopicPartition(t("fetch"), 0);
            for (LogDirDescription dir : dirs.values()) {
                m.put("error", dir.error() == null ? "none" : dir.error().getClass().getSimpleName());
                m.put("totalBytesPresent", dir.totalBytes().isPresent());
                m.put("usableBytesPresent", dir.usableBytes().isPresent());
                ReplicaInfo r = dir.replicaInfos().get(tp);
                if (r != null) {
                    m.put("fetchPartition", List.of(r.size() > 0, r.offsetLag(), r.isFuture()));
                }
            }
            return m;
        });
        step("describeLogDirs of an unknown broker", () -> outcome(admin.describeLogDirs(List.of(4242),
                new DescribeLogDirsOptions().timeoutMs(SHORT_TIMEOUT_MS)).allDescriptions()));
    }

    /** A minimal JSON writer: maps, lists, strings, numbers, booleans and null. */
    static final class Json {
        private Json() {}

        static String write(Object o) {
            StringBuilder sb = new StringBuilder();
            write(sb, o);
            return sb.toString();
        }

        private static void write(StringBuilder sb, Object o) {
            if (o == null) {
                sb.append("null");
            } else if (o instanceof Map<?, ?> m) {
                sb.append('{');
                boolean first = true;
                for (var e : m.entrySet()) {
                    if (!first) {
                        sb.append(',');
                    }
                    first = false;
                    string(sb, String.valueOf(e.getKey()));
                    sb.append(':');
                    write(sb, e.getValue());
                }
                sb.append('}');
            } else if (o instanceof Collection<?> c) {
                sb.append('[');
                boolean first = true;
                for (Object x : c) {
                    if (!first) {
                        sb.append(',');
                    }
                    first = false;
                    write(sb, x);
                }
                sb.append(']');
            } else if (o instanceof Number || o instanceof Boolean) {
                sb.append(o);
            } else {
                string(sb, o.toString());
            }
        }

        private static void string(StringBuilder sb, String s) {
            sb.append('"');
            for (char ch : s.toCharArray()) {
                switch (ch) {
                    case '"' -> sb.append("\\\"");
                    case '\\' -> sb.append("\\\\");
                    case '\n' -> sb.append("\\n");
                    case '\r' -> sb.append("\\r");
                    case '\t' -> sb.append("\\t");
                    default -> {
                        if (ch < 0x20) {
                            sb.append(String.format("\\u%04x", (int) ch));
                        } else {
                            sb.append(ch);
                        }
                    }
                }
            }
            sb.append('"');
        }
    }
}
