package dev.rivulet.clients;

import static dev.rivulet.clients.Main.TIMEOUT_MS;
import static dev.rivulet.clients.Main.check;
import static dev.rivulet.clients.Main.step;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * A KIP-848 consumer (group.protocol=consumer) reads and commits while a producer writes, and
 * the test kills the group's coordinator node: the consumer finds the new coordinator, keeps
 * its partitions or gets them back, reads every acknowledged record (at least once) and its
 * final commit lands at the end of every partition.
 *
 * <p>Once the consumer has committed, the scenario writes the coordinator's node id to the file
 * named by -Drivulet.signal, which is how the test learns which node to kill.
 */
final class GroupFailoverScenario {
    private static final int PARTITIONS = 3;
    private static final long PRODUCE_MS = 8_000;

    private GroupFailoverScenario() {}

    static void run(String bootstrap, String prefix) throws Exception {
        String signal = System.getProperty("rivulet.signal");
        check(signal != null, () -> "run with -Drivulet.signal=FILE");
        String topic = prefix + "-group-failover";
        String group = prefix + "-group-failover";
        GroupScenarios.createTopics(bootstrap, Map.of(topic, PARTITIONS));
        step("created " + topic);

        ConcurrentLinkedQueue<String> acked = new ConcurrentLinkedQueue<>();
        ConcurrentLinkedQueue<String> failed = new ConcurrentLinkedQueue<>();
        AtomicBoolean producing = new AtomicBoolean(true);
        Thread producerThread = new Thread(() -> {
            Properties p = Main.common(bootstrap, "java-group-failover-producer");
            p.put("key.serializer", StringSerializer.class.getName());
            p.put("value.serializer", StringSerializer.class.getName());
            p.put("delivery.timeout.ms", "60000");
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
                long end = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(PRODUCE_MS);
                for (int i = 0; System.nanoTime() < end; i++) {
                    String value = "v" + i;
                    producer.send(new ProducerRecord<>(topic, "k" + i, value), (md, e) -> {
                        if (e == null) {
                            acked.add(value);
                        } else {
                            failed.add(value + ": " + e);
                        }
                    });
                    // Pacing: ~200 records/s.
                    Thread.sleep(5);
                }
                producer.flush();
            } catch (Exception e) {
                failed.add("producer: " + e);
            } finally {
                producing.set(false);
            }
        }, "producer");
        producerThread.start();

        Set<String> read = new HashSet<>();
        int duplicates = 0;
        int coordinatorBefore;
        Properties c = GroupScenarios.consumerProps(bootstrap, "java-group-failover", group, "consumer");
        c.put("max.poll.records", "50");
        try (Admin admin = Admin.create(Main.common(bootstrap, "java-admin"))) {
            KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c);
            try {
                consumer.subscribe(List.of(topic));
                boolean signalled = false;
                coordinatorBefore = -1;
                long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(PRODUCE_MS + 3 * TIMEOUT_MS);
                while (producing.get() || !read.containsAll(acked)) {
                    check(System.nanoTime() < deadline,
                            () -> "timed out reading; read " + read.size() + " of " + acked.size() + " acknowledged");
                    var records = consumer.poll(Duration.ofMillis(100));
                    for (ConsumerRecord<String, String> r : records) {
                        if (!read.add(r.value())) {
                            duplicates++;
                        }
                    }
                    if (!records.isEmpty()) {
                        consumer.commitSync();
                        if (!signalled) {
                            coordinatorBefore = admin.describeConsumerGroups(List.of(group)).describedGroups().get(group)
                                    .get(TIMEOUT_MS, TimeUnit.MILLISECONDS).coordinator().id();
                            Files.writeString(Path.of(signal + ".tmp"), String.valueOf(coordinatorBefore),
                                    StandardCharsets.UTF_8);
                            Files.move(Path.of(signal + ".tmp"), Path.of(signal));
                            signalled = true;
                            step("first commit done; coordinator is node " + coordinatorBefore);
                        }
                    }
                }
                consumer.commitSync();
            } finally {
                consumer.close(CloseOptions.timeout(Duration.ofMillis(TIMEOUT_MS)));
            }
            producerThread.join(TIMEOUT_MS);
            check(failed.isEmpty(), () -> "sends failed: " + failed.stream().limit(5).toList());
            step("read all " + acked.size() + " acknowledged records (" + duplicates
                    + " delivered again after the failover)");

            int coordinatorAfter = admin.describeConsumerGroups(List.of(group)).describedGroups().get(group)
                    .get(TIMEOUT_MS, TimeUnit.MILLISECONDS).coordinator().id();
            int before = coordinatorBefore;
            check(coordinatorAfter != before,
                    () -> "the coordinator is still node " + before + "; the test should have killed it");
            Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(group)
                    .partitionsToOffsetAndMetadata().get(TIMEOUT_MS, TimeUnit.MILLISECONDS);
            Map<TopicPartition, org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo> ends =
                    admin.listOffsets(Map.of(
                            new TopicPartition(topic, 0), org.apache.kafka.clients.admin.OffsetSpec.latest(),
                            new TopicPartition(topic, 1), org.apache.kafka.clients.admin.OffsetSpec.latest(),
                            new TopicPartition(topic, 2), org.apache.kafka.clients.admin.OffsetSpec.latest()))
                    .all().get(TIMEOUT_MS, TimeUnit.MILLISECONDS);
            for (var e : ends.entrySet()) {
                OffsetAndMetadata got = committed.get(e.getKey());
                check(got != null && got.offset() == e.getValue().offset(),
                        () -> "committed offset of " + e.getKey() + " is " + got + ", the end is " + e.getValue().offset());
            }
            step("coordinator moved from node " + before + " to node " + coordinatorAfter
                    + "; committed offsets are at the end of every partition");
        }
    }
}
