package dev.rivulet.clients;

import static dev.rivulet.clients.Main.TIMEOUT_MS;
import static dev.rivulet.clients.Main.check;
import static dev.rivulet.clients.Main.checkEq;
import static dev.rivulet.clients.Main.step;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.utils.Utils;

/**
 * Producers with every compression codec, the idempotent producer with acks=all (the Java
 * client's default), and acks=1 and acks=0; keys, headers (repeated, empty and null values),
 * explicit CreateTime timestamps, null keys to explicit partitions. Everything is read back and
 * compared with what was sent and what the producer was told.
 */
final class ProducerScenario {
    private static final int PARTITIONS = 3;
    private static final int RECORDS_PER_PRODUCER = 40;

    private ProducerScenario() {}

    private record Variant(String compression, String acks, boolean idempotent) {
        String name() {
            return compression + "-acks" + acks + (idempotent ? "-idem" : "");
        }
    }

    /** One record as sent, and what the producer's future reported for it. */
    private record Sent(ProducerRecord<byte[], byte[]> record, Variant variant, int seq,
                        int expectedPartition, RecordMetadata metadata) {}

    static void run(String bootstrap, String prefix) throws Exception {
        String topic = prefix + "-produce";
        try (Admin admin = Admin.create(Main.common(bootstrap, "java-admin"))) {
            admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, Main.REPLICATION)))
                    .all().get(TIMEOUT_MS, TimeUnit.MILLISECONDS);
        }
        step("created " + topic + " with " + PARTITIONS + " partitions");

        List<Variant> variants = new ArrayList<>();
        for (String codec : List.of("none", "gzip", "snappy", "lz4", "zstd")) {
            variants.add(new Variant(codec, "all", true));
        }
        variants.add(new Variant("zstd", "1", false));
        variants.add(new Variant("snappy", "0", false));

        // An hour in the past: a CreateTime the broker would never stamp itself.
        long baseTs = System.currentTimeMillis() - 3_600_000L;
        List<Sent> sent = new ArrayList<>();
        int global = 0;
        for (Variant v : variants) {
            Properties p = Main.common(bootstrap, "java-producer-" + v.name());
            p.put("key.serializer", ByteArraySerializer.class.getName());
            p.put("value.serializer", ByteArraySerializer.class.getName());
            p.put("compression.type", v.compression());
            p.put("acks", v.acks());
            p.put("enable.idempotence", String.valueOf(v.idempotent()));
            // Several records per batch, so that compressed batches hold more than one record.
            p.put("linger.ms", "20");
            p.put("max.block.ms", String.valueOf(TIMEOUT_MS));
            p.put("delivery.timeout.ms", String.valueOf(TIMEOUT_MS));
            List<ProducerRecord<byte[], byte[]>> records = new ArrayList<>();
            List<Integer> expected = new ArrayList<>();
            List<Future<RecordMetadata>> futures = new ArrayList<>();
            try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
                for (int seq = 0; seq < RECORDS_PER_PRODUCER; seq++, global++) {
                    long ts = baseTs + global * 10L;
                    byte[] value = (v.name() + " record " + seq + " " + "compressible ".repeat(8))
                            .getBytes(StandardCharsets.UTF_8);
                    List<Header> headers = List.of(
                            new RecordHeader("variant", v.name().getBytes(StandardCharsets.UTF_8)),
                            new RecordHeader("seq", ByteBuffer.allocate(4).putInt(seq).array()),
                            new RecordHeader("empty", new byte[0]),
                            new RecordHeader("null", null),
                            new RecordHeader("dup", new byte[] {1}),
                            new RecordHeader("dup", new byte[] {2}));
                    ProducerRecord<byte[], byte[]> r;
                    int partition;
                    if (seq % 10 == 9) {
                        // No key: the partition is chosen explicitly.
                        partition = seq % PARTITIONS;
                        r = new ProducerRecord<>(topic, partition, ts, null, value, headers);
                    } else {
                        byte[] key = ("key-" + (seq % 7)).getBytes(StandardCharsets.UTF_8);
                        // The Java client's default partitioner for keyed records: murmur2.
                        partition = Utils.toPositive(Utils.murmur2(key)) % PARTITIONS;
                        r = new ProducerRecord<>(topic, null, ts, key, value, headers);
                    }
                    records.add(r);
                    expected.add(partition);
                    futures.add(producer.send(r));
                }
                producer.flush();
                for (int seq = 0; seq < records.size(); seq++) {
                    RecordMetadata md = futures.get(seq).get(TIMEOUT_MS, TimeUnit.MILLISECONDS);
                    sent.add(new Sent(records.get(seq), v, seq, expected.get(seq), md));
                }
            }
            step("produced " + RECORDS_PER_PRODUCER + " records with " + v.name());
        }

        for (Sent s : sent) {
            String who = s.variant().name() + " seq " + s.seq();
            checkEq(s.expectedPartition(), s.metadata().partition(), who + ": partition acknowledged");
            if (s.variant().acks().equals("0")) {
                // acks=0: nobody answers, so the client cannot know the offset.
                checkEq(-1L, s.metadata().offset(), who + ": acks=0 offset");
            } else {
                check(s.metadata().offset() >= 0, () -> who + ": offset " + s.metadata().offset());
                checkEq(s.record().timestamp(), s.metadata().timestamp(), who + ": acknowledged timestamp");
            }
        }
        // The producer keeps send order per partition; the idempotent one even across retries.
        Map<String, Long> lastOffset = new HashMap<>();
        for (Sent s : sent) {
            if (s.variant().acks().equals("0")) {
                continue;
            }
            String k = s.variant().name() + "/" + s.metadata().partition();
            Long prev = lastOffset.put(k, s.metadata().offset());
            check(prev == null || prev < s.metadata().offset(),
                    () -> k + ": offsets out of send order: " + prev + " then " + s.metadata().offset());
        }
        step("acknowledgements match partitions (murmur2), timestamps and send order");

        Properties c = Main.common(bootstrap, "java-reader");
        c.put("key.deserializer", ByteArrayDeserializer.class.getName());
        c.put("value.deserializer", ByteArrayDeserializer.class.getName());
        c.put("enable.auto.commit", "false");
        List<ConsumerRecord<byte[], byte[]>> read = readAll(c, topic, sent.size());
        compare(sent, read);
        step("read back " + read.size() + " records: keys, values, headers, timestamps, partitions and offsets match");

        // No transactions were written, so read_committed (the last stable offset) sees the same.
        c.put("isolation.level", "read_committed");
        compare(sent, readAll(c, topic, sent.size()));
        step("read_committed reads the same records");

        // Fetching from the middle of a compressed batch: the client drops the batch's records
        // before the position. Pick a record of a multi-record zstd batch that is not its first.
        Sent mid = null;
        for (Sent s : sent) {
            if (s.variant().name().equals("zstd-acksall-idem") && s.metadata().offset() > 0) {
                Sent prev = null;
                for (Sent t : sent) {
                    if (t.variant() == s.variant() && t.metadata().partition() == s.metadata().partition()
                            && t.metadata().offset() == s.metadata().offset() - 1) {
                        prev = t;
                    }
                }
                if (prev != null) {
                    mid = s;
                    break;
                }
            }
        }
        check(mid != null, () -> "no zstd record directly after another in its partition");
        c.put("isolation.level", "read_uncommitted");
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(c)) {
            TopicPartition tp = new TopicPartition(topic, mid.metadata().partition());
            consumer.assign(List.of(tp));
            consumer.seek(tp, mid.metadata().offset());
            List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
            Main.pollUntil("a record is read after seeking into a batch",
                    () -> consumer.poll(Duration.ofMillis(200)).forEach(got::add),
                    () -> !got.isEmpty(), () -> "nothing yet");
            checkEq(mid.metadata().offset(), got.get(0).offset(), "first offset read after seek into a zstd batch");
            checkEq(mid.record().value(), got.get(0).value(), "value at that offset");
        }
        step("seek into the middle of a compressed batch reads from that record");
    }

    private static List<ConsumerRecord<byte[], byte[]>> readAll(Properties c, String topic, int expected) {
        List<ConsumerRecord<byte[], byte[]>> read = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(c)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int i = 0; i < PARTITIONS; i++) {
                tps.add(new TopicPartition(topic, i));
            }
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            Main.pollUntil(expected + " records are read back",
                    () -> consumer.poll(Duration.ofMillis(200)).forEach(read::add),
                    () -> read.size() >= expected,
                    () -> read.size() + " read");
            // Nothing more than what was sent.
            consumer.poll(Duration.ofMillis(300)).forEach(read::add);
            Map<TopicPartition, Long> ends = consumer.endOffsets(tps);
            long total = ends.values().stream().mapToLong(Long::longValue).sum();
            checkEq((long) expected, total, "sum of end offsets");
        }
        return read;
    }

    private static void compare(List<Sent> sent, List<ConsumerRecord<byte[], byte[]>> read) {
        checkEq(sent.size(), read.size(), "records read back");
        Map<String, Sent> byValue = new HashMap<>();
        for (Sent s : sent) {
            byValue.put(new String(s.record().value(), StandardCharsets.UTF_8), s);
        }

        Map<Integer, Long> nextOffset = new TreeMap<>();
        Map<String, ConsumerRecord<byte[], byte[]>> seen = new HashMap<>();
        for (ConsumerRecord<byte[], byte[]> r : read) {
            String value = new String(r.value(), StandardCharsets.UTF_8);
            Sent s = byValue.get(value);
            check(s != null, () -> "read a record nobody sent: " + value);
            check(seen.put(value, r) == null, () -> "read twice: " + value);
            String who = s.variant().name() + " seq " + s.seq();
            long expectedNext = nextOffset.getOrDefault(r.partition(), 0L);
            checkEq(expectedNext, r.offset(), "partition " + r.partition() + ": offsets are dense and in order");
            nextOffset.put(r.partition(), r.offset() + 1);
            checkEq(s.expectedPartition(), r.partition(), who + ": partition");
            if (!s.variant().acks().equals("0")) {
                checkEq(s.metadata().offset(), r.offset(), who + ": offset read vs acknowledged");
            }
            checkEq(s.record().key(), r.key(), who + ": key");
            checkEq(s.record().timestamp(), r.timestamp(), who + ": timestamp");
            checkEq(TimestampType.CREATE_TIME, r.timestampType(), who + ": timestamp type");
            Header[] want = s.record().headers().toArray();
            Header[] got = r.headers().toArray();
            checkEq(want.length, got.length, who + ": header count");
            for (int i = 0; i < want.length; i++) {
                checkEq(want[i].key(), got[i].key(), who + ": header " + i + " key");
                checkEq(want[i].value(), got[i].value(), who + ": header " + i + " (" + want[i].key() + ") value");
            }
        }
    }
}
