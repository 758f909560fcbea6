package dev.rivulet.clients;

import static dev.rivulet.clients.Main.TIMEOUT_MS;
import static dev.rivulet.clients.Main.check;
import static dev.rivulet.clients.Main.checkEq;
import static dev.rivulet.clients.Main.step;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * An idempotent acks=all producer writes for a fixed time while the test kills a node (a
 * partition leader) under it: every record must be acknowledged (the client finds the new
 * leaders and retries), and reading back finds each acknowledged record once, at its offset.
 */
final class FailoverScenario {
    private static final int PARTITIONS = 3;
    /** Long enough for the test to kill a leader and for the cluster to elect another (2 s). */
    private static final long PRODUCE_MS = 8_000;

    private FailoverScenario() {}

    private record Acked(String value, RecordMetadata metadata) {}

    static void run(String bootstrap, String prefix) throws Exception {
        String topic = prefix + "-failover";
        GroupScenarios.createTopics(bootstrap, Map.of(topic, PARTITIONS));
        step("created " + topic + "; producing for " + PRODUCE_MS + " ms");

        Properties p = Main.common(bootstrap, "java-failover-producer");
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        p.put("acks", "all");
        p.put("enable.idempotence", "true");
        p.put("linger.ms", "5");
        p.put("max.block.ms", String.valueOf(TIMEOUT_MS));
        p.put("delivery.timeout.ms", "60000");
        ConcurrentLinkedQueue<Acked> acked = new ConcurrentLinkedQueue<>();
        ConcurrentLinkedQueue<String> failed = new ConcurrentLinkedQueue<>();
        int sent = 0;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            long end = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(PRODUCE_MS);
            while (System.nanoTime() < end) {
                String value = "v" + sent;
                producer.send(new ProducerRecord<>(topic, "k" + (sent % 64), value), (md, e) -> {
                    if (e == null) {
                        acked.add(new Acked(value, md));
                    } else {
                        failed.add(value + ": " + e);
                    }
                });
                sent++;
                // Pacing, not waiting for a condition: a steady ~500 records/s over the window.
                Thread.sleep(2);
            }
            producer.flush();
        }
        int sentTotal = sent;
        check(failed.isEmpty(), () -> failed.size() + " of " + sentTotal + " sends failed, e.g. "
                + failed.stream().limit(5).toList());
        checkEq(sentTotal, acked.size(), "acknowledged sends");
        step("all " + sentTotal + " sends acknowledged");

        Properties c = Main.common(bootstrap, "java-failover-reader");
        c.put("key.deserializer", StringDeserializer.class.getName());
        c.put("value.deserializer", StringDeserializer.class.getName());
        c.put("enable.auto.commit", "false");
        Map<String, ConsumerRecord<String, String>> read = new HashMap<>();
        List<String> twice = new ArrayList<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
            List<TopicPartition> tps = new ArrayList<>(GroupScenarios.partitionsOf(topic, PARTITIONS));
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            Main.pollUntil("every acknowledged record is read back",
                    () -> consumer.poll(Duration.ofMillis(200)).forEach(r -> {
                        if (read.put(r.value(), r) != null) {
                            twice.add(r.value());
                        }
                    }),
                    () -> read.size() >= sentTotal,
                    () -> read.size() + " of " + sentTotal + " read");
        }
        check(twice.isEmpty(), () -> "read twice (duplicates): " + twice.stream().limit(10).toList());
        for (Acked a : acked) {
            ConsumerRecord<String, String> r = read.get(a.value());
            check(r != null, () -> "acknowledged but not read back: " + a.value());
            check(r.partition() == a.metadata().partition() && r.offset() == a.metadata().offset(),
                    () -> a.value() + " acknowledged at " + a.metadata().partition() + "@" + a.metadata().offset()
                            + " but read at " + r.partition() + "@" + r.offset());
        }
        checkEq(sentTotal, read.size(), "records read back");
        step("read back each of the " + sentTotal + " records once, at its acknowledged offset");
    }
}
