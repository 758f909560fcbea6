package main

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	groupPartitions = 4
	// recordsPerPhase records go to each partition before the second member joins and again
	// after the group has rebalanced.
	recordsPerPhase = 10
	scenarioTimeout = 90 * time.Second
)

func franzCodec(name string) (kgo.CompressionCodec, uint8) {
	switch name {
	case "none":
		return kgo.NoCompression(), 0
	case "gzip":
		return kgo.GzipCompression(), 1
	case "snappy":
		return kgo.SnappyCompression(), 2
	case "lz4":
		return kgo.Lz4Compression(), 3
	case "zstd":
		return kgo.ZstdCompression(), 4
	}
	fail("unknown codec %s", name)
	panic("unreachable")
}

func franzClient(bootstrap string, opts ...kgo.Opt) *kgo.Client {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds(bootstrap)...)}, opts...)...)
	check(err, "franz-go: new client")
	return cl
}

// replicationFactor is 1 for the one-node scenarios; the cluster scenario sets 3.
var replicationFactor int16 = 1

// franzCreateTopic creates a topic and, on a cluster, waits until every replica is in sync, so
// that acks=all does not race the followers' start.
func franzCreateTopic(ctx context.Context, adm *kadm.Client, topic string, partitions int32) {
	resp, err := adm.CreateTopic(ctx, partitions, replicationFactor, nil, topic)
	check(err, "kadm CreateTopic "+topic)
	check(resp.Err, "kadm CreateTopic "+topic)
	if resp.NumPartitions != partitions {
		fail("CreateTopic %s answered %d partitions, asked %d", topic, resp.NumPartitions, partitions)
	}
	waitReplicated(topic, partitions)
}

// waitReplicated waits until every node's metadata shows topic with its partitions, each with
// a leader and replicationFactor in-sync replicas. Nodes learn of a new topic one after another
// (as Kafka's brokers do), and clients without retries, such as kafka-go's Client.Produce,
// fail on a node that has not yet; acks=all must not race the followers' start either.
func waitReplicated(topic string, partitions int32) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := franzClient(bootstrapList)
	defer cl.Close()
	brokers, err := kadm.NewClient(cl).ListBrokers(ctx)
	check(err, "kadm ListBrokers")
	for _, b := range brokers {
		what := fmt.Sprintf("node %d's metadata shows %s with %d partitions, each with a leader and %d in-sync replicas", b.NodeID, topic, partitions, replicationFactor)
		waitFor(30*time.Second, what, func() (bool, string) {
			req := kmsg.NewPtrMetadataRequest()
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(topic)
			req.Topics = append(req.Topics, rt)
			resp, err := req.RequestWith(ctx, cl.Broker(int(b.NodeID)))
			if err != nil {
				return false, err.Error()
			}
			if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 || len(resp.Topics[0].Partitions) != int(partitions) {
				return false, fmt.Sprintf("%+v", resp.Topics)
			}
			for _, p := range resp.Topics[0].Partitions {
				if p.ErrorCode != 0 || p.Leader < 0 || len(p.Replicas) != int(replicationFactor) || len(p.ISR) != int(replicationFactor) {
					return false, fmt.Sprintf("partition %d: %+v", p.Partition, p)
				}
			}
			return true, ""
		})
	}
}

// franzCluster runs the produce-consume and both group scenarios against a cluster with
// replicated topics: the client talks to every node, the group coordinator sits on one of them.
func franzCluster(bootstrap, prefix string) {
	cl := franzClient(bootstrap)
	brokers, err := kadm.NewClient(cl).ListBrokers(context.Background())
	check(err, "kadm ListBrokers")
	cl.Close()
	if len(brokers) != 3 {
		fail("ListBrokers: %d brokers, want 3: %+v", len(brokers), brokers)
	}
	replicationFactor = 3
	franzProduceConsume(bootstrap, prefix+"-pc")
	franzGroup(bootstrap, prefix+"-classic", false)
	franzGroup(bootstrap, prefix+"-848", true)
}

func toFranz(topic string, r rec) *kgo.Record {
	hs := make([]kgo.RecordHeader, len(r.Headers))
	for i, h := range r.Headers {
		hs[i] = kgo.RecordHeader{Key: h.Key, Value: h.Value}
	}
	return &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Headers: hs, Timestamp: time.UnixMilli(r.TimestampMs)}
}

func fromFranz(r *kgo.Record) rec {
	hs := make([]header, len(r.Headers))
	for i, h := range r.Headers {
		v := h.Value
		if v == nil {
			v = []byte{}
		}
		hs[i] = header{Key: h.Key, Value: v}
	}
	return rec{Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value, Headers: hs, TimestampMs: r.Timestamp.UnixMilli()}
}

// franzProduceConsume: the default (idempotent, acks=all) producer sends keyed records with
// headers and timestamps once per codec; a direct consumer reads the topic back and every
// record must match at its acknowledged offset, inside a batch of the codec it was sent with.
func franzProduceConsume(bootstrap, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
	defer cancel()
	topic := prefix
	admCl := franzClient(bootstrap)
	defer admCl.Close()
	franzCreateTopic(ctx, kadm.NewClient(admCl), topic, 3)

	want := map[po]rec{}
	wantCodec := map[po]uint8{}
	for ci, codec := range codecs {
		c, attr := franzCodec(codec)
		cl := franzClient(bootstrap, kgo.ProducerBatchCompression(c), kgo.ProducerLinger(20*time.Millisecond))
		sent := map[*kgo.Record]rec{}
		var krs []*kgo.Record
		for _, r := range recordsFor(ci, codec) {
			kr := toFranz(topic, r)
			sent[kr] = r
			krs = append(krs, kr)
		}
		results := cl.ProduceSync(ctx, krs...)
		check(results.FirstErr(), "franz-go produce with "+codec)
		for _, res := range results {
			r := sent[res.Record]
			r.Partition, r.Offset = res.Record.Partition, res.Record.Offset
			want[po{r.Partition, r.Offset}] = r
			wantCodec[po{r.Partition, r.Offset}] = attr
		}
		cl.Close()
		step("produced %d records with %s", len(krs), codec)
	}
	if len(want) != len(codecs)*recordsPerCodec {
		fail("%d distinct acknowledged positions for %d records", len(want), len(codecs)*recordsPerCodec)
	}
	checkContiguous(want)

	cl := franzClient(bootstrap, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer cl.Close()
	var got []rec
	for len(got) < len(want) {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			fail("read %d of %d records before the deadline", len(got), len(want))
		}
		fetches.EachError(func(t string, p int32, err error) { fail("fetch %s/%d: %v", t, p, err) })
		fetches.EachRecord(func(r *kgo.Record) {
			g := fromFranz(r)
			if codec := r.Attrs.CompressionType(); codec != wantCodec[po{g.Partition, g.Offset}] {
				fail("record p%d@%d came back in a batch with compression %d, sent with %d", g.Partition, g.Offset, codec, wantCodec[po{g.Partition, g.Offset}])
			}
			got = append(got, g)
		})
	}
	compareRecords(want, got)
	step("read back %d records, all equal", len(got))
}

// franzMember is one consumer of a group, polling in its own goroutine and committing what
// it has read before it lets a rebalance go on (BlockRebalanceOnPoll).
type franzMember struct {
	name string
	cl   *kgo.Client
	*memberLog
	done chan struct{}
}

func startFranzMember(bootstrap, name, group, topic string, kip848 bool) *franzMember {
	m := &franzMember{name: name, memberLog: newMemberLog(), done: make(chan struct{})}
	track := func(add bool) func(context.Context, *kgo.Client, map[string][]int32) {
		return func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			if add {
				m.own.add(ps[topic])
			} else {
				m.own.remove(ps[topic])
			}
			step("%s: %s %v, now owns %v", name, map[bool]string{true: "assigned", false: "revoked"}[add], ps[topic], m.own.list())
		}
	}
	opts := []kgo.Opt{
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.HeartbeatInterval(300 * time.Millisecond),
		kgo.FetchMaxWait(300 * time.Millisecond),
		kgo.OnPartitionsAssigned(track(true)),
		kgo.OnPartitionsRevoked(track(false)),
		kgo.OnPartitionsLost(track(false)),
	}
	if kip848 {
		// KIP-848: the coordinator assigns; franz-go picks the new protocol only with a range
		// or sticky balancer and a broker serving ConsumerGroupHeartbeat v1.
		opts = append(opts, kgo.ServerSideBalancer(), kgo.Balancers(kgo.RangeBalancer()))
	}
	opts = append(opts, kgo.ClientID("rivulet-go-franz-"+name))
	m.cl = franzClient(bootstrap, opts...)
	go func() {
		defer close(m.done)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			fetches := m.cl.PollFetches(ctx)
			cancel()
			if fetches.IsClientClosed() {
				return
			}
			fetches.EachError(func(t string, p int32, err error) {
				if err != context.DeadlineExceeded {
					fail("%s: fetch %s/%d: %v", name, t, p, err)
				}
			})
			m.mu.Lock()
			fetches.EachRecord(func(r *kgo.Record) { m.read[r.Partition] = append(m.read[r.Partition], r.Offset) })
			m.mu.Unlock()
			if fetches.NumRecords() > 0 {
				cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := m.cl.CommitUncommittedOffsets(cctx)
				ccancel()
				check(err, name+": commit")
			}
			m.cl.AllowRebalance()
		}
	}()
	return m
}

func (m *franzMember) close() {
	m.cl.Close()
	<-m.done
}

// produceToEachPartition sends recordsPerPhase keyed records to every partition.
func franzProducePhase(ctx context.Context, bootstrap, topic string, phase int) {
	cl := franzClient(bootstrap, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	defer cl.Close()
	var krs []*kgo.Record
	for p := int32(0); p < groupPartitions; p++ {
		for i := 0; i < recordsPerPhase; i++ {
			krs = append(krs, &kgo.Record{Topic: topic, Partition: p, Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("phase%d-p%d-%d", phase, p, i))})
		}
	}
	check(cl.ProduceSync(ctx, krs...).FirstErr(), "franz-go produce phase")
}

// franzGroup: member a joins alone and reads (and commits) everything; member b joins, the
// group rebalances into two halves; new records are read exactly once, by the owner of their
// partition, starting at the committed offsets (nothing read again); the committed offsets
// reach the end; when b leaves, a owns everything again.
func franzGroup(bootstrap, prefix string, kip848 bool) {
	ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
	defer cancel()
	topic, group := prefix, prefix+"-group"
	admCl := franzClient(bootstrap)
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	franzCreateTopic(ctx, adm, topic, groupPartitions)
	franzProducePhase(ctx, bootstrap, topic, 1)

	committed := func() (map[int32]int64, string) {
		resps, err := adm.FetchOffsets(ctx, group)
		if err == nil {
			err = resps.Error()
		}
		if err != nil {
			return nil, err.Error()
		}
		out := map[int32]int64{}
		resps.Each(func(o kadm.OffsetResponse) {
			if o.Topic == topic {
				out[o.Partition] = o.At
			}
		})
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

	a := startFranzMember(bootstrap, "a", group, topic, kip848)
	waitFor(30*time.Second, "member a owns all partitions", func() (bool, string) {
		return len(a.owned()) == groupPartitions, fmt.Sprint(a.owned())
	})
	waitFor(30*time.Second, "the group committed offset 10 on every partition", allAt(recordsPerPhase))
	step("a read and committed phase 1")

	if kip848 {
		described, err := adm.DescribeConsumerGroups(ctx, group)
		check(err, "kadm DescribeConsumerGroups")
		d, ok := described[group]
		if !ok || d.Err != nil {
			fail("DescribeConsumerGroups %s: %+v", group, d)
		}
		if len(d.Members) != 1 {
			fail("ConsumerGroupDescribe shows %d members, want 1 (is the group on the classic protocol?)", len(d.Members))
		}
	}

	b := startFranzMember(bootstrap, "b", group, topic, kip848)
	waitFor(45*time.Second, "a and b own two partitions each", func() (bool, string) {
		oa, ob := a.owned(), b.owned()
		return splitEvenly(oa, ob, groupPartitions), fmt.Sprintf("a=%v b=%v", oa, ob)
	})
	franzProducePhase(ctx, bootstrap, topic, 2)
	waitFor(30*time.Second, "the group committed offset 20 on every partition", allAt(2*recordsPerPhase))

	oa, ob := a.owned(), b.owned()
	ra, rb := a.readOffsets(), b.readOffsets()
	for p := int32(0); p < groupPartitions; p++ {
		// a read phase 1 of every partition; phase 2 went to the owner only, from offset 10.
		var want []int64
		for o := int64(0); o < recordsPerPhase; o++ {
			want = append(want, o)
		}
		var phase2 []int64
		for o := int64(recordsPerPhase); o < 2*recordsPerPhase; o++ {
			phase2 = append(phase2, o)
		}
		owner, other := "a", "b"
		gotA, gotB := ra[p], rb[p]
		if contains(ob, p) {
			owner, other = "b", "a"
			if fmt.Sprint(gotA) != fmt.Sprint(want) || fmt.Sprint(gotB) != fmt.Sprint(phase2) {
				fail("partition %d (owned by %s): a read %v, b read %v; want a %v, b %v (b must start at a's commit)", p, owner, gotA, gotB, want, phase2)
			}
		} else if contains(oa, p) {
			if fmt.Sprint(gotA) != fmt.Sprint(append(want, phase2...)) || len(gotB) != 0 {
				fail("partition %d (owned by %s, not %s): a read %v, b read %v", p, owner, other, gotA, gotB)
			}
		} else {
			fail("partition %d is owned by nobody: a=%v b=%v", p, oa, ob)
		}
	}
	step("phase 2 read exactly once by the owners; commits at 20")

	franzCheckDescribe(ctx, adm, group, topic, kip848, map[string][]int32{"rivulet-go-franz-a": oa, "rivulet-go-franz-b": ob})

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

func contains(ps []int32, p int32) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

// franzCheckDescribe checks that the coordinator's description of the group (DescribeGroups
// for the classic protocol, ConsumerGroupDescribe for KIP-848) agrees with what the members'
// clients say they own.
func franzCheckDescribe(ctx context.Context, adm *kadm.Client, group, topic string, kip848 bool, owners map[string][]int32) {
	described := map[string][]int32{}
	if kip848 {
		groups, err := adm.DescribeConsumerGroups(ctx, group)
		check(err, "kadm DescribeConsumerGroups")
		d := groups[group]
		check(d.Err, "ConsumerGroupDescribe "+group)
		if d.State != "Stable" || d.AssignorName != "range" || d.AssignmentEpoch != d.Epoch {
			fail("ConsumerGroupDescribe %s: state %q assignor %q epoch %d assignment epoch %d; want Stable, range, equal epochs", group, d.State, d.AssignorName, d.Epoch, d.AssignmentEpoch)
		}
		for _, m := range d.Members {
			if m.MemberEpoch != d.Epoch {
				fail("ConsumerGroupDescribe %s: member %s at epoch %d, group at %d", group, m.ClientID, m.MemberEpoch, d.Epoch)
			}
			if fmt.Sprint(m.SubscribedTopics) != fmt.Sprint([]string{topic}) {
				fail("ConsumerGroupDescribe %s: member %s subscribed to %v, want [%s]; group: %+v", group, m.ClientID, m.SubscribedTopics, topic, d)
			}
			if fmt.Sprint(m.Assignment.Sorted()) != fmt.Sprint(m.TargetAssignment.Sorted()) {
				fail("ConsumerGroupDescribe %s: stable group, but member %s has assignment %v and target %v", group, m.ClientID, m.Assignment.Sorted(), m.TargetAssignment.Sorted())
			}
			var ps []int32
			for _, tp := range m.Assignment.Sorted() {
				if tp.Topic == topic {
					ps = tp.Partitions
				}
			}
			described[m.ClientID] = ps
		}
		listed, err := adm.ListGroupsByType(ctx, []string{"consumer"})
		check(err, "kadm ListGroups by type consumer")
		if _, ok := listed[group]; !ok {
			fail("ListGroups(type consumer) does not list %s: %v", group, listed.Groups())
		}
	} else {
		groups, err := adm.DescribeGroups(ctx, group)
		check(err, "kadm DescribeGroups")
		d := groups[group]
		check(d.Err, "DescribeGroups "+group)
		if d.State != "Stable" || d.ProtocolType != "consumer" || d.Protocol != "cooperative-sticky" {
			fail("DescribeGroups %s: state %q protocol %q/%q; want Stable consumer/cooperative-sticky", group, d.State, d.ProtocolType, d.Protocol)
		}
		for _, m := range d.Members {
			c, ok := m.Assigned.AsConsumer()
			if !ok {
				fail("DescribeGroups %s: member %s's assignment does not decode as a consumer assignment", group, m.ClientID)
			}
			var ps []int32
			for _, t := range c.Topics {
				if t.Topic == topic {
					ps = append(ps, t.Partitions...)
				}
			}
			sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
			described[m.ClientID] = ps
		}
	}
	if fmt.Sprint(described) != fmt.Sprint(owners) {
		fail("the coordinator describes owners %v, the clients report %v", described, owners)
	}
	step("the coordinator's description matches the members: %v", described)
}

// waitForController waits until every seed's Metadata names a controller. A node answers
// requests a few milliseconds before its controller is elected (Metadata's controller id is -1
// meanwhile); franz-go and sarama retry through that, but kafka-go's Client sends CreateTopics
// to the named controller and fails at once with BROKER_NOT_AVAILABLE.
func waitForController(bootstrap string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, seed := range seeds(bootstrap) {
		cl := franzClient(seed)
		waitFor(30*time.Second, seed+" names a controller in Metadata", func() (bool, string) {
			resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
			if err != nil {
				return false, err.Error()
			}
			return resp.ControllerID >= 0, fmt.Sprintf("controller %d, %d brokers", resp.ControllerID, len(resp.Brokers))
		})
		cl.Close()
	}
}
