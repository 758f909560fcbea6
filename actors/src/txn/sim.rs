//! Randomized simulation of the transaction coordinator core with its surroundings: producers
//! (several incarnations per transactional id, zombies whose requests and writes are still in
//! flight, producers that stall mid-transaction), partitions that fence by producer epoch and
//! coordinator epoch and verify a producer's first write with the coordinator (KIP-890), a
//! state log whose unacknowledged tail may be lost, and coordinator crashes followed by a
//! failover that replays the log.
//!
//! Checked, for every seed:
//! - every data record ends under a commit or abort marker on its partition (no transaction
//!   stays open once time passes its timeout);
//! - all records of one client transaction share one fate (atomic, and never committed on one
//!   partition after an abort was decided elsewhere);
//! - a client told "committed" (or "aborted") sees exactly that fate;
//! - one live incarnation: every successful answer, and every accepted data write, belongs to
//!   the latest producer id and epoch handed out for its transactional id.
//!
//! A failure names its seed; `TXN_SIM_SEED=<seed> cargo test -p rivulet-actors --lib
//! txn::sim` runs that seed alone.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use super::core::*;

/// splitmix64: small, seedable, and stable across dependency upgrades (a seed must replay).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const PARTITIONS: i32 = 4;
const TXN_IDS: usize = 3;
const TIMEOUT_MS: i64 = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Commit,
    Abort,
}

#[derive(Debug, Clone)]
enum PEntry {
    Data {
        pid: i64,
        client: usize,
        txn_no: u32,
    },
    Marker {
        pid: i64,
        commit: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct PState {
    epoch: i16,
    ongoing: bool,
    coordinator_epoch: i32,
}

#[derive(Debug, Default)]
struct Partition {
    entries: Vec<PEntry>,
    producers: HashMap<i64, PState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    NeedInit,
    Ready,
    InTxn,
    Ending(bool),
    Dead,
}

#[derive(Debug)]
struct Client {
    txn_id: String,
    state: ClientState,
    producer: (i64, i16),
    txn_no: u32,
    /// Partitions whose AddPartitions was answered OK in this transaction.
    added: BTreeSet<TxnPartition>,
    /// Whether this transaction produced anything.
    wrote: bool,
    /// A write of this transaction was refused: it may only abort.
    failed: bool,
    /// A write of this transaction may still land after it ends: bump the epoch after the
    /// abort (KIP-360), as the Java client does after a produce timeout.
    bump_needed: bool,
    /// Stops acting (a killed or hung producer); its writes in flight still land.
    stalled: bool,
    /// Request sent, no answer yet.
    waiting: bool,
}

#[derive(Debug)]
enum Request {
    Init(Option<(i64, i16)>),
    Add(Vec<TxnPartition>),
    End(bool),
}

#[derive(Debug, Clone)]
struct MarkerMsg {
    coordinator_epoch: i32,
    txn_id: String,
    pid: i64,
    epoch: i16,
    commit: bool,
}

#[derive(Debug, Clone)]
struct ProduceMsg {
    client: usize,
    txn_no: u32,
    txn_id: String,
    pid: i64,
    epoch: i16,
}

struct Sim {
    rng: Rng,
    now_ms: i64,
    core: Option<TxnCoordinatorCore>,
    coordinator_epoch: i32,
    durable_log: Vec<(String, Option<TxnMetadata>)>,
    /// Writes of the running coordinator not yet reported, in log order.
    writes: VecDeque<(WriteId, String, Option<TxnMetadata>)>,
    /// Per partition, markers in flight (ordered, as on one link).
    markers: BTreeMap<TxnPartition, VecDeque<MarkerMsg>>,
    produces: Vec<(TxnPartition, ProduceMsg)>,
    requests: Vec<(usize, RequestId, Request)>,
    routes: HashMap<RequestId, (usize, Vec<TxnPartition>)>,
    next_req: RequestId,
    next_pid: i64,
    partitions: BTreeMap<TxnPartition, Partition>,
    clients: Vec<Client>,
    /// Latest (producer id, epoch) handed out per transactional id.
    grants: HashMap<String, (i64, i16)>,
    /// What clients were told about their transactions.
    told: HashMap<(usize, u32), Fate>,
    violations: Vec<String>,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let (core, out) = TxnCoordinatorCore::load(TxnConfig::default(), 1, []);
        assert!(out.is_empty());
        let partitions = (0..PARTITIONS)
            .map(|p| (TxnPartition::new("t", p), Partition::default()))
            .collect();
        let mut sim = Self {
            rng: Rng(seed),
            now_ms: 0,
            core: Some(core),
            coordinator_epoch: 1,
            durable_log: Vec::new(),
            writes: VecDeque::new(),
            markers: BTreeMap::new(),
            produces: Vec::new(),
            requests: Vec::new(),
            routes: HashMap::new(),
            next_req: 1,
            next_pid: 100,
            partitions,
            clients: Vec::new(),
            grants: HashMap::new(),
            told: HashMap::new(),
            violations: Vec::new(),
        };
        for i in 0..TXN_IDS {
            sim.new_client(format!("txn-{i}"));
        }
        sim
    }

    fn new_client(&mut self, txn_id: String) {
        self.clients.push(Client {
            txn_id,
            state: ClientState::NeedInit,
            producer: (-1, -1),
            txn_no: 0,
            added: BTreeSet::new(),
            wrote: false,
            failed: false,
            bump_needed: false,
            stalled: false,
            waiting: false,
        });
    }

    fn violation(&mut self, what: String) {
        self.violations.push(what);
    }

    /// Feeds the running coordinator and performs what it asks.
    fn feed(&mut self, input: Input) {
        let Some(core) = self.core.as_mut() else {
            return;
        };
        let out = core.handle(self.now_ms, input);
        self.perform(out);
    }

    fn perform(&mut self, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Reply(req_id, reply) => self.reply(req_id, reply),
                Output::AllocateProducerId { transactional_id } => {
                    self.next_pid += 1;
                    let pid = self.next_pid;
                    self.feed(Input::ProducerIdAllocated {
                        transactional_id,
                        producer_id: Ok(pid),
                    });
                }
                Output::Write {
                    write_id,
                    transactional_id,
                    record,
                } => self.writes.push_back((write_id, transactional_id, record)),
                Output::WriteMarkers {
                    transactional_id,
                    producer_id,
                    producer_epoch,
                    coordinator_epoch,
                    commit,
                    partitions,
                } => {
                    for p in partitions {
                        self.markers.entry(p).or_default().push_back(MarkerMsg {
                            coordinator_epoch,
                            txn_id: transactional_id.clone(),
                            pid: producer_id,
                            epoch: producer_epoch,
                            commit,
                        });
                    }
                }
            }
        }
    }

    fn check_live(&mut self, txn_id: &str, producer: (i64, i16), what: &str) {
        if self.grants.get(txn_id) != Some(&producer) {
            let latest = self.grants.get(txn_id).copied();
            self.violation(format!(
                "{what} for {txn_id} at {producer:?}, but the latest incarnation is {latest:?}"
            ));
        }
    }

    fn reply(&mut self, req_id: RequestId, reply: Reply) {
        if let Reply::Verify(_) = reply {
            return;
        }
        let Some((c, asked)) = self.routes.remove(&req_id) else {
            return;
        };
        self.clients[c].waiting = false;
        let txn_id = self.clients[c].txn_id.clone();
        let producer = self.clients[c].producer;
        use ClientState::*;
        match reply {
            Reply::InitProducerId(Ok(p)) => {
                self.grants.insert(txn_id, p);
                let cl = &mut self.clients[c];
                cl.producer = p;
                cl.bump_needed = false;
                cl.state = Ready;
            }
            Reply::InitProducerId(Err(_)) => {}
            Reply::AddPartitions(Ok(())) => {
                self.check_live(&txn_id, producer, "AddPartitions answered OK");
                self.clients[c].added.extend(asked);
            }
            Reply::AddPartitions(Err(e)) => self.client_error(c, e),
            Reply::EndTxn(Ok(())) => {
                self.check_live(&txn_id, producer, "EndTxn answered OK");
                let cl = &mut self.clients[c];
                if let Ending(commit) = cl.state {
                    let fate = if commit { Fate::Commit } else { Fate::Abort };
                    self.told.insert((c, cl.txn_no), fate);
                    cl.state = if cl.bump_needed { NeedInit } else { Ready };
                }
            }
            Reply::EndTxn(Err(e)) => self.client_error(c, e),
            Reply::Verify(_) => {}
        }
    }

    fn client_error(&mut self, c: usize, e: TxnError) {
        match e {
            TxnError::ConcurrentTransactions
            | TxnError::CoordinatorLoadInProgress
            | TxnError::NotCoordinator
            | TxnError::CoordinatorNotAvailable => {}
            TxnError::ProducerFenced
            | TxnError::InvalidProducerIdMapping
            | TxnError::InvalidTxnState
            | TxnError::InvalidTransactionTimeout => {
                self.clients[c].state = ClientState::Dead;
                // The application restarts with a new producer, usually.
                if self.clients.len() < 30 && self.rng.chance(70) {
                    let id = self.clients[c].txn_id.clone();
                    self.new_client(id);
                }
            }
        }
    }

    /// A client acts, unless it waits for an answer or has stopped.
    fn client_step(&mut self, c: usize) {
        let cl = &self.clients[c];
        if cl.waiting || cl.stalled || cl.state == ClientState::Dead {
            return;
        }
        let txn_id = cl.txn_id.clone();
        let producer = cl.producer;
        use ClientState::*;
        let request = match cl.state {
            NeedInit => Request::Init((cl.producer.0 >= 0).then_some(cl.producer)),
            Ready => {
                let cl = &mut self.clients[c];
                cl.txn_no += 1;
                cl.added.clear();
                cl.wrote = false;
                cl.failed = false;
                cl.state = InTxn;
                return;
            }
            InTxn => {
                let roll = self.rng.below(100);
                let in_flight = self.produces.iter().any(|(_, m)| m.client == c);
                if roll < 30 {
                    let n = 1 + self.rng.below(2);
                    let parts = (0..n)
                        .map(|_| TxnPartition::new("t", self.rng.below(PARTITIONS as usize) as i32))
                        .collect();
                    Request::Add(parts)
                } else if roll < 75 {
                    // Produce to a partition whose AddPartitions was answered OK.
                    let confirmed: Vec<TxnPartition> =
                        self.clients[c].added.iter().cloned().collect();
                    if confirmed.is_empty() {
                        return;
                    }
                    let p = confirmed[self.rng.below(confirmed.len())].clone();
                    let txn_no = self.clients[c].txn_no;
                    self.clients[c].wrote = true;
                    self.produces.push((
                        p,
                        ProduceMsg {
                            client: c,
                            txn_no,
                            txn_id,
                            pid: producer.0,
                            epoch: producer.1,
                        },
                    ));
                    return;
                } else if roll < 97 {
                    if in_flight {
                        if !self.rng.chance(10) {
                            return; // flush first, as clients do before EndTxn
                        }
                        // The produce timed out on the client, yet may still land: the
                        // transaction can only abort, and the epoch must be bumped after it
                        // (KIP-360) so the late write is fenced.
                        let cl = &mut self.clients[c];
                        cl.failed = true;
                        cl.bump_needed = true;
                    }
                    if self.clients[c].added.is_empty() {
                        // Nothing was added: clients end such a transaction without asking.
                        self.clients[c].state = Ready;
                        return;
                    }
                    let commit = !self.clients[c].failed && self.rng.chance(70);
                    self.clients[c].state = Ending(commit);
                    Request::End(commit)
                } else {
                    if self.rng.chance(10) {
                        self.clients[c].stalled = true;
                    }
                    return;
                }
            }
            Ending(commit) => Request::End(commit),
            Dead => return,
        };
        let req_id = self.next_req;
        self.next_req += 1;
        let asked = match &request {
            Request::Add(parts) => parts.clone(),
            _ => Vec::new(),
        };
        self.routes.insert(req_id, (c, asked));
        self.clients[c].waiting = true;
        self.requests.push((c, req_id, request));
    }

    fn deliver_request(&mut self) {
        if self.requests.is_empty() {
            return;
        }
        let i = self.rng.below(self.requests.len());
        let (c, req_id, request) = self.requests.swap_remove(i);
        if self.core.is_none() {
            self.routes.remove(&req_id);
            self.clients[c].waiting = false;
            return;
        }
        let cl = &self.clients[c];
        let (pid, epoch) = cl.producer;
        let txn_id = cl.txn_id.clone();
        let input = match request {
            Request::Init(expected) => Input::InitProducerId(
                req_id,
                InitProducerIdRequest {
                    transactional_id: txn_id,
                    timeout_ms: TIMEOUT_MS,
                    expected,
                },
            ),
            Request::Add(partitions) => Input::AddPartitions(
                req_id,
                AddPartitionsRequest {
                    transactional_id: txn_id,
                    producer_id: pid,
                    producer_epoch: epoch,
                    partitions,
                    verify_only: false,
                },
            ),
            Request::End(commit) => Input::EndTxn(
                req_id,
                EndTxnRequest {
                    transactional_id: txn_id,
                    producer_id: pid,
                    producer_epoch: epoch,
                    commit,
                },
            ),
        };
        self.feed(input);
    }

    fn deliver_write(&mut self) {
        let Some((write_id, txn_id, record)) = self.writes.pop_front() else {
            return;
        };
        let result = match self.rng.below(100) {
            // Refused before it was appended (e.g. too few in-sync replicas).
            0..=3 => Err(TxnError::CoordinatorNotAvailable),
            // Appended, but the wait for replication timed out: in the log all the same.
            4..=7 => {
                self.durable_log.push((txn_id, record));
                Err(TxnError::CoordinatorNotAvailable)
            }
            _ => {
                self.durable_log.push((txn_id, record));
                Ok(())
            }
        };
        self.feed(Input::WriteDone { write_id, result });
    }

    fn deliver_marker(&mut self) {
        let busy: Vec<TxnPartition> = self
            .markers
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(p, _)| p.clone())
            .collect();
        if busy.is_empty() {
            return;
        }
        let p = busy[self.rng.below(busy.len())].clone();
        let Some(m) = self.markers.get_mut(&p).and_then(|q| q.pop_front()) else {
            return;
        };
        let current = m.coordinator_epoch == self.coordinator_epoch && self.core.is_some();
        if current && self.rng.chance(5) {
            // The attempt failed without writing; the coordinator asks again.
            self.feed(Input::MarkersFailed {
                transactional_id: m.txn_id,
                producer_id: m.pid,
                producer_epoch: m.epoch,
                partitions: vec![p],
            });
            return;
        }
        let part = self.partitions.entry(p.clone()).or_default();
        let st = part.producers.entry(m.pid).or_insert(PState {
            epoch: m.epoch,
            ongoing: false,
            coordinator_epoch: m.coordinator_epoch,
        });
        if m.coordinator_epoch < st.coordinator_epoch {
            if current {
                self.violation(format!("current coordinator's marker fenced on {p:?}"));
            }
            return; // a deposed coordinator's marker: TRANSACTION_COORDINATOR_FENCED
        }
        if m.epoch < st.epoch {
            let what = format!(
                "marker of {} at epoch {} below the partition's {} on {p:?}",
                m.txn_id, m.epoch, st.epoch
            );
            if current {
                self.violation(what);
            }
            return;
        }
        st.epoch = m.epoch;
        st.ongoing = false;
        st.coordinator_epoch = m.coordinator_epoch;
        part.entries.push(PEntry::Marker {
            pid: m.pid,
            commit: m.commit,
        });
        if current {
            self.feed(Input::MarkersWritten {
                transactional_id: m.txn_id,
                producer_id: m.pid,
                producer_epoch: m.epoch,
                partitions: vec![p],
            });
        }
    }

    fn deliver_produce(&mut self) {
        if self.produces.is_empty() {
            return;
        }
        let i = self.rng.below(self.produces.len());
        let (p, m) = self.produces.swap_remove(i);
        let st = self.partitions[&p].producers.get(&m.pid).copied();
        let accepted = match st {
            Some(st) if m.epoch < st.epoch => false, // fenced by a newer epoch
            Some(st) if st.ongoing && m.epoch == st.epoch => true,
            _ => {
                // First write of a transaction here: KIP-890 verification.
                let req = AddPartitionsRequest {
                    transactional_id: m.txn_id.clone(),
                    producer_id: m.pid,
                    producer_epoch: m.epoch,
                    partitions: vec![p.clone()],
                    verify_only: true,
                };
                match self.core.as_mut() {
                    None => false,
                    Some(core) => {
                        let out = core.handle(self.now_ms, Input::AddPartitions(0, req));
                        matches!(&out[..], [Output::Reply(_, Reply::Verify(v))] if v.iter().all(|(_, e)| e.is_none()))
                    }
                }
            }
        };
        if !accepted {
            if let Some(cl) = self.clients.get_mut(m.client) {
                if cl.txn_no == m.txn_no {
                    cl.failed = true;
                }
            }
            return;
        }
        self.check_live(&m.txn_id, (m.pid, m.epoch), "data write accepted");
        let part = self.partitions.get_mut(&p).expect("known partition");
        part.producers.insert(
            m.pid,
            PState {
                epoch: m.epoch,
                ongoing: true,
                coordinator_epoch: st.map_or(0, |s| s.coordinator_epoch),
            },
        );
        part.entries.push(PEntry::Data {
            pid: m.pid,
            client: m.client,
            txn_no: m.txn_no,
        });
    }

    fn crash(&mut self) {
        // The unacknowledged tail of the state log survives up to some point.
        let keep = self.rng.below(self.writes.len() + 1);
        for (_, id, record) in self.writes.drain(..).take(keep) {
            self.durable_log.push((id, record));
        }
        self.core = None;
        // Answers that will never come: the clients' requests time out.
        for (_, (c, _)) in self.routes.drain() {
            self.clients[c].waiting = false;
        }
        self.requests.clear();
    }

    fn failover(&mut self) {
        self.coordinator_epoch += 1;
        let (core, out) = TxnCoordinatorCore::load(
            TxnConfig::default(),
            self.coordinator_epoch,
            self.durable_log.clone(),
        );
        self.core = Some(core);
        self.perform(out);
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..=34 => {
                let c = self.rng.below(self.clients.len());
                self.client_step(c);
            }
            35..=49 => self.deliver_request(),
            50..=62 => self.deliver_write(),
            63..=74 => self.deliver_marker(),
            75..=86 => self.deliver_produce(),
            87..=97 => {
                self.now_ms += self.rng.below(400) as i64;
                self.feed(Input::Tick);
            }
            98 => {
                // A new incarnation of some id (a restarted application); the old one keeps
                // going as a zombie until it is fenced.
                if self.clients.len() < 15 && self.rng.chance(30) {
                    let id = format!("txn-{}", self.rng.below(TXN_IDS));
                    self.new_client(id);
                }
            }
            _ => {
                if self.core.is_some() {
                    if self.rng.chance(30) {
                        self.crash();
                    }
                } else {
                    self.failover();
                }
            }
        }
        if self.core.is_none() && self.rng.chance(10) {
            self.failover();
        }
    }

    /// Clients stop; the cluster runs without faults until nothing is in flight and every
    /// timeout has passed.
    fn quiesce(&mut self) {
        for cl in &mut self.clients {
            cl.stalled = true;
        }
        if self.core.is_none() {
            self.failover();
        }
        for _ in 0..10_000 {
            while !self.requests.is_empty() {
                self.deliver_request();
            }
            while !self.writes.is_empty() {
                self.deliver_write();
            }
            while self.markers.values().any(|q| !q.is_empty()) {
                self.deliver_marker();
            }
            while !self.produces.is_empty() {
                self.deliver_produce();
            }
            self.now_ms += TIMEOUT_MS;
            self.feed(Input::Tick);
            let open = self.core.as_ref().is_some_and(|c| {
                c.transactions().any(|m| {
                    !matches!(
                        m.state,
                        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                    )
                })
            });
            if !open && self.writes.is_empty() && self.markers.values().all(|q| q.is_empty()) {
                if !self.routes.is_empty() {
                    let n = self.routes.len();
                    self.violation(format!("{n} request(s) delivered but never answered"));
                }
                return;
            }
        }
        self.violation("the coordinator never settled".into());
    }

    fn check(&mut self) {
        let mut fates: HashMap<(usize, u32), (Fate, TxnPartition)> = HashMap::new();
        let mut found = Vec::new();
        for (p, part) in &self.partitions {
            // Each data record's fate is the next marker of its producer id.
            for (i, e) in part.entries.iter().enumerate() {
                let PEntry::Data {
                    pid,
                    client,
                    txn_no,
                } = e
                else {
                    continue;
                };
                let fate = part.entries[i + 1..].iter().find_map(|m| match m {
                    PEntry::Marker { pid: mp, commit } if mp == pid => {
                        Some(if *commit { Fate::Commit } else { Fate::Abort })
                    }
                    _ => None,
                });
                let Some(fate) = fate else {
                    found.push(format!(
                        "{p:?}: a record of client {client} txn {txn_no} never got a marker"
                    ));
                    continue;
                };
                match fates.get(&(*client, *txn_no)) {
                    Some((f, other)) if *f != fate => found.push(format!(
                        "client {client} txn {txn_no}: {f:?} on {other:?} but {fate:?} on {p:?}"
                    )),
                    _ => {
                        fates.insert((*client, *txn_no), (fate, p.clone()));
                    }
                }
            }
        }
        for (key, told) in &self.told {
            if let Some((fate, p)) = fates.get(key) {
                if fate != told {
                    found.push(format!(
                        "client {} txn {} was told {told:?} but {p:?} has {fate:?}",
                        key.0, key.1
                    ));
                }
            }
        }
        self.violations.extend(found);
    }
}

fn run(seed: u64, steps: usize) -> Result<(usize, usize), Vec<String>> {
    let mut sim = Sim::new(seed);
    for _ in 0..steps {
        sim.step();
    }
    sim.quiesce();
    sim.check();
    if sim.violations.is_empty() {
        let records = sim
            .partitions
            .values()
            .map(|p| {
                p.entries
                    .iter()
                    .filter(|e| matches!(e, PEntry::Data { .. }))
                    .count()
            })
            .sum();
        Ok((sim.told.len(), records))
    } else {
        Err(sim.violations)
    }
}

#[test]
fn simulated_transactions_stay_atomic_through_crashes_and_fencing() {
    let seeds: Vec<u64> = match std::env::var("TXN_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("TXN_SIM_SEED is a number")],
        Err(_) => (0..300).collect(),
    };
    let (mut told, mut records) = (0, 0);
    for seed in seeds {
        match run(seed, 4_000) {
            Ok((t, r)) => {
                told += t;
                records += r;
            }
            Err(v) => panic!(
                "seed {seed}: {} violation(s), first: {}\nreproduce: TXN_SIM_SEED={seed} cargo test -p rivulet-actors --lib txn::sim",
                v.len(),
                v[0]
            ),
        }
    }
    // The simulation must exercise something: transactions that ended and data records.
    assert!(
        told > 100 && records > 1000,
        "told {told}, records {records}"
    );
}
