package dev.rivulet.clients;

import static dev.rivulet.clients.Main.TIMEOUT_MS;
import static dev.rivulet.clients.Main.check;
import static dev.rivulet.clients.Main.checkEq;
import static dev.rivulet.clients.Main.pollUntil;
import static dev.rivulet.clients.Main.step;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.consumer.SubscriptionPattern;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Consumers: subscribe in a group (two members, a rebalance, commits), assign() with commits but
 * no subscription (seek, seekToBeginning, offsetsForTimes), and pattern subscription; each with
 * group.protocol=classic and group.protocol=consumer (KIP-848).
 */
final class GroupScenarios {
    private GroupScenarios() {}

    static void createTopics(String bootstrap, Map<String, Integer> partitions) throws Exception {
        List<NewTopic> topics = new ArrayList<>();
        partitions.forEach((name, n) -> topics.add(new NewTopic(name, n, Main.REPLICATION)));
        try (Admin admin = Admin.create(Main.common(bootstrap, "java-admin"))) {
            admin.createTopics(topics).all().get(TIMEOUT_MS, TimeUnit.MILLISECONDS);
        }
    }

    /** Writes {@code n} records to each partition; values are "topic/partition/i". */
    static void produce(String bootstrap, String topic, int partitions, int n, long baseTs) throws Exception {
        Properties p = Main.common(bootstrap, "java-producer");
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        p.put("max.block.ms", String.valueOf(TIMEOUT_MS));
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            List<java.util.concurrent.Future<?>> futures = new ArrayList<>();
            for (int part = 0; part < partitions; part++) {
                for (int i = 0; i < n; i++) {
                    futures.add(producer.send(new ProducerRecord<>(topic, part, baseTs + i * 1000L,
                            "k" + i, topic + "/" + part + "/" + i)));
                }
            }
            for (var f : futures) {
                f.get(TIMEOUT_MS, TimeUnit.MILLISECONDS);
            }
        }
    }

    static Properties consumerProps(String bootstrap, String clientId, String group, String protocol) {
        Properties p = Main.common(bootstrap, clientId);
        p.put("key.deserializer", StringDeserializer.class.getName());
        p.put("value.deserializer", StringDeserializer.class.getName());
        p.put("group.id", group);
        p.put("group.protocol", protocol);
        p.put("enable.auto.commit", "false");
        p.put("auto.offset.reset", "earliest");
        // Topics created while a pattern subscription runs are found within a second.
        p.put("metadata.max.age.ms", "1000");
        if (protocol.equals("classic")) {
            // The consumer protocol takes these from the broker; the classic one from the client.
            p.put("heartbeat.interval.ms", "300");
            p.put("session.timeout.ms", "6000");
        }
        return p;
    }

    /**
     * A group member: its consumer, the partitions its rebalance listener says it owns, the
     * listener's calls in order, and every record it read.
     */
    static final class Member implements ConsumerRebalanceListener {
        final String name;
        final KafkaConsumer<String, String> consumer;
        final Set<TopicPartition> owned = new HashSet<>();
        final List<String> events = new ArrayList<>();
        final List<ConsumerRecord<String, String>> records = new ArrayList<>();
        /** The offset after the last record read, per partition: what a revocation commits. */
        final Map<TopicPartition, Long> next = new HashMap<>();

        Member(String name, Properties props) {
            this.name = name;
            this.consumer = new KafkaConsumer<>(props);
        }

        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
            events.add("revoked " + new TreeSet<>(partitions.stream().map(Object::toString).toList()));
            // The usual pattern: commit what was read before a partition moves, so the next
            // owner starts exactly where this one stopped.
            // (Tracked from the records read rather than asked with position(), which may have
            // to fetch a committed offset and would block a closing consumer.)
            Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
            for (TopicPartition tp : partitions) {
                Long n = next.get(tp);
                if (n != null) {
                    offsets.put(tp, new OffsetAndMetadata(n));
                }
            }
            if (!offsets.isEmpty()) {
                consumer.commitSync(offsets);
            }
            owned.removeAll(partitions);
            // What this member read of a partition is stale once it leaves: committing it again
            // after the partition comes back would move the group's offset backwards.
            partitions.forEach(next::remove);
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
            events.add("assigned " + new TreeSet<>(partitions.stream().map(Object::toString).toList()));
            owned.addAll(partitions);
        }

        @Override
        public void onPartitionsLost(Collection<TopicPartition> partitions) {
            events.add("lost " + partitions);
            owned.removeAll(partitions);
            partitions.forEach(next::remove);
        }

        void poll() {
            for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(100))) {
                records.add(r);
                next.put(new TopicPartition(r.topic(), r.partition()), r.offset() + 1);
            }
        }

        String state() {
            return name + " owns " + new TreeSet<>(owned.stream().map(Object::toString).toList())
                    + ", read " + records.size() + ", listener calls " + events;
        }
    }

    static Set<TopicPartition> partitionsOf(String topic, int n) {
        Set<TopicPartition> s = new HashSet<>();
        for (int i = 0; i < n; i++) {
            s.add(new TopicPartition(topic, i));
        }
        return s;
    }

    /**
     * Two members subscribe to one 4-partition topic in one group: the first owns everything and
     * commits; the second joins and the group rebalances (the first is told of revocations, the
     * second starts from the committed offsets, nothing is read twice); the second leaves and
     * its partitions come back; the committed offsets are read back by a fresh consumer and by
     * the admin client.
     */
    static void subscribe(String bootstrap, String prefix, String protocol) throws Exception {
        subscribe(bootstrap, prefix, protocol, false);
    }

    /**
     * The classic protocol with static members (group.instance.id) and the cooperative-sticky
     * assignor: only the partitions that move are revoked; a static member that closes stays in
     * the group until its session times out; an explicit leave (KIP-1092) empties the group.
     */
    static void subscribeStaticCooperative(String bootstrap, String prefix) throws Exception {
        subscribe(bootstrap, prefix, "classic", true);
    }

    static void subscribe(String bootstrap, String prefix, String protocol, boolean staticCoop) throws Exception {
        String variant = protocol + (staticCoop ? "-static-coop" : "");
        String topic = prefix + "-sub-" + variant;
        String group = prefix + "-group-" + variant;
        int partitions = 4;
        int perPartition = 10;
        Set<TopicPartition> all = partitionsOf(topic, partitions);
        createTopics(bootstrap, Map.of(topic, partitions));
        produce(bootstrap, topic, partitions, perPartition, System.currentTimeMillis());
        step("created " + topic + " and wrote " + perPartition + " records to each of " + partitions + " partitions");

        Properties pa = consumerProps(bootstrap, "java-member-a", group, protocol);
        Properties pb = consumerProps(bootstrap, "java-member-b", group, protocol);
        if (staticCoop) {
            for (Properties p : List.of(pa, pb)) {
                p.put("partition.assignment.strategy", CooperativeStickyAssignor.class.getName());
            }
            pa.put("group.instance.id", "instance-a");
            pb.put("group.instance.id", "instance-b");
        }
        // Eager classic rebalances revoke everything; cooperative and KIP-848 ones only what moves.
        boolean incremental = staticCoop || protocol.equals("consumer");
        Member a = new Member("A", pa);
        Member b = new Member("B", pb);
        try {
            a.consumer.subscribe(List.of(topic), a);
            pollUntil("A alone owns every partition and has read every record", a::poll,
                    () -> a.owned.equals(all) && a.records.size() >= partitions * perPartition, a::state);
            checkEq(all, a.consumer.assignment(), "A's assignment() vs its listener");
            a.consumer.commitSync();
            Map<TopicPartition, OffsetAndMetadata> committed = a.consumer.committed(all);
            for (TopicPartition tp : all) {
                check(committed.get(tp) != null && committed.get(tp).offset() == perPartition,
                        () -> "committed offset of " + tp + " after commitSync: " + committed.get(tp));
            }
            checkEq(partitions * perPartition, a.records.size(), "records A read alone");
            step("A owns all partitions, read everything, committed " + perPartition + " per partition");

            int eventsBefore = a.events.size();
            b.consumer.subscribe(List.of(topic), b);
            pollUntil("the group rebalances to two members owning two partitions each",
                    () -> {
                        a.poll();
                        b.poll();
                    },
                    () -> a.owned.size() == 2 && b.owned.size() == 2
                            && union(a.owned, b.owned).equals(all),
                    () -> a.state() + "; " + b.state());
            List<String> aNew = a.events.subList(eventsBefore, a.events.size());
            String expectRevoked = "revoked " + new TreeSet<>(
                    (incremental ? b.owned : all).stream().map(Object::toString).toList());
            check(aNew.contains(expectRevoked),
                    () -> "A's listener should have been told `" + expectRevoked + "` ("
                            + (incremental ? "incremental" : "eager") + " rebalance); its calls since B joined: " + aNew);
            step("rebalanced: " + a.state() + "; " + b.state());

            // The coordinator's view of the active group matches what the members were told
            // (DescribeGroups for classic groups, ConsumerGroupDescribe for consumer groups).
            try (Admin admin = Admin.create(Main.common(bootstrap, "java-admin"))) {
                String[] seen = {"nothing yet"};
                pollUntil("describeConsumerGroups shows the two members and their partitions",
                        () -> {
                            a.poll();
                            b.poll();
                        },
                        () -> {
                            ConsumerGroupDescription d;
                            try {
                                d = admin.describeConsumerGroups(List.of(group)).describedGroups().get(group)
                                        .get(TIMEOUT_MS, TimeUnit.MILLISECONDS);
                            } catch (Exception e) {
                                throw new RuntimeException(e);
                            }
                            seen[0] = d.toString();
                            Map<String, Set<TopicPartition>> byClient = new HashMap<>();
                            for (MemberDescription m : d.members()) {
                                byClient.put(m.clientId(), m.assignment().topicPartitions());
                                if (staticCoop && m.groupInstanceId().isEmpty()) {
                                    return false;
                                }
                            }
                            return d.groupState() == GroupState.STABLE
                                    && byClient.size() == 2
                                    && a.owned.equals(byClient.get("java-member-a"))
                                    && b.owned.equals(byClient.get("java-member-b"));
                        },
                        () -> seen[0] + "; " + a.state() + "; " + b.state());
            }
            step("describeConsumerGroups: stable, both members with the partitions they own");

            // The second round is written after the rebalance, so each member reads its share:
            // B from the offsets A committed when its partitions were revoked.
            int readBefore = a.records.size();
            produce(bootstrap, topic, partitions, perPartition, System.currentTimeMillis());

            pollUntil("the second round of records is read by the two members",
                    () -> {
                        a.poll();
                        b.poll();
                    },
                    () -> a.records.size() - readBefore + b.records.size() >= partitions * perPartition,
                    () -> a.state() + "; " + b.state());
            // Every record of the second round exactly once, from whoever owns its partition.
            Set<String> second = new HashSet<>();
            for (ConsumerRecord<String, String> r : union(a.records.subList(readBefore, a.records.size()), b.records)) {
                check(r.offset() >= perPartition,
                        () -> "re-read " + r.topic() + "-" + r.partition() + "@" + r.offset()
                                + " although its offset was committed");
                check(second.add(r.value()), () -> "read twice: " + r.value());
            }
            checkEq(partitions * perPartition, second.size(), "records of the second round");
            check(!b.records.isEmpty() && a.records.size() > readBefore,
                    () -> "both members should read part of the second round: " + a.state() + "; " + b.state());
            for (ConsumerRecord<String, String> r : b.records) {
                check(b.owned.contains(new TopicPartition(r.topic(), r.partition())),
                        () -> "B read " + r.value() + " from a partition it does not own");
            }
            a.consumer.commitSync();
            b.consumer.commitSync();
            step("each record of the second round read once; both members committed");

            long closedAt = System.nanoTime();
            b.consumer.close(CloseOptions.timeout(Duration.ofMillis(TIMEOUT_MS)));
            pollUntil("A owns every partition again after B left", a::poll,
                    () -> a.owned.equals(all), a::state);
            long handBackMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - closedAt);
            if (staticCoop) {
                // A static member's close is not a leave: its partitions wait for its session
                // timeout (6 s here) in case it comes back.
                check(handBackMs >= 4_000,
                        () -> "B's partitions moved " + handBackMs + " ms after a static member closed; "
                                + "they should wait for its session timeout");
            }
            step("B closed; A owns all partitions again after " + handBackMs + " ms");
        } finally {
            // Static members stay in the group on close unless told to leave (KIP-1092).
            a.consumer.close(CloseOptions.timeout(Duration.ofMillis(TIMEOUT_MS))
                    .withGroupMembershipOperation(CloseOptions.GroupMembershipOperation.LEAVE_GROUP));
            b.consumer.close(CloseOptions.timeout(Duration.ofMillis(TIMEOUT_MS)));
        }

        try (KafkaConsumer<String, String> fresh =
                     new KafkaConsumer<>(consumerProps(bootstrap, "java-checker", group, protocol))) {
            Map<TopicPartition, OffsetAndMetadata> committed = fresh.committed(all);
            for (TopicPartition tp : all) {
                check(committed.get(tp) != null && committed.get(tp).offset() == 2L * perPartition,
                        () -> "committed offset of " + tp + " read by a new consumer: " + committed.get(tp));
            }
        }
        try (Admin admin = Admin.create(Main.common(bootstrap, "java-admin"))) {
            Map<TopicPartition, OffsetAndMetadata> offsets = admin.listConsumerGroupOffsets(group)
                    .partitionsToOffsetAndMetadata().get(TIMEOUT_MS, TimeUnit.MILLISECONDS);
            for (TopicPartition tp : all) {
                check(offsets.get(tp) != null && offsets.get(tp).offset() == 2L * perPartition,
                        () -> "admin listConsumerGroupOffsets " + tp + ": " + offsets.get(tp));
            }
            ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group))
                    .describedGroups().get(group).get(TIMEOUT_MS, TimeUnit.MILLISECONDS);
            checkEq(GroupState.EMPTY, d.groupState(), "group state after both members left");
            checkEq(protocol.equals("classic") ? GroupType.CLASSIC : GroupType.CONSUMER, d.type(), "group type");
        }
        step("committed offsets read back by a new consumer and by the admin client; group is empty");
    }

    static <T> List<T> union(List<T> x, List<T> y) {
        List<T> out = new ArrayList<>(x);
        out.addAll(y);
        return out;
    }

    static <T> Set<T> union(Set<T> x, Set<T> y) {
        Set<T> out = new HashSet<>(x);
        out.addAll(y);
        return out;
    }

    /**
     * assign() with a group id but no subscription: positions, seekToBeginning, seek,
     * beginning/end offsets, offsetsForTimes, commitSync with metadata and committed(), and a
     * second consumer that starts from the committed offset.
     */
    static void assign(String bootstrap, String prefix, String protocol) throws Exception {
        String topic = prefix + "-assign-" + protocol;
        String group = prefix + "-assign-group-" + protocol;
        createTopics(bootstrap, Map.of(topic, 2));
        long baseTs = System.currentTimeMillis() - 600_000L;
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        // 20 records in each partition, a second apart: offset i has timestamp baseTs + i s.
        produce(bootstrap, topic, 2, 20, baseTs);
        step("wrote 20 records to each partition of " + topic);

        try (KafkaConsumer<String, String> c =
                     new KafkaConsumer<>(consumerProps(bootstrap, "java-assign", group, protocol))) {
            c.assign(List.of(p0, p1));
            checkEq(Map.of(p0, 0L, p1, 0L), c.beginningOffsets(List.of(p0, p1)), "beginningOffsets");
            checkEq(Map.of(p0, 20L, p1, 20L), c.endOffsets(List.of(p0, p1)), "endOffsets");
            c.seekToBeginning(List.of(p0, p1));
            List<ConsumerRecord<String, String>> read = new ArrayList<>();
            pollUntil("40 records are read", () -> c.poll(Duration.ofMillis(100)).forEach(read::add),
                    () -> read.size() >= 40, () -> read.size() + " read");
            checkEq(40, read.size(), "records read after seekToBeginning");
            checkEq(20L, c.position(p0), "position of partition 0 at the end");
            checkEq(20L, c.position(p1), "position of partition 1 at the end");
            for (ConsumerRecord<String, String> r : read) {
                checkEq(topic + "/" + r.partition() + "/" + r.offset(), r.value(), "value at offset " + r.offset());
                checkEq(baseTs + r.offset() * 1000L, r.timestamp(), "timestamp of " + r.value());
            }
            step("seekToBeginning read both partitions in full; positions at the end");

            c.commitSync(Map.of(p0, new OffsetAndMetadata(7, "seven"), p1, new OffsetAndMetadata(20)));
            Map<TopicPartition, OffsetAndMetadata> committed = c.committed(Set.of(p0, p1));
            checkEq(7L, committed.get(p0).offset(), "committed offset of partition 0");
            checkEq("seven", committed.get(p0).metadata(), "committed metadata of partition 0");
            checkEq(20L, committed.get(p1).offset(), "committed offset of partition 1");
            step("commitSync without a subscription; committed() reads offset and metadata back");

            c.seek(p0, 13);
            c.pause(List.of(p1));
            List<ConsumerRecord<String, String>> after = new ArrayList<>();
            pollUntil("records from offset 13 are read after seek", () -> c.poll(Duration.ofMillis(100)).forEach(after::add),
                    () -> !after.isEmpty(), () -> "nothing yet");
            checkEq(13L, after.get(0).offset(), "first offset after seek(13)");
            step("seek(13) reads from offset 13");

            Map<TopicPartition, OffsetAndTimestamp> exact = c.offsetsForTimes(Map.of(p0, baseTs + 5000L));
            checkEq(5L, exact.get(p0).offset(), "offsetsForTimes at record 5's timestamp");
            checkEq(baseTs + 5000L, exact.get(p0).timestamp(), "timestamp found by offsetsForTimes");
            Map<TopicPartition, OffsetAndTimestamp> between = c.offsetsForTimes(Map.of(p0, baseTs + 5500L));
            checkEq(6L, between.get(p0).offset(), "offsetsForTimes between records 5 and 6");
            Map<TopicPartition, OffsetAndTimestamp> later = c.offsetsForTimes(Map.of(p0, baseTs + 60_000L));
            check(later.get(p0) == null, () -> "offsetsForTimes after the last record: " + later.get(p0));
            step("offsetsForTimes: exact, between records, after the end");
        }

        try (KafkaConsumer<String, String> c =
                     new KafkaConsumer<>(consumerProps(bootstrap, "java-assign-2", group, protocol))) {
            c.assign(List.of(p0));
            List<ConsumerRecord<String, String>> read = new ArrayList<>();
            pollUntil("a new consumer reads from the committed offset", () -> c.poll(Duration.ofMillis(100)).forEach(read::add),
                    () -> !read.isEmpty(), () -> "nothing yet");
            checkEq(7L, read.get(0).offset(), "first offset read by a new consumer of the group");
        }
        step("a new consumer of the group starts at the committed offset 7");
    }

    /**
     * Pattern subscription: matching topics are consumed, the others are not, and a matching
     * topic created while the consumer runs is picked up.
     */
    static void pattern(String bootstrap, String prefix, String protocol) throws Exception {
        // The protocol goes in front of the names: the pattern is anchored at the prefix.
        prefix = prefix + "-" + protocol;
        String a = prefix + "-pat-a";
        String b = prefix + "-pat-b";
        String other = prefix + "-other";
        createTopics(bootstrap, Map.of(a, 1, b, 2, other, 1));
        long now = System.currentTimeMillis();
        produce(bootstrap, a, 1, 3, now);
        produce(bootstrap, b, 2, 3, now);
        produce(bootstrap, other, 1, 3, now);
        step("created " + a + ", " + b + " and " + other);

        Member m = new Member("P", consumerProps(bootstrap, "java-pattern", prefix + "-pat-group", protocol));
        try {
            m.consumer.subscribe(Pattern.compile(Pattern.quote(prefix + "-pat-") + ".*"), m);
            Set<TopicPartition> want = union(partitionsOf(a, 1), partitionsOf(b, 2));
            pollUntil("the pattern's two topics are assigned and read", m::poll,
                    () -> m.owned.equals(want) && m.records.size() >= 9, m::state);
            checkEq(9, m.records.size(), "records read from the matching topics");
            for (ConsumerRecord<String, String> r : m.records) {
                check(!r.topic().equals(other), () -> "read from a topic the pattern does not match: " + r.value());
            }
            step("pattern matched " + a + " and " + b + ", not " + other);

            String c = prefix + "-pat-c";
            createTopics(bootstrap, Map.of(c, 1));
            produce(bootstrap, c, 1, 2, now);
            Set<TopicPartition> want2 = union(want, partitionsOf(c, 1));
            pollUntil("a new matching topic is assigned and read", m::poll,
                    () -> m.owned.equals(want2) && m.records.size() >= 11, m::state);
            checkEq(11, m.records.size(), "records read once the new topic joined");
            step("a matching topic created later was picked up");
        } finally {
            m.consumer.close(CloseOptions.timeout(Duration.ofMillis(TIMEOUT_MS)));
        }
        if (protocol.equals("consumer")) {
            // KIP-848's server-side regex (RE2J syntax, evaluated by the coordinator).
            Member r = new Member("R", consumerProps(bootstrap, "java-regex", prefix + "-regex-group", protocol));
            try {
                r.consumer.subscribe(new SubscriptionPattern(prefix + "-pat-.*"), r);
                Set<TopicPartition> want = union(union(partitionsOf(a, 1), partitionsOf(b, 2)),
                        partitionsOf(prefix + "-pat-c", 1));
                pollUntil("the broker-side regex assigns the three matching topics", r::poll,
                        () -> r.owned.equals(want) && r.records.size() >= 11, r::state);
                checkEq(11, r.records.size(), "records read with the broker-side regex");
            } finally {
                r.consumer.close(CloseOptions.timeout(Duration.ofMillis(TIMEOUT_MS)));
            }
            step("subscribe(SubscriptionPattern): the coordinator resolved the regex");
        }
    }
}
