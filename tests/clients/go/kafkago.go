package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

func kafkagoCodec(name string) kafka.Compression {
	switch name {
	case "none":
		return 0
	case "gzip":
		return kafka.Gzip
	case "snappy":
		return kafka.Snappy
	case "lz4":
		return kafka.Lz4
	case "zstd":
		return kafka.Zstd
	}
	fail("unknown codec %s", name)
	return 0
}

func kafkagoClient(bootstrap string) *kafka.Client {
	// Its own transport with a short metadata TTL: the shared default transport caches
	// metadata for 6 s, which would hide new partitions and deleted topics from the checks.
	return &kafka.Client{Addr: kafka.TCP(seeds(bootstrap)...), Timeout: 20 * time.Second, Transport: &kafka.Transport{MetadataTTL: 200 * time.Millisecond}}
}

func kafkagoCreateTopic(ctx context.Context, cl *kafka.Client, topic string, partitions int, configs ...kafka.ConfigEntry) error {
	resp, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: int(replicationFactor), ConfigEntries: configs,
	}}})
	if err != nil {
		return err
	}
	if err := resp.Errors[topic]; err != nil {
		return err
	}
	waitReplicated(topic, int32(partitions))
	// kafka-go routes by its own cached metadata and does not retry: wait until that shows
	// every leader too.
	waitFor(20*time.Second, "kafka-go's metadata shows a leader for every partition of "+topic, func() (bool, string) {
		md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err != nil {
			return false, err.Error()
		}
		if len(md.Topics) != 1 || len(md.Topics[0].Partitions) != partitions {
			return false, fmt.Sprintf("%+v", md.Topics)
		}
		for _, p := range md.Topics[0].Partitions {
			if p.Error != nil || p.Leader.ID < 0 || p.Leader.Host == "" {
				return false, fmt.Sprintf("partition %d: %+v", p.ID, p)
			}
		}
		return true, ""
	})
	return nil
}

// kafkagoProduceConsume: Client.Produce sends each codec's records as one batch (round robin
// over the partitions) and answers the base offset; a partition Reader per partition reads
// them back. A Writer sends one more keyed batch, read back the same way.
func kafkagoProduceConsume(bootstrap, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
	defer cancel()
	topic := prefix
	cl := kafkagoClient(bootstrap)
	check(kafkagoCreateTopic(ctx, cl, topic, 3), "kafka-go CreateTopics")

	want := map[po]rec{}
	for ci, codec := range codecs {
		partition := ci % 3
		records := recordsFor(ci, codec)
		krs := make([]kafka.Record, len(records))
		for i, r := range records {
			hs := make([]kafka.Header, len(r.Headers))
			for j, h := range r.Headers {
				hs[j] = kafka.Header{Key: h.Key, Value: h.Value}
			}
			krs[i] = kafka.Record{Time: time.UnixMilli(r.TimestampMs), Key: kafka.NewBytes(r.Key), Value: kafka.NewBytes(r.Value), Headers: hs}
		}
		resp, err := cl.Produce(ctx, &kafka.ProduceRequest{
			Topic: topic, Partition: partition, RequiredAcks: kafka.RequireAll,
			Records: kafka.NewRecordReader(krs...), Compression: kafkagoCodec(codec),
		})
		check(err, "kafka-go Produce with "+codec)
		check(resp.Error, "kafka-go Produce with "+codec)
		for i, r := range records {
			r.Partition, r.Offset = int32(partition), resp.BaseOffset+int64(i)
			want[po{r.Partition, r.Offset}] = r
		}
		step("produced %d records with %s to partition %d at %d", len(records), codec, partition, resp.BaseOffset)
	}
	checkContiguous(want)
	got := kafkagoReadAll(ctx, bootstrap, topic, want)
	compareRecords(want, got)
	step("read back %d records, all equal", len(got))

	// The Writer is what most kafka-go programs use; it reports no offsets, so its records are
	// matched by content after the ones above.
	w := &kafka.Writer{Addr: kafka.TCP(seeds(bootstrap)...), Topic: topic, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Hash{}, Compression: kafka.Zstd, BatchTimeout: 10 * time.Millisecond}
	var msgs []kafka.Message
	for i := 0; i < recordsPerCodec; i++ {
		msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprintf("w%d", i%5)), Value: []byte(fmt.Sprintf("writer-%d", i)), Headers: []kafka.Header{{Key: "via", Value: []byte("writer")}}, Time: time.UnixMilli(baseTimestampMs + int64(i))})
	}
	check(w.WriteMessages(ctx, msgs...), "kafka-go Writer")
	check(w.Close(), "kafka-go Writer close")
	end, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: {kafka.LastOffsetOf(0), kafka.LastOffsetOf(1), kafka.LastOffsetOf(2)}}})
	check(err, "kafka-go ListOffsets")
	total := int64(0)
	for _, p := range end.Topics[topic] {
		check(p.Error, "kafka-go ListOffsets")
		total += p.LastOffset
	}
	if total != int64(len(want)+len(msgs)) {
		fail("end offsets add up to %d, want %d", total, len(want)+len(msgs))
	}
	step("Writer's %d records acknowledged; end offsets add up", len(msgs))
	kafkagoConnReadme(bootstrap, prefix+"-conn")
}

// kafkagoConnReadme is the low-level Conn walk of kafka-go's README: find the controller,
// create a topic there, write to and read a batch from a partition leader, read its offsets,
// delete the topic. Conn picks request versions through ApiVersions.
func kafkagoConnReadme(bootstrap, topic string) {
	conn, err := kafka.Dial("tcp", seeds(bootstrap)[0])
	check(err, "kafka-go Dial")
	defer conn.Close()
	controller, err := conn.Controller()
	check(err, "kafka-go Conn.Controller")
	cconn, err := kafka.Dial("tcp", net.JoinHostPort(controller.Host, strconv.Itoa(controller.Port)))
	check(err, "kafka-go Dial controller")
	check(cconn.CreateTopics(kafka.TopicConfig{Topic: topic, NumPartitions: 2, ReplicationFactor: int(replicationFactor)}), "kafka-go Conn.CreateTopics")
	check(cconn.Close(), "kafka-go Conn close")
	// Conn does not retry: wait until every node knows the new topic's leader, as a program
	// would by retrying NOT_LEADER_OR_FOLLOWER.
	waitReplicated(topic, 2)

	var lconn *kafka.Conn
	waitFor(20*time.Second, "DialLeader finds the new topic's leader", func() (bool, string) {
		c, err := kafka.DialLeader(context.Background(), "tcp", seeds(bootstrap)[0], topic, 0)
		if err != nil {
			return false, err.Error()
		}
		lconn = c
		return true, ""
	})
	defer lconn.Close()
	check(lconn.SetDeadline(time.Now().Add(20*time.Second)), "kafka-go Conn.SetDeadline")
	values := []string{"one!", "two!", "three!"}
	var msgs []kafka.Message
	for _, v := range values {
		msgs = append(msgs, kafka.Message{Value: []byte(v)})
	}
	_, err = lconn.WriteMessages(msgs...)
	check(err, "kafka-go Conn.WriteMessages")
	batch := lconn.ReadBatch(1, 1<<20)
	var read []string
	for len(read) < len(values) {
		m, err := batch.ReadMessage()
		check(err, fmt.Sprintf("kafka-go Batch.ReadMessage after %v", read))
		if m.Offset != int64(len(read)) {
			fail("Conn batch: %q at offset %d, want offset %d", m.Value, m.Offset, len(read))
		}
		read = append(read, string(m.Value))
	}
	check(batch.Close(), "kafka-go Batch.Close")
	if fmt.Sprint(read) != fmt.Sprint(values) {
		fail("Conn batch read %v, wrote %v", read, values)
	}
	first, last, err := lconn.ReadOffsets()
	check(err, "kafka-go Conn.ReadOffsets")
	if first != 0 || last != int64(len(values)) {
		fail("Conn.ReadOffsets: %d..%d, want 0..%d", first, last, len(values))
	}
	check(conn.DeleteTopics(topic), "kafka-go Conn.DeleteTopics")
	step("the README's Conn walk: CreateTopics on the controller, WriteMessages, ReadBatch, ReadOffsets, DeleteTopics")
}

// kafkagoReadAll reads every partition of want from the start with a partition Reader until
// it has as many records as want holds for that partition.
func kafkagoReadAll(ctx context.Context, bootstrap, topic string, want map[po]rec) []rec {
	perPartition := map[int32]int{}
	for k := range want {
		perPartition[k.Partition]++
	}
	var got []rec
	for p, n := range perPartition {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: seeds(bootstrap), Topic: topic, Partition: int(p), MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 300 * time.Millisecond})
		check(r.SetOffset(kafka.FirstOffset), "kafka-go Reader SetOffset")
		for i := 0; i < n; i++ {
			m, err := r.ReadMessage(ctx)
			check(err, fmt.Sprintf("kafka-go ReadMessage partition %d after %d records", p, i))
			hs := make([]header, len(m.Headers))
			for j, h := range m.Headers {
				v := h.Value
				if v == nil {
					v = []byte{}
				}
				hs[j] = header{Key: h.Key, Value: v}
			}
			got = append(got, rec{Partition: int32(m.Partition), Offset: m.Offset, Key: m.Key, Value: m.Value, Headers: hs, TimestampMs: m.Time.UnixMilli()})
		}
		check(r.Close(), "kafka-go Reader close")
	}
	return got
}

// kafkagoMember is a Reader in a consumer group; kafka-go does not report assignments, so
// the group's owners come from DescribeGroups (by client id).
type kafkagoMember struct {
	name   string
	r      *kafka.Reader
	cancel context.CancelFunc
	done   chan struct{}
	*memberLog
}

func startKafkagoMember(bootstrap, name, group, topic string) *kafkagoMember {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: seeds(bootstrap), GroupID: group, Topic: topic,
		StartOffset:       kafka.FirstOffset,
		HeartbeatInterval: 300 * time.Millisecond,
		MaxWait:           300 * time.Millisecond,
		Dialer:            &kafka.Dialer{ClientID: "rivulet-go-kafkago-" + name, Timeout: 10 * time.Second},
	})
	ctx, cancel := context.WithCancel(context.Background())
	m := &kafkagoMember{name: name, r: r, cancel: cancel, done: make(chan struct{}), memberLog: newMemberLog()}
	go func() {
		defer close(m.done)
		for {
			msg, err := r.FetchMessage(ctx)
			if ctx.Err() != nil {
				return
			}
			check(err, name+": kafka-go FetchMessage")
			m.mu.Lock()
			m.read[int32(msg.Partition)] = append(m.read[int32(msg.Partition)], msg.Offset)
			m.mu.Unlock()
			if err := r.CommitMessages(ctx, msg); err != nil && ctx.Err() == nil {
				fail("%s: kafka-go CommitMessages: %v", name, err)
			}
		}
	}()
	return m
}

func (m *kafkagoMember) close() {
	m.cancel()
	<-m.done
	check(m.r.Close(), m.name+": kafka-go Reader close")
}

// kafkagoOwners describes the group: its state and each member's partitions by client id.
func kafkagoOwners(ctx context.Context, cl *kafka.Client, group, topic string) (string, map[string][]int32, string) {
	resp, err := cl.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return "", nil, err.Error()
	}
	if len(resp.Groups) != 1 || resp.Groups[0].Error != nil {
		return "", nil, fmt.Sprintf("%+v", resp.Groups)
	}
	g := resp.Groups[0]
	owners := map[string][]int32{}
	for _, mem := range g.Members {
		var ps []int32
		for _, t := range mem.MemberAssignments.Topics {
			if t.Topic == topic {
				for _, p := range t.Partitions {
					ps = append(ps, int32(p))
				}
			}
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		owners[mem.ClientID] = ps
	}
	return g.GroupState, owners, fmt.Sprintf("state %s owners %v", g.GroupState, owners)
}

func kafkagoProducePhase(ctx context.Context, cl *kafka.Client, topic string, phase int) {
	for p := 0; p < groupPartitions; p++ {
		var krs []kafka.Record
		for i := 0; i < recordsPerPhase; i++ {
			krs = append(krs, kafka.Record{Key: kafka.NewBytes([]byte(fmt.Sprintf("k%d", i))), Value: kafka.NewBytes([]byte(fmt.Sprintf("phase%d-p%d-%d", phase, p, i)))})
		}
		resp, err := cl.Produce(ctx, &kafka.ProduceRequest{Topic: topic, Partition: p, RequiredAcks: kafka.RequireAll, Records: kafka.NewRecordReader(krs...)})
		check(err, "kafka-go Produce")
		check(resp.Error, "kafka-go Produce")
	}
}

// kafkagoGroup: the group story of franzGroup with two kafka-go group Readers.
func kafkagoGroup(bootstrap, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
	defer cancel()
	topic, group := prefix, prefix+"-group"
	cl := kafkagoClient(bootstrap)
	check(kafkagoCreateTopic(ctx, cl, topic, groupPartitions), "kafka-go CreateTopics")
	kafkagoProducePhase(ctx, cl, topic, 1)

	allAt := func(want int64) func() (bool, string) {
		return func() (bool, string) {
			parts := []int{0, 1, 2, 3}
			resp, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
			if err != nil {
				return false, err.Error()
			}
			ok := len(resp.Topics[topic]) == groupPartitions
			for _, p := range resp.Topics[topic] {
				ok = ok && p.Error == nil && p.CommittedOffset == want
			}
			return ok, fmt.Sprintf("%+v", resp.Topics[topic])
		}
	}
	ownersAre := func(want func(a, b []int32) bool) func() (bool, string) {
		return func() (bool, string) {
			state, owners, seen := kafkagoOwners(ctx, cl, group, topic)
			return state == "Stable" && want(owners["rivulet-go-kafkago-a"], owners["rivulet-go-kafkago-b"]), seen
		}
	}

	a := startKafkagoMember(bootstrap, "a", group, topic)
	waitFor(30*time.Second, "member a owns all partitions", ownersAre(func(a, b []int32) bool { return len(a) == groupPartitions }))
	waitFor(30*time.Second, "the group committed offset 10 on every partition", allAt(recordsPerPhase))
	step("a read and committed phase 1")

	b := startKafkagoMember(bootstrap, "b", group, topic)
	waitFor(45*time.Second, "a and b own two partitions each", ownersAre(func(a, b []int32) bool { return splitEvenly(a, b, groupPartitions) }))
	kafkagoProducePhase(ctx, cl, topic, 2)
	waitFor(30*time.Second, "the group committed offset 20 on every partition", allAt(2*recordsPerPhase))
	_, owners, _ := kafkagoOwners(ctx, cl, group, topic)
	checkPhases(owners["rivulet-go-kafkago-a"], owners["rivulet-go-kafkago-b"], a.readOffsets(), b.readOffsets())

	b.close()
	waitFor(45*time.Second, "a owns all partitions again after b left", ownersAre(func(a, b []int32) bool { return len(a) == groupPartitions }))
	a.close()
	if ok, seen := allAt(2 * recordsPerPhase)(); !ok {
		fail("committed offsets after both members left: %s", seen)
	}
	step("b left, a took everything back; offsets kept after both left")
}

// kafkagoAdmin: the admin calls kafka.Client has (it has no DeleteRecords or DescribeLogDirs).
func kafkagoAdmin(bootstrap, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
	defer cancel()
	topic, group := prefix, prefix+"-group"
	cl := kafkagoClient(bootstrap)

	versions, err := cl.ApiVersions(ctx, &kafka.ApiVersionsRequest{})
	check(err, "kafka-go ApiVersions")
	check(versions.Error, "kafka-go ApiVersions")
	if len(versions.ApiKeys) == 0 {
		fail("ApiVersions lists no APIs")
	}

	check(kafkagoCreateTopic(ctx, cl, topic, 2, kafka.ConfigEntry{ConfigName: "retention.ms", ConfigValue: "3600000"}), "kafka-go CreateTopics")
	if err := kafkagoCreateTopic(ctx, cl, topic, 2); !errors.Is(err, kafka.TopicAlreadyExists) {
		fail("CreateTopics of an existing topic: %v, want TOPIC_ALREADY_EXISTS", err)
	}
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	check(err, "kafka-go Metadata")
	if len(md.Brokers) != 1 || len(md.Topics) != 1 || md.Topics[0].Error != nil || len(md.Topics[0].Partitions) != 2 {
		fail("Metadata: brokers %+v topics %+v", md.Brokers, md.Topics)
	}
	for _, p := range md.Topics[0].Partitions {
		if p.Leader.ID != md.Brokers[0].ID || p.Error != nil {
			fail("Metadata %s/%d: leader %+v, err %v", topic, p.ID, p.Leader, p.Error)
		}
	}
	step("ApiVersions, CreateTopics (and TOPIC_ALREADY_EXISTS), Metadata as expected")

	configValue := func(key string) string {
		resp, err := cl.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{key},
		}}})
		check(err, "kafka-go DescribeConfigs")
		if len(resp.Resources) != 1 {
			fail("DescribeConfigs: %d resources", len(resp.Resources))
		}
		check(resp.Resources[0].Error, "kafka-go DescribeConfigs")
		for _, e := range resp.Resources[0].ConfigEntries {
			if e.ConfigName == key {
				return e.ConfigValue
			}
		}
		fail("DescribeConfigs %s has no %s", topic, key)
		return ""
	}
	if v := configValue("retention.ms"); v != "3600000" {
		fail("retention.ms = %s, want 3600000", v)
	}
	ia, err := cl.IncrementalAlterConfigs(ctx, &kafka.IncrementalAlterConfigsRequest{Resources: []kafka.IncrementalAlterConfigsRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: topic,
		Configs: []kafka.IncrementalAlterConfigsRequestConfig{{Name: "retention.ms", Value: "7200000", ConfigOperation: kafka.ConfigOperationSet}},
	}}})
	check(err, "kafka-go IncrementalAlterConfigs")
	for _, r := range ia.Resources {
		check(r.Error, "kafka-go IncrementalAlterConfigs")
	}
	if v := configValue("retention.ms"); v != "7200000" {
		fail("retention.ms after IncrementalAlterConfigs = %s, want 7200000", v)
	}
	ac, err := cl.AlterConfigs(ctx, &kafka.AlterConfigsRequest{Resources: []kafka.AlterConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: topic,
		Configs: []kafka.AlterConfigRequestConfig{{Name: "retention.ms", Value: "10800000"}},
	}}})
	check(err, "kafka-go AlterConfigs")
	for _, e := range ac.Errors {
		check(e, "kafka-go AlterConfigs")
	}
	if v := configValue("retention.ms"); v != "10800000" {
		fail("retention.ms after AlterConfigs = %s, want 10800000", v)
	}
	step("describe, incremental and legacy alter configs as expected")

	cp, err := cl.CreatePartitions(ctx, &kafka.CreatePartitionsRequest{Topics: []kafka.TopicPartitionsConfig{{Name: topic, Count: 3}}})
	check(err, "kafka-go CreatePartitions")
	check(cp.Errors[topic], "kafka-go CreatePartitions")
	waitFor(20*time.Second, "metadata shows 3 partitions", func() (bool, string) {
		md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err != nil {
			return false, err.Error()
		}
		return len(md.Topics) == 1 && len(md.Topics[0].Partitions) == 3, fmt.Sprintf("%+v", md.Topics)
	})

	var krs []kafka.Record
	for i := 0; i < 10; i++ {
		krs = append(krs, kafka.Record{Time: time.UnixMilli(baseTimestampMs + int64(i)*1000), Value: kafka.NewBytes([]byte(fmt.Sprint(i)))})
	}
	pr, err := cl.Produce(ctx, &kafka.ProduceRequest{Topic: topic, Partition: 0, RequiredAcks: kafka.RequireAll, Records: kafka.NewRecordReader(krs...)})
	check(err, "kafka-go Produce")
	check(pr.Error, "kafka-go Produce")
	lo, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: {
		kafka.FirstOffsetOf(0), kafka.LastOffsetOf(0), kafka.TimeOffsetOf(0, time.UnixMilli(baseTimestampMs+4500)),
	}}})
	check(err, "kafka-go ListOffsets")
	if len(lo.Topics[topic]) != 1 {
		fail("ListOffsets: %+v", lo.Topics)
	}
	p0 := lo.Topics[topic][0]
	check(p0.Error, "kafka-go ListOffsets")
	if p0.FirstOffset != 0 || p0.LastOffset != 10 {
		fail("ListOffsets %s/0: first %d last %d, want 0 and 10", topic, p0.FirstOffset, p0.LastOffset)
	}
	if _, ok := p0.Offsets[5]; !ok {
		fail("ListOffsets by time base+4500ms: %v, want offset 5", p0.Offsets)
	}
	step("ListOffsets (first, last, by time) as expected")

	// The node is fresh: this first group call makes it create __consumer_offsets. kafka.Client
	// does not retry, so wait as a consumer would: FindCoordinator answers
	// COORDINATOR_NOT_AVAILABLE until the group's partition is open here, then a commit may
	// get COORDINATOR_LOAD_IN_PROGRESS while it loads. NOT_COORDINATOR from the node that was
	// just named coordinator is the defect this catches (it used to happen for ~80 ms).
	// Polled without a pause, so the commit follows the first positive answer at once.
	for deadline := time.Now().Add(20 * time.Second); ; {
		fc, err := cl.FindCoordinator(ctx, &kafka.FindCoordinatorRequest{Key: group, KeyType: kafka.CoordinatorKeyTypeConsumer})
		if err == nil {
			err = fc.Error
		}
		if err == nil {
			break
		}
		if !errors.Is(err, kafka.GroupCoordinatorNotAvailable) {
			fail("FindCoordinator %s: %v, want a coordinator or COORDINATOR_NOT_AVAILABLE", group, err)
		}
		if time.Now().After(deadline) {
			fail("FindCoordinator %s still answers %v after 20 s", group, err)
		}
		time.Sleep(time.Millisecond)
	}
	// OffsetCommit, not OffsetFetch: kafka-go's transport retries a top-level NOT_COORDINATOR
	// by itself, but hands per-partition codes to the caller.
	waitFor(20*time.Second, "the coordinator takes a commit for "+group, func() (bool, string) {
		resp, err := cl.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1, Topics: map[string][]kafka.OffsetCommit{topic: {{Partition: 0, Offset: 0}}}})
		if err == nil && len(resp.Topics[topic]) == 1 {
			err = resp.Topics[topic][0].Error
		}
		if err != nil {
			if !errors.Is(err, kafka.GroupLoadInProgress) {
				fail("OffsetCommit %s right after FindCoordinator named its coordinator: %v, want success or COORDINATOR_LOAD_IN_PROGRESS", group, err)
			}
			return false, err.Error()
		}
		return true, ""
	})
	oc, err := cl.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1, Topics: map[string][]kafka.OffsetCommit{topic: {
		{Partition: 0, Offset: 7, Metadata: "from kafka-go"}, {Partition: 1, Offset: 0},
	}}})
	check(err, "kafka-go OffsetCommit")
	for _, p := range oc.Topics[topic] {
		check(p.Error, fmt.Sprintf("kafka-go OffsetCommit %s/%d", topic, p.Partition))
	}
	fetch := func() map[int]kafka.OffsetFetchPartition {
		resp, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0, 1}}})
		check(err, "kafka-go OffsetFetch")
		check(resp.Error, "kafka-go OffsetFetch")
		out := map[int]kafka.OffsetFetchPartition{}
		for _, p := range resp.Topics[topic] {
			check(p.Error, "kafka-go OffsetFetch")
			out[p.Partition] = p
		}
		return out
	}
	if f := fetch(); f[0].CommittedOffset != 7 || f[0].Metadata != "from kafka-go" || f[1].CommittedOffset != 0 {
		fail("OffsetFetch: %+v, want 7 (with metadata) and 0", f)
	}
	lg, err := cl.ListGroups(ctx, &kafka.ListGroupsRequest{})
	check(err, "kafka-go ListGroups")
	check(lg.Error, "kafka-go ListGroups")
	listed := false
	for _, g := range lg.Groups {
		listed = listed || g.GroupID == group
	}
	if !listed {
		fail("ListGroups does not list %s: %+v", group, lg.Groups)
	}
	dg, err := cl.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	check(err, "kafka-go DescribeGroups")
	if len(dg.Groups) != 1 || dg.Groups[0].Error != nil || dg.Groups[0].GroupState != "Empty" {
		fail("DescribeGroups %s: %+v, want Empty", group, dg.Groups)
	}
	od, err := cl.OffsetDelete(ctx, &kafka.OffsetDeleteRequest{GroupID: group, Topics: map[string][]int{topic: {1}}})
	check(err, "kafka-go OffsetDelete")
	check(od.Error, "kafka-go OffsetDelete")
	for _, p := range od.Topics[topic] {
		check(p.Error, "kafka-go OffsetDelete")
	}
	if f := fetch(); f[0].CommittedOffset != 7 || f[1].CommittedOffset >= 0 {
		fail("OffsetFetch after OffsetDelete of partition 1: %+v", f)
	}
	step("offset commit/fetch/delete, list and describe groups as expected")

	dgs, err := cl.DeleteGroups(ctx, &kafka.DeleteGroupsRequest{GroupIDs: []string{group}})
	check(err, "kafka-go DeleteGroups")
	check(dgs.Errors[group], "kafka-go DeleteGroups")
	dt, err := cl.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	check(err, "kafka-go DeleteTopics")
	check(dt.Errors[topic], "kafka-go DeleteTopics")
	waitFor(20*time.Second, "metadata no longer lists the deleted topic", func() (bool, string) {
		md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err != nil {
			return false, err.Error()
		}
		return len(md.Topics) == 0 || errors.Is(md.Topics[0].Error, kafka.UnknownTopicOrPartition), fmt.Sprintf("%+v", md.Topics)
	})
	step("delete group and delete topic as expected")
}

// kafkagoCluster: the produce-consume and group scenarios against a 3-node cluster with
// replication factor 3.
func kafkagoCluster(bootstrap, prefix string) {
	replicationFactor = 3
	kafkagoProduceConsume(bootstrap, prefix+"-pc")
	kafkagoGroup(bootstrap, prefix+"-group")
}
