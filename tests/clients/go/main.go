// Command rivulet-go-clients drives a Rivulet node with the Go Kafka clients people run today
// (franz-go with kadm, IBM/sarama, segmentio/kafka-go) and checks what each client observes.
//
//	rivulet-go-clients <client> <scenario> <bootstrap host:port> <name prefix>
//
// client:   franz | sarama | kafkago
// scenario: produce-consume | group | group-848 (franz only) | admin | cluster (the
// produce-consume and group scenarios against a 3-node cluster with replication factor 3;
// bootstrap lists the nodes comma-separated)
//
// Every scenario creates its own topics and groups named after the prefix, so runs never share
// state. Progress goes to stderr; the first difference between what was sent (or expected) and
// what the client saw ends the program with exit status 1 and a line starting with "FAIL:".
// Exit status 0 means every check of the scenario held. The Rust test tests/go_clients.rs runs
// one scenario per #[test]. GO_CLIENTS_TRACE=1 prints what every poll of a wait saw.
package main

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// codecs are the compression codecs every client here can produce; each gets its own batches.
var codecs = []string{"none", "gzip", "snappy", "lz4", "zstd"}

// recordsPerCodec is small enough to keep a scenario at a few seconds, large enough that a
// batch holds several records (offset deltas, header arrays and timestamps inside a batch).
const recordsPerCodec = 25

// baseTimestampMs is an explicit create time in the past, so a broker that overwrote the
// client's timestamp with its own clock would be caught.
const baseTimestampMs = int64(1_700_000_000_000)

type header struct {
	Key   string
	Value []byte
}

// rec is one record as produced or as consumed, in client-neutral form.
type rec struct {
	Partition   int32
	Offset      int64
	Key         []byte
	Value       []byte
	Headers     []header
	TimestampMs int64
}

type po struct {
	Partition int32
	Offset    int64
}

func (r rec) String() string {
	hs := make([]string, 0, len(r.Headers))
	for _, h := range r.Headers {
		hs = append(hs, fmt.Sprintf("%s=%q", h.Key, h.Value))
	}
	return fmt.Sprintf("p%d@%d key=%q value=%.40q headers=[%s] ts=%d",
		r.Partition, r.Offset, r.Key, r.Value, strings.Join(hs, " "), r.TimestampMs)
}

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: rivulet-go-clients <franz|sarama|kafkago> <produce-consume|group|group-848|admin> <bootstrap> <name-prefix>")
		os.Exit(2)
	}
	client, scenario, bootstrap, prefix := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	scenarios := map[string]func(bootstrap, prefix string){
		"franz/produce-consume":   franzProduceConsume,
		"franz/group":             func(b, p string) { franzGroup(b, p, false) },
		"franz/group-848":         func(b, p string) { franzGroup(b, p, true) },
		"franz/admin":             franzAdmin,
		"franz/cluster":           franzCluster,
		"sarama/produce-consume":  saramaProduceConsume,
		"sarama/group":            saramaGroup,
		"sarama/admin":            saramaAdmin,
		"sarama/cluster":          saramaCluster,
		"kafkago/produce-consume": kafkagoProduceConsume,
		"kafkago/group":           kafkagoGroup,
		"kafkago/admin":           kafkagoAdmin,
		"kafkago/cluster":         kafkagoCluster,
	}
	run, ok := scenarios[client+"/"+scenario]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown client/scenario %s/%s\n", client, scenario)
		os.Exit(2)
	}
	bootstrapList = bootstrap
	start := time.Now()
	waitForController(bootstrap)
	run(bootstrap, prefix)
	fmt.Printf("OK %s %s in %.1fs\n", client, scenario, time.Since(start).Seconds())
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func step(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

func check(err error, what string) {
	if err != nil {
		fail("%s: %v", what, err)
	}
}

// waitFor polls cond until it holds or timeout passes; cond's string says what it last saw.
func waitFor(timeout time.Duration, what string, cond func() (bool, string)) {
	deadline := time.Now().Add(timeout)
	for {
		ok, seen := cond()
		if os.Getenv("GO_CLIENTS_TRACE") != "" {
			step("waiting until %s: %v %s", what, ok, seen)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			fail("timed out after %v waiting until %s; last seen: %s", timeout, what, seen)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// recordsFor builds the records one codec's producer sends: keys, two headers (one with an
// empty value), increasing explicit timestamps, and values repetitive enough to compress.
func recordsFor(codecIndex int, codec string) []rec {
	out := make([]rec, recordsPerCodec)
	for i := range out {
		out[i] = rec{
			Key:   []byte(fmt.Sprintf("key-%s-%d", codec, i%7)),
			Value: []byte(fmt.Sprintf("value-%s-%03d-%s", codec, i, strings.Repeat("rivulet ", 20))),
			Headers: []header{
				{Key: "codec", Value: []byte(codec)},
				{Key: "index", Value: []byte(fmt.Sprint(i))},
				{Key: "empty", Value: []byte{}},
			},
			TimestampMs: baseTimestampMs + int64(codecIndex)*100_000 + int64(i)*3,
		}
	}
	return out
}

// compareRecords checks that got holds exactly the records of want (keyed by partition and
// offset) with equal keys, values, headers and timestamps, and that every partition's
// offsets come back in increasing order.
func compareRecords(want map[po]rec, got []rec) {
	seen := map[po]bool{}
	last := map[int32]int64{}
	for _, g := range got {
		k := po{g.Partition, g.Offset}
		if seen[k] {
			fail("record at partition %d offset %d was read twice", g.Partition, g.Offset)
		}
		seen[k] = true
		if prev, ok := last[g.Partition]; ok && g.Offset <= prev {
			fail("partition %d: offset %d read after offset %d", g.Partition, g.Offset, prev)
		}
		last[g.Partition] = g.Offset
		w, ok := want[k]
		if !ok {
			fail("read a record nobody acknowledged at that position: %v", g)
		}
		if !recEqual(w, g) {
			fail("record differs at partition %d offset %d:\n  sent %v\n  read %v", g.Partition, g.Offset, w, g)
		}
	}
	var missing []string
	for k := range want {
		if !seen[k] {
			missing = append(missing, fmt.Sprintf("p%d@%d", k.Partition, k.Offset))
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		fail("%d acknowledged records were not read back: %v", len(missing), missing)
	}
}

func recEqual(a, b rec) bool {
	if a.Partition != b.Partition || a.Offset != b.Offset || !bytes.Equal(a.Key, b.Key) ||
		!bytes.Equal(a.Value, b.Value) || a.TimestampMs != b.TimestampMs || len(a.Headers) != len(b.Headers) {
		return false
	}
	for i := range a.Headers {
		if a.Headers[i].Key != b.Headers[i].Key || !bytes.Equal(a.Headers[i].Value, b.Headers[i].Value) {
			return false
		}
	}
	return true
}

// checkContiguous checks that the acknowledged offsets of each partition are 0..n-1 with no
// gap: every producer here writes to fresh topics and nothing else writes to them.
func checkContiguous(want map[po]rec) {
	per := map[int32][]int64{}
	for k := range want {
		per[k.Partition] = append(per[k.Partition], k.Offset)
	}
	for p, offs := range per {
		sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
		for i, o := range offs {
			if o != int64(i) {
				fail("partition %d: acknowledged offsets are not 0..%d without gaps: %v", p, len(offs)-1, offs)
			}
		}
	}
}

// memberLog is what a group member saw: the partitions it owns and the offsets it read, per
// partition. Members embed it; their client callbacks write it under mu.
type memberLog struct {
	mu   sync.Mutex
	own  assignment
	read map[int32][]int64
}

func newMemberLog() *memberLog {
	return &memberLog{own: assignment{owned: map[int32]bool{}}, read: map[int32][]int64{}}
}

func (l *memberLog) owned() []int32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.own.list()
}

func (l *memberLog) readOffsets() map[int32][]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[int32][]int64{}
	for p, offs := range l.read {
		out[p] = append([]int64{}, offs...)
	}
	return out
}

// assignment tracks which partitions a group member owns, as its client reports them.
type assignment struct {
	owned map[int32]bool
}

func (a *assignment) add(ps []int32) {
	for _, p := range ps {
		a.owned[p] = true
	}
}

func (a *assignment) remove(ps []int32) {
	for _, p := range ps {
		delete(a.owned, p)
	}
}

func (a *assignment) list() []int32 {
	out := make([]int32, 0, len(a.owned))
	for p := range a.owned {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// splitEvenly reports whether a and b own disjoint halves that together cover 0..n-1.
func splitEvenly(a, b []int32, n int) bool {
	if len(a) != n/2 || len(b) != n-n/2 {
		return false
	}
	all := map[int32]bool{}
	for _, p := range append(append([]int32{}, a...), b...) {
		all[p] = true
	}
	return len(all) == n
}

// bootstrapList is the command line's bootstrap, for helpers that open their own client.
var bootstrapList string

// seeds splits a comma-separated bootstrap list.
func seeds(bootstrap string) []string {
	return strings.Split(bootstrap, ",")
}
