package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/IBM/sarama"
)

// saramaConfig is the configuration the issue asks for: the newest protocol version sarama
// knows, and an idempotent, acks=all producer (which needs MaxOpenRequests=1).
func saramaConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.ClientID = "rivulet-go-sarama"
	cfg.Version = sarama.MaxVersion
	cfg.Producer.Idempotent = true
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Retry.Max = 5
	cfg.Metadata.Retry.Backoff = 100 * time.Millisecond
	return cfg
}

func saramaCodec(name string) sarama.CompressionCodec {
	switch name {
	case "none":
		return sarama.CompressionNone
	case "gzip":
		return sarama.CompressionGZIP
	case "snappy":
		return sarama.CompressionSnappy
	case "lz4":
		return sarama.CompressionLZ4
	case "zstd":
		return sarama.CompressionZSTD
	}
	fail("unknown codec %s", name)
	return 0
}

func saramaAdminClient(bootstrap string) (sarama.Client, sarama.ClusterAdmin) {
	client, err := sarama.NewClient(seeds(bootstrap), saramaConfig())
	check(err, "sarama NewClient")
	adm, err := sarama.NewClusterAdminFromClient(client)
	check(err, "sarama NewClusterAdmin")
	return client, adm
}

func saramaCreateTopic(bootstrap string, adm sarama.ClusterAdmin, topic string, partitions int32, configs map[string]*string) {
	err := adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: replicationFactor, ConfigEntries: configs}, false)
	check(err, "sarama CreateTopic "+topic)
	waitReplicated(topic, partitions)
}

// saramaProduceConsume: a SyncProducer per codec sends keyed records with headers and
// timestamps; a partition consumer per partition reads them back.
func saramaProduceConsume(bootstrap, prefix string) {
	topic := prefix
	client, adm := saramaAdminClient(bootstrap)
	defer adm.Close()
	saramaCreateTopic(bootstrap, adm, topic, 3, nil)

	want := map[po]rec{}
	for ci, codec := range codecs {
		cfg := saramaConfig()
		cfg.Producer.Compression = saramaCodec(codec)
		producer, err := sarama.NewSyncProducer(seeds(bootstrap), cfg)
		check(err, "sarama NewSyncProducer "+codec)
		records := recordsFor(ci, codec)
		msgs := make([]*sarama.ProducerMessage, len(records))
		for i, r := range records {
			hs := make([]sarama.RecordHeader, len(r.Headers))
			for j, h := range r.Headers {
				hs[j] = sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value}
			}
			msgs[i] = &sarama.ProducerMessage{Topic: topic, Key: sarama.ByteEncoder(r.Key), Value: sarama.ByteEncoder(r.Value), Headers: hs, Timestamp: time.UnixMilli(r.TimestampMs)}
		}
		check(producer.SendMessages(msgs), "sarama SendMessages with "+codec)
		for i, m := range msgs {
			r := records[i]
			r.Partition, r.Offset = m.Partition, m.Offset
			want[po{r.Partition, r.Offset}] = r
		}
		check(producer.Close(), "sarama producer close")
		step("produced %d records with %s", len(msgs), codec)
	}
	if len(want) != len(codecs)*recordsPerCodec {
		fail("%d distinct acknowledged positions for %d records", len(want), len(codecs)*recordsPerCodec)
	}
	checkContiguous(want)

	consumer, err := sarama.NewConsumerFromClient(client)
	check(err, "sarama NewConsumer")
	defer consumer.Close()
	perPartition := map[int32]int{}
	for k := range want {
		perPartition[k.Partition]++
	}
	var got []rec
	deadline := time.After(60 * time.Second)
	for p := int32(0); p < 3; p++ {
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		check(err, fmt.Sprintf("sarama ConsumePartition %d", p))
		for n := 0; n < perPartition[p]; n++ {
			select {
			case m := <-pc.Messages():
				hs := make([]header, len(m.Headers))
				for i, h := range m.Headers {
					v := h.Value
					if v == nil {
						v = []byte{}
					}
					hs[i] = header{Key: string(h.Key), Value: v}
				}
				got = append(got, rec{Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value, Headers: hs, TimestampMs: m.Timestamp.UnixMilli()})
			case err := <-pc.Errors():
				fail("sarama consume partition %d: %v", p, err)
			case <-deadline:
				fail("read %d records before the deadline; partition %d still short", len(got), p)
			}
		}
		check(pc.Close(), "sarama partition consumer close")
	}
	compareRecords(want, got)
	step("read back %d records, all equal", len(got))
}

// saramaMember is one sarama ConsumerGroup member: its handler records the claims of each
// session and the offsets it reads, and commits each message synchronously.
type saramaMember struct {
	name   string
	group  sarama.ConsumerGroup
	cancel context.CancelFunc
	done   chan struct{}
	*memberLog
	topic string
}

func (m *saramaMember) Setup(s sarama.ConsumerGroupSession) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.own.add(s.Claims()[m.topic])
	step("%s: generation %d claims %v", m.name, s.GenerationID(), m.own.list())
	return nil
}

func (m *saramaMember) Cleanup(s sarama.ConsumerGroupSession) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.own.remove(s.Claims()[m.topic])
	return nil
}

func (m *saramaMember) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for msg := range c.Messages() {
		m.mu.Lock()
		m.read[msg.Partition] = append(m.read[msg.Partition], msg.Offset)
		m.mu.Unlock()
		s.MarkMessage(msg, "")
		s.Commit()
	}
	return nil
}

func startSaramaMember(bootstrap, name, group, topic string) *saramaMember {
	cfg := saramaConfig()
	cfg.ClientID = "rivulet-go-sarama-" + name
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	cfg.Consumer.Group.Heartbeat.Interval = 300 * time.Millisecond
	cfg.Consumer.MaxWaitTime = 300 * time.Millisecond
	g, err := sarama.NewConsumerGroup(seeds(bootstrap), group, cfg)
	check(err, "sarama NewConsumerGroup")
	ctx, cancel := context.WithCancel(context.Background())
	m := &saramaMember{name: name, group: g, cancel: cancel, done: make(chan struct{}), memberLog: newMemberLog(), topic: topic}
	go func() {
		for err := range g.Errors() {
			fail("%s: sarama group error: %v", name, err)
		}
	}()
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			// Consume returns at the end of each session (a rebalance); join again.
			if err := g.Consume(ctx, []string{topic}, m); err != nil && ctx.Err() == nil {
				fail("%s: sarama Consume: %v", name, err)
			}
		}
	}()
	return m
}

func (m *saramaMember) close() {
	m.cancel()
	<-m.done
	check(m.group.Close(), m.name+": sarama group close")
}

func saramaProducePhase(bootstrap, topic string, phase int) {
	cfg := saramaConfig()
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	producer, err := sarama.NewSyncProducer(seeds(bootstrap), cfg)
	check(err, "sarama NewSyncProducer")
	defer producer.Close()
	var msgs []*sarama.ProducerMessage
	for p := int32(0); p < groupPartitions; p++ {
		for i := 0; i < recordsPerPhase; i++ {
			msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Partition: p, Key: sarama.StringEncoder(fmt.Sprintf("k%d", i)), Value: sarama.StringEncoder(fmt.Sprintf("phase%d-p%d-%d", phase, p, i))})
		}
	}
	check(producer.SendMessages(msgs), "sarama produce phase")
}

// saramaGroup: the same story as franzGroup, with sarama's ConsumerGroup (classic protocol,
// range assignor, JoinGroup/SyncGroup at the versions of sarama.MaxVersion).
func saramaGroup(bootstrap, prefix string) {
	topic, group := prefix, prefix+"-group"
	client, adm := saramaAdminClient(bootstrap)
	defer adm.Close()
	_ = client
	saramaCreateTopic(bootstrap, adm, topic, groupPartitions, nil)
	saramaProducePhase(bootstrap, topic, 1)

	committed := func() (map[int32]int64, string) {
		parts := make([]int32, groupPartitions)
		for i := range parts {
			parts[i] = int32(i)
		}
		resp, err := adm.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
		if err != nil {
			return nil, err.Error()
		}
		out := map[int32]int64{}
		for _, p := range parts {
			if b := resp.GetBlock(topic, p); b != nil && b.Err == sarama.ErrNoError && b.Offset >= 0 {
				out[p] = b.Offset
			}
		}
		return out, fmt.Sprint(out)
	}
	allAt := func(want int64) func() (bool, string) {
		return func() (bool, string) {
			c, seen := committed()
			if len(c) != groupPartitions {
				return false, seen
			}
			for _, at := range c {
				if at != want {
					return false, seen
				}
			}
			return true, seen
		}
	}

	a := startSaramaMember(bootstrap, "a", group, topic)
	waitFor(30*time.Second, "member a owns all partitions", func() (bool, string) {
		return len(a.owned()) == groupPartitions, fmt.Sprint(a.owned())
	})
	waitFor(30*time.Second, "the group committed offset 10 on every partition", allAt(recordsPerPhase))
	step("a read and committed phase 1")

	b := startSaramaMember(bootstrap, "b", group, topic)
	waitFor(45*time.Second, "a and b own two partitions each", func() (bool, string) {
		oa, ob := a.owned(), b.owned()
		return splitEvenly(oa, ob, groupPartitions), fmt.Sprintf("a=%v b=%v", oa, ob)
	})
	saramaProducePhase(bootstrap, topic, 2)
	waitFor(30*time.Second, "the group committed offset 20 on every partition", allAt(2*recordsPerPhase))
	checkPhases(a.owned(), b.owned(), a.readOffsets(), b.readOffsets())

	groups, err := adm.DescribeConsumerGroups([]string{group})
	check(err, "sarama DescribeConsumerGroups")
	if len(groups) != 1 || groups[0].State != "Stable" || groups[0].Protocol != "range" || len(groups[0].Members) != 2 {
		fail("DescribeConsumerGroups %s: %+v, want Stable, range, 2 members", group, groups)
	}
	described := map[string][]int32{}
	for _, m := range groups[0].Members {
		a, err := m.GetMemberAssignment()
		check(err, "sarama: decode a member's assignment from DescribeGroups")
		meta, err := m.GetMemberMetadata()
		check(err, "sarama: decode a member's metadata from DescribeGroups")
		if fmt.Sprint(meta.Topics) != fmt.Sprint([]string{topic}) {
			fail("DescribeGroups: member %s subscribed to %v, want [%s]", m.ClientId, meta.Topics, topic)
		}
		ps := append([]int32{}, a.Topics[topic]...)
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		described[m.ClientId] = ps
	}
	owners := map[string][]int32{"rivulet-go-sarama-a": a.owned(), "rivulet-go-sarama-b": b.owned()}
	if fmt.Sprint(described) != fmt.Sprint(owners) {
		fail("the coordinator describes owners %v, the members claim %v", described, owners)
	}

	b.close()
	waitFor(45*time.Second, "a owns all partitions again after b left", func() (bool, string) {
		return len(a.owned()) == groupPartitions, fmt.Sprint(a.owned())
	})
	a.close()
	if c, seen := committed(); len(c) != groupPartitions {
		fail("committed offsets after both members left: %s", seen)
	}
	step("b left, a took everything back; offsets kept after both left")
}

// checkPhases checks the group story's reads: a read phase 1 (offsets 0..9) of every
// partition; phase 2 (10..19) of each partition was read by its owner only, and a partition
// that moved to b was read by b from a's committed offset on.
func checkPhases(oa, ob []int32, ra, rb map[int32][]int64) {
	var phase1, phase2 []int64
	for o := int64(0); o < recordsPerPhase; o++ {
		phase1 = append(phase1, o)
		phase2 = append(phase2, o+recordsPerPhase)
	}
	for p := int32(0); p < groupPartitions; p++ {
		switch {
		case contains(ob, p):
			if fmt.Sprint(ra[p]) != fmt.Sprint(phase1) || fmt.Sprint(rb[p]) != fmt.Sprint(phase2) {
				fail("partition %d (now b's): a read %v, b read %v; want a %v and b %v (b starts at a's commit)", p, ra[p], rb[p], phase1, phase2)
			}
		case contains(oa, p):
			if fmt.Sprint(ra[p]) != fmt.Sprint(append(append([]int64{}, phase1...), phase2...)) || len(rb[p]) != 0 {
				fail("partition %d (a's): a read %v, b read %v; want a 0..19 and b nothing", p, ra[p], rb[p])
			}
		default:
			fail("partition %d is owned by nobody: a=%v b=%v", p, oa, ob)
		}
	}
	step("phase 2 read exactly once by the owners; commits at 20")
}

// saramaAdmin: ClusterAdmin's calls, with offsets through sarama's client and OffsetManager.
func saramaAdmin(bootstrap, prefix string) {
	topic, group := prefix, prefix+"-group"
	client, adm := saramaAdminClient(bootstrap)
	defer adm.Close()

	brokers, controller, err := adm.DescribeCluster()
	check(err, "sarama DescribeCluster")
	if len(brokers) != 1 {
		fail("DescribeCluster: %d brokers, want 1", len(brokers))
	}
	brokerID := brokers[0].ID()
	if controller < 0 {
		fail("DescribeCluster: controller %d", controller)
	}

	retention := "3600000"
	saramaCreateTopic(bootstrap, adm, topic, 2, map[string]*string{"retention.ms": &retention})
	err = adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false)
	if !errors.Is(err, sarama.ErrTopicAlreadyExists) {
		fail("CreateTopic of an existing topic: %v, want TOPIC_ALREADY_EXISTS", err)
	}
	topics, err := adm.ListTopics()
	check(err, "sarama ListTopics")
	if d, ok := topics[topic]; !ok || d.NumPartitions != 2 {
		fail("ListTopics: %s is %+v", topic, d)
	}
	md, err := adm.DescribeTopics([]string{topic})
	check(err, "sarama DescribeTopics")
	if len(md) != 1 || md[0].Err != sarama.ErrNoError || len(md[0].Partitions) != 2 {
		fail("DescribeTopics %s: %+v", topic, md)
	}
	step("cluster, create (and TOPIC_ALREADY_EXISTS), list and describe topics as expected")

	configValue := func(key string) (string, sarama.ConfigSource) {
		entries, err := adm.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic})
		check(err, "sarama DescribeConfig")
		for _, e := range entries {
			if e.Name == key {
				return e.Value, e.Source
			}
		}
		fail("DescribeConfig %s has no %s among %d entries", topic, key, len(entries))
		return "", 0
	}
	if v, src := configValue("retention.ms"); v != "3600000" || src != sarama.SourceTopic {
		fail("retention.ms = %s (source %v), want 3600000 from the topic", v, src)
	}
	v2 := "7200000"
	check(adm.IncrementalAlterConfig(sarama.TopicResource, topic, map[string]sarama.IncrementalAlterConfigsEntry{
		"retention.ms": {Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &v2},
	}, false), "sarama IncrementalAlterConfig")
	if v, _ := configValue("retention.ms"); v != v2 {
		fail("retention.ms after IncrementalAlterConfig = %s, want %s", v, v2)
	}
	v3 := "10800000"
	check(adm.AlterConfig(sarama.TopicResource, topic, map[string]*string{"retention.ms": &v3}, false), "sarama AlterConfig")
	if v, _ := configValue("retention.ms"); v != v3 {
		fail("retention.ms after AlterConfig = %s, want %s", v, v3)
	}
	bad := "soon"
	err = adm.AlterConfig(sarama.TopicResource, topic, map[string]*string{"retention.ms": &bad}, false)
	if !errors.Is(err, sarama.ErrInvalidConfig) {
		fail("AlterConfig retention.ms=soon: %v, want INVALID_CONFIG", err)
	}
	step("describe, incremental and legacy alter configs as expected")

	check(adm.CreatePartitions(topic, 3, nil, false), "sarama CreatePartitions")
	waitFor(20*time.Second, "metadata shows 3 partitions", func() (bool, string) {
		if err := client.RefreshMetadata(topic); err != nil {
			return false, err.Error()
		}
		ps, err := client.Partitions(topic)
		return err == nil && len(ps) == 3, fmt.Sprint(ps, err)
	})

	cfg := saramaConfig()
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	producer, err := sarama.NewSyncProducer(seeds(bootstrap), cfg)
	check(err, "sarama NewSyncProducer")
	var msgs []*sarama.ProducerMessage
	for i := 0; i < 10; i++ {
		msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Partition: 0, Value: sarama.StringEncoder(fmt.Sprint(i)), Timestamp: time.UnixMilli(baseTimestampMs + int64(i)*1000)})
	}
	check(producer.SendMessages(msgs), "sarama produce")
	check(producer.Close(), "sarama producer close")
	offsetAt := func(what string, at int64, want int64) {
		got, err := client.GetOffset(topic, 0, at)
		check(err, "sarama GetOffset "+what)
		if got != want {
			fail("GetOffset %s = %d, want %d", what, got, want)
		}
	}
	offsetAt("oldest", sarama.OffsetOldest, 0)
	offsetAt("newest", sarama.OffsetNewest, 10)
	offsetAt("by time", baseTimestampMs+4500, 5)
	check(adm.DeleteRecords(topic, map[int32]int64{0: 4}), "sarama DeleteRecords")
	offsetAt("oldest after DeleteRecords", sarama.OffsetOldest, 4)
	step("offsets (oldest, newest, by time) and delete records as expected")

	om, err := sarama.NewOffsetManagerFromClient(group, client)
	check(err, "sarama NewOffsetManager")
	pom, err := om.ManagePartition(topic, 0)
	check(err, "sarama ManagePartition")
	pom.MarkOffset(7, "from sarama")
	om.Commit()
	pom1, err := om.ManagePartition(topic, 1)
	check(err, "sarama ManagePartition")
	pom1.MarkOffset(0, "")
	om.Commit()
	for _, p := range []sarama.PartitionOffsetManager{pom, pom1} {
		select {
		case e := <-p.Errors():
			fail("sarama offset commit: %v", e)
		default:
		}
		check(p.Close(), "sarama partition offset manager close")
	}
	check(om.Close(), "sarama offset manager close")
	fetched, err := adm.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0, 1}})
	check(err, "sarama ListConsumerGroupOffsets")
	if b := fetched.GetBlock(topic, 0); b == nil || b.Offset != 7 || b.Metadata != "from sarama" {
		fail("committed offset of %s/0: %+v, want 7 with metadata", topic, b)
	}
	groups, err := adm.ListConsumerGroups()
	check(err, "sarama ListConsumerGroups")
	if _, ok := groups[group]; !ok {
		fail("ListConsumerGroups does not list %s: %v", group, groups)
	}
	described, err := adm.DescribeConsumerGroups([]string{group})
	check(err, "sarama DescribeConsumerGroups")
	if len(described) != 1 || described[0].State != "Empty" {
		fail("DescribeConsumerGroups %s: %+v, want Empty", group, described)
	}
	check(adm.DeleteConsumerGroupOffset(group, topic, 1), "sarama DeleteConsumerGroupOffset")
	fetched, err = adm.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0, 1}})
	check(err, "sarama ListConsumerGroupOffsets")
	if b := fetched.GetBlock(topic, 1); b != nil && b.Offset >= 0 {
		fail("offset of %s/1 still committed after OffsetDelete: %+v", topic, b)
	}
	if b := fetched.GetBlock(topic, 0); b == nil || b.Offset != 7 {
		fail("OffsetDelete of partition 1 touched partition 0: %+v", b)
	}
	step("offset commit/fetch/delete, list and describe groups as expected")

	dirs, err := adm.DescribeLogDirs([]int32{brokerID})
	check(err, "sarama DescribeLogDirs")
	found := false
	for _, d := range dirs[brokerID] {
		if d.ErrorCode != sarama.ErrNoError {
			fail("DescribeLogDirs %s: %v", d.Path, d.ErrorCode)
		}
		for _, t := range d.Topics {
			for _, p := range t.Partitions {
				if t.Topic == topic && p.PartitionID == 0 && p.Size > 0 {
					found = true
				}
			}
		}
	}
	if !found {
		fail("DescribeLogDirs has no non-empty %s/0: %+v", topic, dirs)
	}
	check(adm.DeleteConsumerGroup(group), "sarama DeleteConsumerGroup")
	check(adm.DeleteTopic(topic), "sarama DeleteTopic")
	waitFor(20*time.Second, "ListTopics no longer lists the deleted topic", func() (bool, string) {
		topics, err := adm.ListTopics()
		if err != nil {
			return false, err.Error()
		}
		_, ok := topics[topic]
		return !ok, "still listed"
	})
	step("log dirs, delete group and delete topic as expected")
}

// saramaCluster: the produce-consume and group scenarios against a 3-node cluster with
// replication factor 3 (the idempotent producer talks to three leaders).
func saramaCluster(bootstrap, prefix string) {
	replicationFactor = 3
	saramaProduceConsume(bootstrap, prefix+"-pc")
	saramaGroup(bootstrap, prefix+"-group")
}
