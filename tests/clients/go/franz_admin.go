package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// franzAdmin walks kadm through the admin calls a Go operator tool makes, checking each
// answer: topics (create, duplicate, metadata, configs, partitions, delete), offsets (list by
// position and time, delete records), groups (commit, fetch, list, describe, delete offsets,
// delete) and log dirs.
func franzAdmin(bootstrap, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
	defer cancel()
	topic, group := prefix, prefix+"-group"
	cl := franzClient(bootstrap)
	defer cl.Close()
	adm := kadm.NewClient(cl)

	brokers, err := adm.ListBrokers(ctx)
	check(err, "kadm ListBrokers")
	if len(brokers) != 1 {
		fail("ListBrokers: %d brokers, want 1: %+v", len(brokers), brokers)
	}
	franzCoordinatorHandover(ctx, cl, prefix)

	resp, err := adm.CreateTopic(ctx, 2, 1, map[string]*string{"retention.ms": kadm.StringPtr("3600000")}, topic)
	check(err, "kadm CreateTopic")
	check(resp.Err, "kadm CreateTopic")
	// kadm returns the topic's error both ways; either must be TOPIC_ALREADY_EXISTS.
	resp, err = adm.CreateTopic(ctx, 2, 1, nil, topic)
	if !errors.Is(err, kerr.TopicAlreadyExists) || !errors.Is(resp.Err, kerr.TopicAlreadyExists) {
		fail("CreateTopic of an existing topic: %v / %v, want TOPIC_ALREADY_EXISTS", err, resp.Err)
	}
	step("created %s; creating it again gives TOPIC_ALREADY_EXISTS", topic)

	// Refusals a Go operator tool shows its user: each with Kafka's error code.
	refused := func(what string, want error, err error) {
		if !errors.Is(err, want) {
			fail("%s: %v, want %v", what, err, want)
		}
	}
	_, err = adm.CreateTopic(ctx, 1, 1, map[string]*string{"retention.ms": kadm.StringPtr("forever")}, prefix+"-badconfig")
	refused("CreateTopic with retention.ms=forever", kerr.InvalidConfig, err)
	_, err = adm.CreateTopic(ctx, 1, 1, nil, prefix+"/bad name")
	refused("CreateTopic named with a slash and a space", kerr.InvalidTopicException, err)
	_, err = adm.CreateTopic(ctx, 0, 1, nil, prefix+"-nopartitions")
	refused("CreateTopic with 0 partitions", kerr.InvalidPartitions, err)
	_, err = adm.CreateTopic(ctx, 1, 0, nil, prefix+"-noreplicas")
	refused("CreateTopic with replication factor 0", kerr.InvalidReplicationFactor, err)
	// -1 for both asks for the node's defaults.
	defaulted, err := adm.CreateTopic(ctx, -1, -1, nil, prefix+"-defaults")
	check(err, "kadm CreateTopic with default partitions and replication factor")
	if defaulted.NumPartitions < 1 || defaulted.ReplicationFactor != 1 {
		fail("CreateTopic -1/-1 answered %d partitions, replication factor %d", defaulted.NumPartitions, defaulted.ReplicationFactor)
	}
	validated, err := adm.ValidateCreateTopics(ctx, 4, 1, nil, prefix+"-validated")
	check(err, "kadm ValidateCreateTopics")
	check(validated.Error(), "ValidateCreateTopics")
	md, err := adm.Metadata(ctx, prefix+"-validated", prefix+"-badconfig")
	check(err, "kadm Metadata")
	for _, t := range []string{prefix + "-validated", prefix + "-badconfig"} {
		if td, ok := md.Topics[t]; ok && td.Err == nil {
			fail("%s exists after a validate-only or refused CreateTopics: %+v", t, td)
		}
	}
	step("bad config, bad name, 0 partitions, 0 replicas refused with Kafka's codes; validate-only creates nothing")

	md, err = adm.Metadata(ctx, topic)
	check(err, "kadm Metadata")
	td, ok := md.Topics[topic]
	if !ok || td.Err != nil || len(td.Partitions) != 2 {
		fail("Metadata %s: %+v", topic, td)
	}
	for p, pd := range td.Partitions {
		if pd.Leader != brokers[0].NodeID || pd.Err != nil {
			fail("Metadata %s/%d: leader %d (broker is %d), err %v", topic, p, pd.Leader, brokers[0].NodeID, pd.Err)
		}
	}

	configValue := func(key string) (string, string) {
		rcs, err := adm.DescribeTopicConfigs(ctx, topic)
		check(err, "kadm DescribeTopicConfigs")
		rc, err := rcs.On(topic, nil)
		check(err, "DescribeTopicConfigs "+topic)
		check(rc.Err, "DescribeTopicConfigs "+topic)
		for _, c := range rc.Configs {
			if c.Key == key {
				return c.MaybeValue(), c.Source.String()
			}
		}
		fail("DescribeConfigs %s has no %s among %d configs", topic, key, len(rc.Configs))
		return "", ""
	}
	if v, src := configValue("retention.ms"); v != "3600000" || src != "DYNAMIC_TOPIC_CONFIG" {
		fail("retention.ms = %s (source %s), want 3600000 from DYNAMIC_TOPIC_CONFIG", v, src)
	}
	alter, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("7200000")}}, topic)
	check(err, "kadm AlterTopicConfigs")
	for _, a := range alter {
		check(a.Err, "AlterTopicConfigs "+a.Name)
	}
	if v, _ := configValue("retention.ms"); v != "7200000" {
		fail("retention.ms after IncrementalAlterConfigs = %s, want 7200000", v)
	}
	bad, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("soon")}}, topic)
	check(err, "kadm AlterTopicConfigs (bad value)")
	if len(bad) != 1 || !errors.Is(bad[0].Err, kerr.InvalidConfig) {
		fail("AlterTopicConfigs retention.ms=soon: %+v, want INVALID_CONFIG", bad)
	}
	step("describe/alter configs: values, sources and INVALID_CONFIG as expected")

	shrink, err := adm.UpdatePartitions(ctx, 1, topic)
	if err == nil {
		err = shrink[topic].Err
	}
	refused("UpdatePartitions to fewer partitions", kerr.InvalidPartitions, err)
	bcs, err := adm.DescribeBrokerConfigs(ctx, brokers[0].NodeID)
	check(err, "kadm DescribeBrokerConfigs")
	if len(bcs) != 1 || bcs[0].Err != nil || len(bcs[0].Configs) == 0 {
		fail("DescribeBrokerConfigs %d: %+v", brokers[0].NodeID, bcs)
	}
	cps, err := adm.CreatePartitions(ctx, 1, topic)
	check(err, "kadm CreatePartitions")
	check(cps[topic].Err, "CreatePartitions "+topic)
	waitFor(20*time.Second, "metadata shows 3 partitions", func() (bool, string) {
		md, err := adm.Metadata(ctx, topic)
		if err != nil {
			return false, err.Error()
		}
		return len(md.Topics[topic].Partitions) == 3, fmt.Sprint(len(md.Topics[topic].Partitions))
	})

	// Ten records in partition 0 with timestamps 1000 ms apart, then offsets by position and time.
	pcl := franzClient(bootstrap, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var krs []*kgo.Record
	for i := 0; i < 10; i++ {
		krs = append(krs, &kgo.Record{Topic: topic, Partition: 0, Value: []byte(fmt.Sprint(i)), Timestamp: time.UnixMilli(baseTimestampMs + int64(i)*1000)})
	}
	check(pcl.ProduceSync(ctx, krs...).FirstErr(), "franz-go produce")
	pcl.Close()
	listed := func(what string) func(kadm.ListedOffsets, error) int64 {
		return func(lo kadm.ListedOffsets, err error) int64 {
			check(err, "kadm "+what)
			check(lo.Error(), what)
			o, ok := lo.Lookup(topic, 0)
			if !ok {
				fail("%s: no answer for %s/0", what, topic)
			}
			return o.Offset
		}
	}
	if got := listed("ListStartOffsets")(adm.ListStartOffsets(ctx, topic)); got != 0 {
		fail("start offset %d, want 0", got)
	}
	if got := listed("ListEndOffsets")(adm.ListEndOffsets(ctx, topic)); got != 10 {
		fail("end offset %d, want 10", got)
	}
	if got := listed("ListOffsetsAfterMilli")(adm.ListOffsetsAfterMilli(ctx, baseTimestampMs+4500, topic)); got != 5 {
		fail("offset for time base+4500ms = %d, want 5", got)
	}
	if got := listed("ListMaxTimestampOffsets")(adm.ListMaxTimestampOffsets(ctx, topic)); got != 9 {
		fail("max-timestamp offset %d, want 9", got)
	}

	var epochs kadm.OffsetForLeaderEpochRequest
	epochs.Add(topic, 0, 0)
	ends, err := adm.OffsetForLeaderEpoch(ctx, epochs)
	check(err, "kadm OffsetForLeaderEpoch")
	if e := ends[topic][0]; e.Err != nil || e.LeaderEpoch != 0 || e.EndOffset != 10 {
		fail("OffsetForLeaderEpoch %s/0 epoch 0: %+v, want epoch 0 ending at 10", topic, e)
	}

	var del kadm.Offsets
	del.Add(kadm.Offset{Topic: topic, Partition: 0, At: 4})
	drs, err := adm.DeleteRecords(ctx, del)
	check(err, "kadm DeleteRecords")
	dr, ok := drs.Lookup(topic, 0)
	if !ok {
		fail("DeleteRecords: no answer for %s/0", topic)
	}
	check(dr.Err, "DeleteRecords")
	if dr.LowWatermark != 4 {
		fail("DeleteRecords low watermark %d, want 4", dr.LowWatermark)
	}
	if got := listed("ListStartOffsets after DeleteRecords")(adm.ListStartOffsets(ctx, topic)); got != 4 {
		fail("start offset after DeleteRecords %d, want 4", got)
	}
	step("list offsets (start, end, by time, max timestamp) and delete records as expected")

	var commit kadm.Offsets
	commit.Add(kadm.Offset{Topic: topic, Partition: 0, At: 7, LeaderEpoch: -1, Metadata: "from kadm"})
	commit.Add(kadm.Offset{Topic: topic, Partition: 1, At: 0, LeaderEpoch: -1})
	check(adm.CommitAllOffsets(ctx, group, commit), "kadm CommitOffsets")
	fetched, err := adm.FetchOffsets(ctx, group)
	check(err, "kadm FetchOffsets")
	check(fetched.Error(), "FetchOffsets")
	o, ok := fetched.Lookup(topic, 0)
	if !ok || o.At != 7 || o.Metadata != "from kadm" {
		fail("FetchOffsets %s/0: %+v, want 7 with metadata", topic, o)
	}
	coords := adm.FindGroupCoordinators(ctx, group)
	if c, ok := coords[group]; !ok || c.Err != nil || c.NodeID != brokers[0].NodeID {
		fail("FindCoordinator %s: %+v", group, coords)
	}
	groups, err := adm.ListGroups(ctx)
	check(err, "kadm ListGroups")
	if _, ok := groups[group]; !ok {
		fail("ListGroups does not list %s: %v", group, groups.Groups())
	}
	dg, err := adm.DescribeGroups(ctx, group)
	check(err, "kadm DescribeGroups")
	check(dg[group].Err, "DescribeGroups")
	if dg[group].State != "Empty" {
		fail("DescribeGroups %s: state %q, want Empty", group, dg[group].State)
	}
	lag, err := adm.Lag(ctx, group)
	check(err, "kadm Lag")
	if l, ok := lag[group].Lag.Lookup(topic, 0); !ok || l.Lag != 3 {
		fail("Lag of %s on %s/0: %+v, want 3 (end 10, committed 7)", group, topic, l)
	}
	ds := make(kadm.TopicsSet)
	ds.Add(topic, 1)
	dels, err := adm.DeleteOffsets(ctx, group, ds)
	check(err, "kadm DeleteOffsets")
	check(dels.Error(), "DeleteOffsets")
	fetched, err = adm.FetchOffsets(ctx, group)
	check(err, "kadm FetchOffsets")
	if o, ok := fetched.Lookup(topic, 1); ok && o.At >= 0 {
		fail("offset of %s/1 still committed after OffsetDelete: %+v", topic, o)
	}
	if o, ok := fetched.Lookup(topic, 0); !ok || o.At != 7 {
		fail("OffsetDelete of partition 1 touched partition 0: %+v", o)
	}
	step("group offsets commit/fetch/lag/delete, list and describe groups as expected")

	dirs, err := adm.DescribeAllLogDirs(ctx, nil)
	check(err, "kadm DescribeAllLogDirs")
	found := false
	for _, bds := range dirs {
		check(bds.Error(), "DescribeLogDirs")
		if p, ok := bds.LookupPartition(topic, 0); ok && p.Size > 0 {
			found = true
		}
	}
	if !found {
		fail("DescribeLogDirs has no non-empty %s/0: %+v", topic, dirs)
	}

	dgr, err := adm.DeleteGroup(ctx, group)
	check(err, "kadm DeleteGroup")
	check(dgr.Err, "DeleteGroup")
	dt, err := adm.DeleteTopic(ctx, topic)
	check(err, "kadm DeleteTopic")
	check(dt.Err, "DeleteTopic")
	// A new client: franz-go answers metadata requests from its own cache for a few seconds.
	fresh := franzClient(bootstrap)
	defer fresh.Close()
	waitFor(20*time.Second, "metadata no longer lists the deleted topic", func() (bool, string) {
		md, err := kadm.NewClient(fresh).Metadata(ctx, topic)
		if err != nil {
			return false, err.Error()
		}
		t, ok := md.Topics[topic]
		return !ok || errors.Is(t.Err, kerr.UnknownTopicOrPartition), fmt.Sprintf("%+v", t)
	})
	step("log dirs, delete group and delete topic as expected")
}

// franzCoordinatorHandover runs first on a fresh node, whose first group lookup creates
// __consumer_offsets; its partitions then open one after another. Once FindCoordinator names a
// node for a group, that node must not answer NOT_COORDINATOR for it (kafka-go's Client
// passes that straight to the caller); COORDINATOR_LOAD_IN_PROGRESS while it loads is what
// Kafka answers. 32 groups cover most of the 16 offsets partitions; FindCoordinator is polled
// without a pause and each newly named group is asked at once.
func franzCoordinatorHandover(ctx context.Context, cl *kgo.Client, prefix string) {
	var waiting []string
	for i := 0; i < 32; i++ {
		waiting = append(waiting, fmt.Sprintf("%s-coordinator-%d", prefix, i))
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(waiting) > 0 {
		if time.Now().After(deadline) {
			fail("FindCoordinator named no coordinator within 30 s for %v", waiting)
		}
		fc := kmsg.NewPtrFindCoordinatorRequest()
		fc.CoordinatorKeys = waiting
		resp, err := fc.RequestWith(ctx, cl)
		check(err, "FindCoordinator")
		var still []string
		for _, c := range resp.Coordinators {
			switch c.ErrorCode {
			case kerr.CoordinatorNotAvailable.Code:
				still = append(still, c.Key)
				continue
			case 0:
			default:
				fail("FindCoordinator %s: %v, want a node or COORDINATOR_NOT_AVAILABLE", c.Key, kerr.ErrorForCode(c.ErrorCode))
			}
			of := kmsg.NewPtrOffsetFetchRequest()
			g := kmsg.NewOffsetFetchRequestGroup()
			g.Group = c.Key
			of.Groups = append(of.Groups, g)
			oresp, err := of.RequestWith(ctx, cl.Broker(int(c.NodeID)))
			check(err, "OffsetFetch")
			if len(oresp.Groups) != 1 {
				fail("OffsetFetch %s: %d groups in the answer", c.Key, len(oresp.Groups))
			}
			switch code := oresp.Groups[0].ErrorCode; code {
			case 0, kerr.CoordinatorLoadInProgress.Code:
			default:
				fail("node %d was just named coordinator of %s, then answered its OffsetFetch with %v", c.NodeID, c.Key, kerr.ErrorForCode(code))
			}
		}
		waiting = still
		time.Sleep(time.Millisecond)
	}
	step("FindCoordinator's answers hold while __consumer_offsets opens")
}
