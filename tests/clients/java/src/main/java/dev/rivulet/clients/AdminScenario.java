package dev.rivulet.clients;

import static dev.rivulet.clients.Main.TIMEOUT_MS;
import static dev.rivulet.clients.Main.check;
import static dev.rivulet.clients.Main.checkEq;
import static dev.rivulet.clients.Main.pollUntil;
import static dev.rivulet.clients.Main.step;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListGroupsOptions;
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
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.TopicCollection;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.GroupIdNotFoundException;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.InvalidPartitionsException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The AdminClient calls an operator's tools make: topics (create with configs and with bad ones,
 * list, describe, add partitions, delete), configs (describe, incremental alter), records
 * (delete, list offsets by every spec), consumer groups (list, describe, offsets: list, alter,
 * delete; delete the group), the cluster and its log dirs.
 */
final class AdminScenario {
    private AdminScenario() {}

    static <T> T get(KafkaFuture<T> f) throws Exception {
        return f.get(TIMEOUT_MS, TimeUnit.MILLISECONDS);
    }

    /** Runs {@code call} and checks it fails with {@code expected} (the Kafka error the client maps). */
    static void expectError(String what, Class<? extends Throwable> expected, KafkaFuture<?> call) throws Exception {
        try {
            Object result = call.get(TIMEOUT_MS, TimeUnit.MILLISECONDS);
            throw new Main.CheckFailed(what + ": expected " + expected.getSimpleName() + " but it succeeded with " + result);
        } catch (ExecutionException e) {
            check(expected.isInstance(e.getCause()),
                    () -> what + ": expected " + expected.getSimpleName() + " but got " + e.getCause());
        }
    }

    static void run(String bootstrap, String prefix) throws Exception {
        String topic = prefix + "-admin";
        String group = prefix + "-admin-group";
        try (Admin admin = Admin.create(Main.common(bootstrap, "java-admin"))) {
            Collection<Node> nodes = get(admin.describeCluster().nodes());
            checkEq(1, nodes.size(), "nodes in describeCluster");
            Node node = nodes.iterator().next();
            checkEq(bootstrap, node.host() + ":" + node.port(), "the node's advertised address");
            Node controller = get(admin.describeCluster().controller());
            check(controller != null && !controller.isEmpty(), () -> "describeCluster controller: " + controller);
            String clusterId = get(admin.describeCluster().clusterId());
            check(clusterId != null && !clusterId.isEmpty(), () -> "describeCluster clusterId: " + clusterId);
            step("describeCluster: node " + node + ", controller " + controller.id() + ", cluster " + clusterId);

            CreateTopicsResult created = admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1)
                    .configs(Map.of("retention.ms", "3600000", "max.message.bytes", "200000"))));
            get(created.all());
            checkEq(3, get(created.numPartitions(topic)), "partitions reported by createTopics");
            checkEq(1, get(created.replicationFactor(topic)), "replication factor reported by createTopics");
            checkEq("3600000", get(created.config(topic)).get("retention.ms").value(), "retention.ms reported by createTopics");
            step("createTopics with configs");

            expectError("createTopics with retention.ms=abc", InvalidConfigurationException.class,
                    admin.createTopics(List.of(new NewTopic(prefix + "-bad-value", 1, (short) 1)
                            .configs(Map.of("retention.ms", "abc")))).all());
            expectError("createTopics with an unknown config", InvalidConfigurationException.class,
                    admin.createTopics(List.of(new NewTopic(prefix + "-bad-name", 1, (short) 1)
                            .configs(Map.of("no.such.config", "1")))).all());
            expectError("createTopics of an existing topic", TopicExistsException.class,
                    admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all());
            Set<String> names = get(admin.listTopics().names());
            check(!names.contains(prefix + "-bad-value") && !names.contains(prefix + "-bad-name"),
                    () -> "a topic with a bad config was created anyway: " + names);
            step("createTopics with bad configs and an existing name fail with INVALID_CONFIG / TOPIC_ALREADY_EXISTS");

            check(names.contains(topic), () -> "listTopics does not list " + topic + ": " + names);
            TopicDescription td = get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic);
            checkEq(3, td.partitions().size(), "partitions in describeTopics");
            check(!td.isInternal(), () -> "topic described as internal");
            for (TopicPartitionInfo p : td.partitions()) {
                checkEq(node.id(), p.leader() == null ? null : p.leader().id(), "leader of partition " + p.partition());
                checkEq(1, p.replicas().size(), "replicas of partition " + p.partition());
                checkEq(1, p.isr().size(), "ISR of partition " + p.partition());
            }
            TopicDescription byId = get(admin.describeTopics(TopicCollection.ofTopicIds(List.of(td.topicId())))
                    .allTopicIds()).get(td.topicId());
            checkEq(topic, byId.name(), "name of the topic described by its id");
            checkEq(3, byId.partitions().size(), "partitions of the topic described by its id");
            step("listTopics and describeTopics, by name and by id");

            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            Config config = get(admin.describeConfigs(List.of(res)).all()).get(res);
            ConfigEntry retention = config.get("retention.ms");
            checkEq("3600000", retention == null ? null : retention.value(), "described retention.ms");
            checkEq(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, retention.source(), "source of retention.ms");
            ConfigEntry segment = config.get("segment.bytes");
            check(segment != null && segment.source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                    () -> "segment.bytes should be described as a default: " + segment);
            ConfigResource brokerRes = new ConfigResource(ConfigResource.Type.BROKER, String.valueOf(node.id()));
            Config brokerConfig = get(admin.describeConfigs(List.of(brokerRes)).all()).get(brokerRes);
            check(!brokerConfig.entries().isEmpty(), () -> "describeConfigs of the broker returned nothing");
            step("describeConfigs of the topic (" + config.entries().size() + " entries) and the broker ("
                    + brokerConfig.entries().size() + " entries)");

            get(admin.incrementalAlterConfigs(Map.of(res, List.of(
                    new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET),
                    new AlterConfigOp(new ConfigEntry("max.message.bytes", ""), AlterConfigOp.OpType.DELETE)))).all());
            Config altered = get(admin.describeConfigs(List.of(res)).all()).get(res);
            checkEq("7200000", altered.get("retention.ms").value(), "retention.ms after SET");
            check(altered.get("max.message.bytes").source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                    () -> "max.message.bytes still set after DELETE: " + altered.get("max.message.bytes"));
            expectError("incrementalAlterConfigs retention.ms=abc", InvalidConfigurationException.class,
                    admin.incrementalAlterConfigs(Map.of(res, List.of(new AlterConfigOp(
                            new ConfigEntry("retention.ms", "abc"), AlterConfigOp.OpType.SET)))).all());
            checkEq("7200000", get(admin.describeConfigs(List.of(res)).all()).get(res).get("retention.ms").value(),
                    "retention.ms after a rejected change");
            step("incrementalAlterConfigs SET and DELETE; a bad value is rejected and changes nothing");

            get(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all());
            checkEq(5, get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic).partitions().size(),
                    "partitions after createPartitions");
            expectError("createPartitions to fewer partitions", InvalidPartitionsException.class,
                    admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(2))).all());
            step("createPartitions 3 -> 5; shrinking is refused");

            // Ten records in partition 0, a millisecond apart, except record 7 which is far in
            // the future: the max-timestamp record is not the last one.
            TopicPartition p0 = new TopicPartition(topic, 0);
            long base = System.currentTimeMillis() - 60_000L;
            Properties pp = Main.common(bootstrap, "java-admin-producer");
            pp.put("key.serializer", StringSerializer.class.getName());
            pp.put("value.serializer", StringSerializer.class.getName());
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
                for (int i = 0; i < 10; i++) {
                    long ts = i == 7 ? base + 100_000L : base + i;
                    producer.send(new ProducerRecord<>(topic, 0, ts, "k", "v" + i)).get(TIMEOUT_MS, TimeUnit.MILLISECONDS);
                }
            }
            long low = get(admin.deleteRecords(Map.of(p0, RecordsToDelete.beforeOffset(4))).lowWatermarks().get(p0)).lowWatermark();
            checkEq(4L, low, "low watermark after deleteRecords before offset 4");
            step("deleteRecords before offset 4");

            checkEq(4L, listOffset(admin, p0, OffsetSpec.earliest()).offset(), "earliest offset");
            checkEq(10L, listOffset(admin, p0, OffsetSpec.latest()).offset(), "latest offset");
            checkEq(6L, listOffset(admin, p0, OffsetSpec.forTimestamp(base + 6)).offset(), "offset for record 6's timestamp");
            checkEq(4L, listOffset(admin, p0, OffsetSpec.forTimestamp(base)).offset(),
                    "offset for a timestamp before the first remaining record");
            ListOffsetsResultInfo max = listOffset(admin, p0, OffsetSpec.maxTimestamp());
            checkEq(7L, max.offset(), "offset of the max timestamp");
            checkEq(base + 100_000L, max.timestamp(), "max timestamp");
            step("listOffsets earliest, latest, by timestamp and max-timestamp");

            KafkaConsumer<String, String> consumer = new KafkaConsumer<>(
                    GroupScenarios.consumerProps(bootstrap, "java-admin-consumer", group, "classic"));
            List<Object> read = new ArrayList<>();
            try {
                consumer.subscribe(List.of(topic));
                pollUntil("the group's consumer reads the 6 remaining records",
                        () -> consumer.poll(Duration.ofMillis(100)).forEach(read::add),
                        () -> read.size() >= 6, () -> read.size() + " read");
                consumer.commitSync();
                Collection<GroupListing> groups = get(admin.listGroups(ListGroupsOptions.forConsumerGroups()).all());
                GroupListing listing = groups.stream().filter(g -> g.groupId().equals(group)).findFirst().orElse(null);
                check(listing != null, () -> "listGroups does not list " + group + ": " + groups);
                checkEq(java.util.Optional.of(GroupState.STABLE), listing.groupState(), "listed state of the active group");
                ConsumerGroupDescription d = get(admin.describeConsumerGroups(List.of(group)).describedGroups().get(group));
                checkEq(GroupState.STABLE, d.groupState(), "described state of the active group");
                checkEq(1, d.members().size(), "members of the active group");
                MemberDescription member = d.members().iterator().next();
                checkEq("java-admin-consumer", member.clientId(), "member's client id");
                checkEq(5, member.assignment().topicPartitions().size(), "partitions assigned to the member");
                checkEq(node.id(), d.coordinator().id(), "group coordinator");
                step("listGroups and describeConsumerGroups of an active group");
            } finally {
                consumer.close(CloseOptions.timeout(Duration.ofMillis(TIMEOUT_MS)));
            }

            Map<TopicPartition, OffsetAndMetadata> offsets =
                    get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
            checkEq(10L, offsets.get(p0) == null ? null : offsets.get(p0).offset(), "committed offset of partition 0");
            get(admin.alterConsumerGroupOffsets(group, Map.of(p0, new OffsetAndMetadata(5, "reset"))).all());
            offsets = get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
            checkEq(5L, offsets.get(p0).offset(), "offset of partition 0 after alterConsumerGroupOffsets");
            checkEq("reset", offsets.get(p0).metadata(), "metadata after alterConsumerGroupOffsets");
            get(admin.deleteConsumerGroupOffsets(group, Set.of(p0)).all());
            Map<TopicPartition, OffsetAndMetadata> afterDelete =
                    get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
            check(afterDelete.get(p0) == null, () -> "offset of partition 0 after deleteConsumerGroupOffsets: " + afterDelete);
            step("listConsumerGroupOffsets, alterConsumerGroupOffsets, deleteConsumerGroupOffsets");

            get(admin.deleteConsumerGroups(List.of(group)).all());
            Collection<GroupListing> groupsAfter = get(admin.listGroups(ListGroupsOptions.forConsumerGroups()).all());
            check(groupsAfter.stream().noneMatch(g -> g.groupId().equals(group)),
                    () -> "listGroups still lists the deleted group: " + groupsAfter);
            expectError("deleteConsumerGroups of a deleted group", GroupIdNotFoundException.class,
                    admin.deleteConsumerGroups(List.of(group)).all());
            step("deleteConsumerGroups");

            Map<String, LogDirDescription> dirs = get(admin.describeLogDirs(List.of(node.id())).allDescriptions()).get(node.id());
            check(dirs != null && !dirs.isEmpty(), () -> "describeLogDirs returned no dir: " + dirs);
            ReplicaInfo replica = null;
            for (LogDirDescription dir : dirs.values()) {
                check(dir.error() == null, () -> "log dir error: " + dir.error());
                if (dir.replicaInfos().containsKey(p0)) {
                    replica = dir.replicaInfos().get(p0);
                }
            }
            ReplicaInfo found = replica;
            check(found != null, () -> "describeLogDirs does not list " + p0 + ": " + dirs);
            check(found.size() > 0, () -> "size of " + p0 + " in describeLogDirs: " + found.size());
            step("describeLogDirs lists the topic's partitions");

            get(admin.deleteTopics(List.of(topic)).all());
            pollUntil("listTopics no longer lists " + topic, () -> {}, () -> {
                try {
                    return !get(admin.listTopics().names()).contains(topic);
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            }, () -> "still listed");
            expectError("deleteTopics of a deleted topic", UnknownTopicOrPartitionException.class,
                    admin.deleteTopics(List.of(topic)).all());
            step("deleteTopics; deleting again fails with UNKNOWN_TOPIC_OR_PARTITION");
        }
    }

    static ListOffsetsResultInfo listOffset(Admin admin, TopicPartition tp, OffsetSpec spec) throws Exception {
        return get(admin.listOffsets(Map.of(tp, spec)).partitionResult(tp));
    }
}
