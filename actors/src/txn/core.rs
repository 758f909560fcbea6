//! `TxnCoordinatorCore`: the transaction coordinator of one `__transaction_state` partition as
//! a plain state machine. Inputs go in with the current time; outputs come back for the shell
//! to perform (append to the state log, write markers, allocate a producer id, reply). It does
//! no I/O and reads no clock, so table tests and the simulation in `sim.rs` drive it directly.
//!
//! Rules it keeps (Kafka's transaction coordinator semantics, KIP-98 / KIP-360 / KIP-890):
//! - **Durable before visible.** A state change is a pending transition until the shell reports
//!   its record durable (`WriteDone`); only then is it applied and answered. A failed write
//!   leaves the state as it was. Hence one pending transition per transactional id at a time:
//!   anything else for that id meanwhile gets `ConcurrentTransactions` (clients retry it).
//! - **One decision.** Commit or abort is decided by the durable `Prepare*` record and never
//!   changes; markers, then `Complete*`, follow it. Replaying the log yields the same decision.
//! - **One live incarnation.** Every InitProducerId bumps the epoch (or moves to a new producer
//!   id when the epoch is exhausted), and every request of an older epoch is refused with
//!   `ProducerFenced`. An open transaction is aborted at a bumped epoch when a new incarnation
//!   starts or its timeout passes, so partitions refuse the old incarnation's late writes too.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::PRODUCER_EPOCH_MAX;

/// Chosen by the shell to match a [`Output::Reply`] with its request.
pub type RequestId = u64;
/// Chosen by the core to match [`Input::WriteDone`] with its [`Output::Write`].
pub type WriteId = u64;

/// No producer id / epoch (Kafka's -1).
const NO_PRODUCER_ID: i64 = -1;
const NO_PRODUCER_EPOCH: i16 = -1;

/// A partition taking part in a transaction.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TxnPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TxnPartition {
    /// A partition of `topic`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

/// State of a transactional id (Kafka's `TransactionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    /// A producer id is assigned; no transaction is open.
    Empty,
    /// A transaction is open: partitions were added.
    Ongoing,
    /// Commit decided; markers are being written.
    PrepareCommit,
    /// Abort decided; markers are being written.
    PrepareAbort,
    /// The last transaction committed; every marker is written.
    CompleteCommit,
    /// The last transaction aborted; every marker is written.
    CompleteAbort,
    /// The id expired and is being removed.
    Dead,
}

impl TxnState {
    /// Whether `self -> next` is a transition the coordinator may make (Kafka's valid previous
    /// states). Re-initialising an id keeps it `Empty`.
    pub fn may_become(self, next: TxnState) -> bool {
        use TxnState::*;
        match next {
            Empty | Dead => matches!(self, Empty | CompleteCommit | CompleteAbort),
            Ongoing => matches!(self, Empty | Ongoing | CompleteCommit | CompleteAbort),
            PrepareCommit | PrepareAbort => self == Ongoing,
            CompleteCommit => self == PrepareCommit,
            CompleteAbort => self == PrepareAbort,
        }
    }

    /// Kafka's name of the state (as DescribeTransactions / ListTransactions and
    /// `kafka-transactions.sh` spell it).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
        }
    }

    /// The state named `name` (Kafka's spelling, exact case), if we have it. Kafka also has
    /// `PrepareEpochFence`, which we never enter (our fencing aborts through `PrepareAbort`).
    pub fn from_name(name: &str) -> Option<TxnState> {
        Some(match name {
            "Empty" => TxnState::Empty,
            "Ongoing" => TxnState::Ongoing,
            "PrepareCommit" => TxnState::PrepareCommit,
            "PrepareAbort" => TxnState::PrepareAbort,
            "CompleteCommit" => TxnState::CompleteCommit,
            "CompleteAbort" => TxnState::CompleteAbort,
            "Dead" => TxnState::Dead,
            _ => return None,
        })
    }

    /// `Some(commit?)` while markers are being written.
    pub fn decision(self) -> Option<bool> {
        match self {
            TxnState::PrepareCommit => Some(true),
            TxnState::PrepareAbort => Some(false),
            _ => None,
        }
    }
}

/// Everything the coordinator knows about one transactional id; the value of its record in
/// `__transaction_state` (the latest record of an id wins; a tombstone removes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMetadata {
    /// The transactional id.
    pub transactional_id: String,
    /// Current producer id.
    pub producer_id: i64,
    /// The producer id before the last rotation (KIP-360: lets a retried InitProducerId of
    /// the old id succeed), or -1.
    pub prev_producer_id: i64,
    /// Current producer epoch.
    pub producer_epoch: i16,
    /// The epoch before the last client-requested bump (KIP-360: a retried InitProducerId that
    /// names it gets the same answer instead of a second bump), or -1.
    pub last_producer_epoch: i16,
    /// Transaction timeout the producer asked for.
    pub timeout_ms: i64,
    /// State.
    pub state: TxnState,
    /// Partitions of the open (or finishing) transaction.
    pub partitions: BTreeSet<TxnPartition>,
    /// When the open transaction started (first partition added); -1 when none is open.
    pub start_ms: i64,
    /// Last change.
    pub last_update_ms: i64,
}

/// Coordinator settings (Kafka's `transaction.*` broker configs).
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// Largest transaction timeout a producer may ask for (`transaction.max.timeout.ms`).
    pub max_timeout_ms: i64,
    /// An id idle this long (no transaction open) is removed
    /// (`transactional.id.expiration.ms`).
    pub id_expiration_ms: i64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        Self {
            max_timeout_ms: 15 * 60 * 1000,
            id_expiration_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

/// InitProducerId with a transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitProducerIdRequest {
    /// The transactional id.
    pub transactional_id: String,
    /// Transaction timeout.
    pub timeout_ms: i64,
    /// KIP-360 (v3+): the producer id and epoch the client has, if any.
    pub expected: Option<(i64, i16)>,
}

/// AddPartitionsToTxn / AddOffsetsToTxn (the shell maps a group to its offsets partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddPartitionsRequest {
    /// The transactional id.
    pub transactional_id: String,
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Partitions to add (or to check, with `verify_only`).
    pub partitions: Vec<TxnPartition>,
    /// KIP-890 (v4+, sent by partition leaders): only check that the partitions are in the
    /// open transaction of this producer; change nothing.
    pub verify_only: bool,
}

/// EndTxn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndTxnRequest {
    /// The transactional id.
    pub transactional_id: String,
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Commit (true) or abort.
    pub commit: bool,
}

/// Why a request failed; `broker` maps these to Kafka error codes (and per API version, e.g.
/// `ProducerFenced` is INVALID_PRODUCER_EPOCH for old AddPartitionsToTxn versions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnError {
    /// This node does not (or no longer) coordinate the id.
    NotCoordinator,
    /// This node is still reading the id's state partition; retriable.
    CoordinatorLoadInProgress,
    /// The state log write failed; retriable.
    CoordinatorNotAvailable,
    /// Another change of this id is in flight, or markers are being written; retriable.
    ConcurrentTransactions,
    /// The producer id does not belong to this transactional id.
    InvalidProducerIdMapping,
    /// A newer incarnation holds the id.
    ProducerFenced,
    /// The request does not fit the transaction's state (e.g. commit after abort).
    InvalidTxnState,
    /// The timeout is not within (0, max].
    InvalidTransactionTimeout,
}

/// An answer for the shell to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// InitProducerId: producer id and epoch.
    InitProducerId(Result<(i64, i16), TxnError>),
    /// AddPartitionsToTxn (all partitions share the outcome).
    AddPartitions(Result<(), TxnError>),
    /// AddPartitionsToTxn with `verify_only`: one outcome per partition.
    Verify(Vec<(TxnPartition, Option<TxnError>)>),
    /// EndTxn.
    EndTxn(Result<(), TxnError>),
}

/// Events into the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// InitProducerId.
    InitProducerId(RequestId, InitProducerIdRequest),
    /// AddPartitionsToTxn / AddOffsetsToTxn.
    AddPartitions(RequestId, AddPartitionsRequest),
    /// EndTxn.
    EndTxn(RequestId, EndTxnRequest),
    /// Answer to [`Output::AllocateProducerId`].
    ProducerIdAllocated {
        /// For this id.
        transactional_id: String,
        /// The new producer id, or why there is none.
        producer_id: Result<i64, TxnError>,
    },
    /// Outcome of [`Output::Write`]: `Ok` once the record is durable (below the high
    /// watermark of the state partition).
    WriteDone {
        /// Which write.
        write_id: WriteId,
        /// `Err` if it failed or its fate is unknown (the state is then left as it was).
        result: Result<(), TxnError>,
    },
    /// Markers of [`Output::WriteMarkers`] are durable on these partitions.
    MarkersWritten {
        /// For this id.
        transactional_id: String,
        /// Producer id of the markers.
        producer_id: i64,
        /// Producer epoch of the markers.
        producer_epoch: i16,
        /// Partitions now holding the marker.
        partitions: Vec<TxnPartition>,
    },
    /// Markers of [`Output::WriteMarkers`] could not be written to these partitions (after
    /// the attempt ended, so nothing of it can still land); the core asks again.
    MarkersFailed {
        /// For this id.
        transactional_id: String,
        /// Producer id of the markers.
        producer_id: i64,
        /// Producer epoch of the markers.
        producer_epoch: i16,
        /// Partitions to retry.
        partitions: Vec<TxnPartition>,
    },
    /// Time passed: abort expired transactions, expire idle ids, retry completions.
    Tick,
}

/// Work for the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this answer.
    Reply(RequestId, Reply),
    /// Get a fresh producer id, then report [`Input::ProducerIdAllocated`].
    AllocateProducerId {
        /// For this id.
        transactional_id: String,
    },
    /// Append this record to the state partition, wait until it is durable, then report
    /// [`Input::WriteDone`].
    Write {
        /// Which write.
        write_id: WriteId,
        /// Key of the record.
        transactional_id: String,
        /// Value; `None` is a tombstone.
        record: Option<TxnMetadata>,
    },
    /// Write a commit or abort marker to each partition (on its leader), then report
    /// [`Input::MarkersWritten`] or [`Input::MarkersFailed`]. A partition that no longer
    /// exists counts as written.
    WriteMarkers {
        /// For this id.
        transactional_id: String,
        /// Producer id of the transaction.
        producer_id: i64,
        /// Producer epoch (the bumped one after a fence).
        producer_epoch: i16,
        /// The coordinator's epoch (leader epoch of the state partition); a partition refuses
        /// markers of a producer from a coordinator epoch older than one it has seen.
        coordinator_epoch: i32,
        /// Commit or abort.
        commit: bool,
        /// Partitions.
        partitions: Vec<TxnPartition>,
    },
}

/// What to do once a pending write is durable (or failed).
#[derive(Debug, Clone)]
enum Then {
    /// Answer this request (with the error if the write failed).
    Reply(RequestId, Reply),
    /// InitProducerId found a transaction open and is aborting it: answer
    /// `ConcurrentTransactions` either way so the client retries once the abort completes.
    FenceAbort(RequestId),
    /// The coordinator's own change (timeout, completion, expiry); retried from `Tick`.
    Nothing,
}

#[derive(Debug, Clone)]
struct PendingWrite {
    write_id: WriteId,
    /// `None`: the id is being removed.
    target: Option<TxnMetadata>,
    then: Then,
}

#[derive(Debug, Clone)]
struct Entry {
    meta: TxnMetadata,
    pending: Option<PendingWrite>,
    /// While `Prepare*`: partitions without a durable marker yet.
    markers_left: BTreeSet<TxnPartition>,
}

/// The coordinator of one `__transaction_state` partition at one coordinator epoch.
#[derive(Debug)]
pub struct TxnCoordinatorCore {
    config: TxnConfig,
    coordinator_epoch: i32,
    entries: HashMap<String, Entry>,
    /// InitProducerId requests waiting for a producer id (the id's only pending action).
    allocating: HashMap<String, (RequestId, InitProducerIdRequest)>,
    /// New ids whose first record is being written (no entry yet).
    creating: HashMap<String, PendingWrite>,
    /// Write id -> transactional id.
    writes: HashMap<WriteId, String>,
    next_write_id: WriteId,
}

impl TxnCoordinatorCore {
    /// A coordinator for a partition read back from its log: `records` are the partition's
    /// records in log order (`None` values are tombstones). Returns the outputs that finish
    /// what the previous coordinator left decided: markers of every `Prepare*` transaction.
    pub fn load(
        config: TxnConfig,
        coordinator_epoch: i32,
        records: impl IntoIterator<Item = (String, Option<TxnMetadata>)>,
    ) -> (Self, Vec<Output>) {
        let mut entries = HashMap::new();
        for (id, record) in records {
            match record {
                Some(meta) => {
                    entries.insert(
                        id,
                        Entry {
                            meta,
                            pending: None,
                            markers_left: BTreeSet::new(),
                        },
                    );
                }
                None => {
                    entries.remove(&id);
                }
            }
        }
        let mut core = Self {
            config,
            coordinator_epoch,
            entries,
            allocating: HashMap::new(),
            creating: HashMap::new(),
            writes: HashMap::new(),
            next_write_id: 1,
        };
        let mut out = Vec::new();
        let mut deciding: Vec<String> = core
            .entries
            .iter()
            .filter(|(_, e)| e.meta.state.decision().is_some())
            .map(|(id, _)| id.clone())
            .collect();
        deciding.sort();
        for id in deciding {
            info!(transactional_id = %id, coordinator_epoch, "finishing a decided transaction after load");
            core.start_markers(&id, &mut out);
        }
        (core, out)
    }

    /// The coordinator epoch this core serves.
    pub fn coordinator_epoch(&self) -> i32 {
        self.coordinator_epoch
    }

    /// The durable state of every id (for DescribeTransactions / ListTransactions).
    pub fn transactions(&self) -> impl Iterator<Item = &TxnMetadata> {
        self.entries.values().map(|e| &e.meta)
    }

    /// The durable state of one id.
    pub fn transaction(&self, transactional_id: &str) -> Option<&TxnMetadata> {
        self.entries.get(transactional_id).map(|e| &e.meta)
    }

    /// Handles one input at `now_ms`.
    pub fn handle(&mut self, now_ms: i64, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::InitProducerId(req_id, req) => {
                self.init_producer_id(now_ms, req_id, req, None, &mut out)
            }
            Input::AddPartitions(req_id, req) => {
                if req.verify_only {
                    let reply = self.verify(&req);
                    out.push(Output::Reply(req_id, reply));
                } else {
                    self.add_partitions(now_ms, req_id, req, &mut out)
                }
            }
            Input::EndTxn(req_id, req) => self.end_txn(now_ms, req_id, req, &mut out),
            Input::ProducerIdAllocated {
                transactional_id,
                producer_id,
            } => {
                if let Some((req_id, req)) = self.allocating.remove(&transactional_id) {
                    match producer_id {
                        Ok(pid) => self.init_producer_id(now_ms, req_id, req, Some(pid), &mut out),
                        Err(e) => out.push(Output::Reply(req_id, Reply::InitProducerId(Err(e)))),
                    }
                }
            }
            Input::WriteDone { write_id, result } => self.write_done(write_id, result, &mut out),
            Input::MarkersWritten {
                transactional_id,
                producer_id,
                producer_epoch,
                partitions,
            } => self.markers_written(
                now_ms,
                &transactional_id,
                producer_id,
                producer_epoch,
                partitions,
                &mut out,
            ),
            Input::MarkersFailed {
                transactional_id,
                producer_id,
                producer_epoch,
                partitions,
            } => {
                if let Some(e) = self.entries.get(&transactional_id) {
                    let m = &e.meta;
                    if let Some(commit) = m.state.decision() {
                        let retry: Vec<TxnPartition> = partitions
                            .into_iter()
                            .filter(|p| e.markers_left.contains(p))
                            .collect();
                        if m.producer_id == producer_id
                            && m.producer_epoch == producer_epoch
                            && !retry.is_empty()
                        {
                            out.push(Output::WriteMarkers {
                                transactional_id: transactional_id.clone(),
                                producer_id,
                                producer_epoch,
                                coordinator_epoch: self.coordinator_epoch,
                                commit,
                                partitions: retry,
                            });
                        }
                    }
                }
            }
            Input::Tick => self.tick(now_ms, &mut out),
        }
        out
    }

    fn busy(&self, id: &str) -> bool {
        self.allocating.contains_key(id)
            || self.creating.contains_key(id)
            || self.entries.get(id).is_some_and(|e| e.pending.is_some())
    }

    fn begin_write(
        &mut self,
        id: &str,
        target: Option<TxnMetadata>,
        then: Then,
        out: &mut Vec<Output>,
    ) {
        debug_assert!(!self.busy(id), "a second pending change of {id}");
        let write_id = self.next_write_id;
        self.next_write_id += 1;
        if let Some(t) = &target {
            if let Some(e) = self.entries.get(id) {
                debug_assert!(
                    e.meta.state.may_become(t.state),
                    "{:?} -> {:?}",
                    e.meta.state,
                    t.state
                );
            }
        }
        let pending = PendingWrite {
            write_id,
            target: target.clone(),
            then,
        };
        match self.entries.get_mut(id) {
            Some(e) => e.pending = Some(pending),
            None => {
                self.creating.insert(id.to_owned(), pending);
            }
        }
        self.writes.insert(write_id, id.to_owned());
        out.push(Output::Write {
            write_id,
            transactional_id: id.to_owned(),
            record: target,
        });
    }

    fn init_producer_id(
        &mut self,
        now_ms: i64,
        req_id: RequestId,
        req: InitProducerIdRequest,
        fresh_pid: Option<i64>,
        out: &mut Vec<Output>,
    ) {
        let reply = |out: &mut Vec<Output>, r: Result<(i64, i16), TxnError>| {
            out.push(Output::Reply(req_id, Reply::InitProducerId(r)))
        };
        if req.timeout_ms <= 0 || req.timeout_ms > self.config.max_timeout_ms {
            return reply(out, Err(TxnError::InvalidTransactionTimeout));
        }
        if self.busy(&req.transactional_id) {
            return reply(out, Err(TxnError::ConcurrentTransactions));
        }
        let id = req.transactional_id.clone();
        let Some(entry) = self.entries.get(&id) else {
            // A new id: epoch 0 of a fresh producer id.
            let Some(pid) = fresh_pid else {
                self.allocating.insert(id.clone(), (req_id, req));
                out.push(Output::AllocateProducerId {
                    transactional_id: id,
                });
                return;
            };
            let meta = TxnMetadata {
                transactional_id: id.clone(),
                producer_id: pid,
                prev_producer_id: NO_PRODUCER_ID,
                producer_epoch: 0,
                last_producer_epoch: NO_PRODUCER_EPOCH,
                timeout_ms: req.timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                start_ms: -1,
                last_update_ms: now_ms,
            };
            let then = Then::Reply(req_id, Reply::InitProducerId(Ok((pid, 0))));
            return self.begin_write(&id, Some(meta), then, out);
        };
        let m = &entry.meta;
        // KIP-360: a client naming its producer id may only bump the id it has (or, right
        // after a rotation, the previous one with an exhausted epoch).
        if let Some((exp_pid, exp_epoch)) = req.expected {
            let valid = m.producer_epoch == NO_PRODUCER_EPOCH
                || exp_pid == m.producer_id
                || (exp_pid == m.prev_producer_id && exp_epoch >= PRODUCER_EPOCH_MAX);
            if !valid {
                return reply(out, Err(TxnError::ProducerFenced));
            }
            if exp_pid != m.producer_id && exp_pid == m.prev_producer_id {
                // A retry of the rotation whose answer was lost: the same answer, unless the
                // new id has moved on since.
                let unchanged = m.state == TxnState::Empty && m.producer_epoch == 0;
                return reply(
                    out,
                    if unchanged {
                        Ok((m.producer_id, 0))
                    } else {
                        Err(TxnError::ProducerFenced)
                    },
                );
            }
        }
        match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                reply(out, Err(TxnError::ConcurrentTransactions))
            }
            TxnState::Ongoing => {
                // A new incarnation while a transaction is open: abort it at a bumped epoch
                // (so the old incarnation is fenced on its partitions too) and have the client
                // retry once the abort is complete. This epoch is never handed out.
                let mut t = m.clone();
                t.producer_epoch = m.producer_epoch.saturating_add(1);
                t.last_producer_epoch = NO_PRODUCER_EPOCH;
                t.state = TxnState::PrepareAbort;
                t.last_update_ms = now_ms;
                info!(transactional_id = %id, producer_id = t.producer_id, epoch = t.producer_epoch,
                    "InitProducerId fences an open transaction: aborting it");
                self.begin_write(&id, Some(t), Then::FenceAbort(req_id), out);
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let exhausted = m.producer_epoch >= PRODUCER_EPOCH_MAX;
                let mut t = m.clone();
                if exhausted && req.expected.is_none_or(|(_, e)| e == m.producer_epoch) {
                    let Some(pid) = fresh_pid else {
                        self.allocating.insert(id.clone(), (req_id, req));
                        out.push(Output::AllocateProducerId {
                            transactional_id: id,
                        });
                        return;
                    };
                    t.prev_producer_id = if req.expected.is_some() {
                        m.producer_id
                    } else {
                        NO_PRODUCER_ID
                    };
                    t.producer_id = pid;
                    t.producer_epoch = 0;
                    t.last_producer_epoch = NO_PRODUCER_EPOCH;
                } else {
                    let bumped = m.producer_epoch.saturating_add(1);
                    let (next, last) = match req.expected {
                        None => (bumped, NO_PRODUCER_EPOCH),
                        Some((_, e)) if e == NO_PRODUCER_EPOCH || e == m.producer_epoch => {
                            (bumped, m.producer_epoch)
                        }
                        // A retry of a bump whose answer was lost: same answer again.
                        Some((_, e)) if e == m.last_producer_epoch => {
                            (m.producer_epoch, m.last_producer_epoch)
                        }
                        Some(_) => return reply(out, Err(TxnError::ProducerFenced)),
                    };
                    t.producer_epoch = next;
                    t.last_producer_epoch = last;
                }
                t.timeout_ms = req.timeout_ms;
                t.state = TxnState::Empty;
                t.partitions.clear();
                t.start_ms = -1;
                t.last_update_ms = now_ms;
                let r = Reply::InitProducerId(Ok((t.producer_id, t.producer_epoch)));
                self.begin_write(&id, Some(t), Then::Reply(req_id, r), out);
            }
            TxnState::Dead => reply(out, Err(TxnError::ConcurrentTransactions)),
        }
    }

    /// Common checks of AddPartitions and EndTxn: the entry, its producer and no pending work.
    fn check_producer(&self, id: &str, pid: i64, epoch: i16) -> Result<&Entry, TxnError> {
        if self.allocating.contains_key(id) || self.creating.contains_key(id) {
            return Err(TxnError::ConcurrentTransactions);
        }
        let e = self
            .entries
            .get(id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        if e.meta.producer_id != pid {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if e.meta.producer_epoch != epoch {
            return Err(TxnError::ProducerFenced);
        }
        if e.pending.is_some() {
            return Err(TxnError::ConcurrentTransactions);
        }
        Ok(e)
    }

    fn verify(&self, req: &AddPartitionsRequest) -> Reply {
        let all = |err: TxnError| {
            Reply::Verify(
                req.partitions
                    .iter()
                    .map(|p| (p.clone(), Some(err)))
                    .collect(),
            )
        };
        // Verification reads durable state only; a pending change is irrelevant to it.
        let Some(e) = self.entries.get(&req.transactional_id) else {
            return all(TxnError::InvalidProducerIdMapping);
        };
        if e.meta.producer_id != req.producer_id {
            return all(TxnError::InvalidProducerIdMapping);
        }
        if e.meta.producer_epoch != req.producer_epoch {
            return all(TxnError::ProducerFenced);
        }
        let open = e.meta.state == TxnState::Ongoing;
        Reply::Verify(
            req.partitions
                .iter()
                .map(|p| {
                    let ok = open && e.meta.partitions.contains(p);
                    (p.clone(), (!ok).then_some(TxnError::InvalidTxnState))
                })
                .collect(),
        )
    }

    fn add_partitions(
        &mut self,
        now_ms: i64,
        req_id: RequestId,
        req: AddPartitionsRequest,
        out: &mut Vec<Output>,
    ) {
        let reply = |out: &mut Vec<Output>, r: Result<(), TxnError>| {
            out.push(Output::Reply(req_id, Reply::AddPartitions(r)))
        };
        let e =
            match self.check_producer(&req.transactional_id, req.producer_id, req.producer_epoch) {
                Ok(e) => e,
                Err(err) => return reply(out, Err(err)),
            };
        let m = &e.meta;
        match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::Dead => {
                reply(out, Err(TxnError::ConcurrentTransactions))
            }
            TxnState::Ongoing if req.partitions.iter().all(|p| m.partitions.contains(p)) => {
                reply(out, Ok(()))
            }
            TxnState::Empty
            | TxnState::Ongoing
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort => {
                let mut t = m.clone();
                if t.state != TxnState::Ongoing {
                    t.partitions.clear();
                    t.start_ms = now_ms;
                }
                t.state = TxnState::Ongoing;
                t.partitions.extend(req.partitions.iter().cloned());
                t.last_update_ms = now_ms;
                let id = req.transactional_id.clone();
                let then = Then::Reply(req_id, Reply::AddPartitions(Ok(())));
                self.begin_write(&id, Some(t), then, out);
            }
        }
    }

    fn end_txn(
        &mut self,
        now_ms: i64,
        req_id: RequestId,
        req: EndTxnRequest,
        out: &mut Vec<Output>,
    ) {
        let reply = |out: &mut Vec<Output>, r: Result<(), TxnError>| {
            out.push(Output::Reply(req_id, Reply::EndTxn(r)))
        };
        let e =
            match self.check_producer(&req.transactional_id, req.producer_id, req.producer_epoch) {
                Ok(e) => e,
                Err(err) => return reply(out, Err(err)),
            };
        let m = &e.meta;
        use TxnState::*;
        match (m.state, req.commit) {
            (Ongoing, commit) => {
                let mut t = m.clone();
                t.state = if commit { PrepareCommit } else { PrepareAbort };
                t.last_update_ms = now_ms;
                let id = req.transactional_id.clone();
                let then = Then::Reply(req_id, Reply::EndTxn(Ok(())));
                self.begin_write(&id, Some(t), then, out);
            }
            // Retries of a decided transaction.
            (CompleteCommit, true) | (CompleteAbort, false) => reply(out, Ok(())),
            (PrepareCommit, true) | (PrepareAbort, false) => {
                reply(out, Err(TxnError::ConcurrentTransactions))
            }
            (Dead, _) => reply(out, Err(TxnError::ConcurrentTransactions)),
            // Commit after abort, abort after commit, or nothing open.
            _ => reply(out, Err(TxnError::InvalidTxnState)),
        }
    }

    fn write_done(
        &mut self,
        write_id: WriteId,
        result: Result<(), TxnError>,
        out: &mut Vec<Output>,
    ) {
        let Some(id) = self.writes.remove(&write_id) else {
            return;
        };
        let pending = match self.entries.get_mut(&id) {
            Some(e) if e.pending.as_ref().is_some_and(|p| p.write_id == write_id) => {
                e.pending.take()
            }
            Some(_) => None,
            None => self.creating.remove(&id),
        };
        let Some(p) = pending else {
            return;
        };
        match result {
            Ok(()) => {
                match p.target {
                    Some(meta) => {
                        let decided = meta.state.decision().is_some();
                        let entry = self.entries.entry(id.clone()).or_insert_with(|| Entry {
                            meta: meta.clone(),
                            pending: None,
                            markers_left: BTreeSet::new(),
                        });
                        entry.meta = meta;
                        if decided {
                            self.start_markers(&id, out);
                        }
                    }
                    None => {
                        debug!(transactional_id = %id, "transactional id expired");
                        self.entries.remove(&id);
                    }
                }
                match p.then {
                    Then::Reply(req_id, reply) => out.push(Output::Reply(req_id, reply)),
                    Then::FenceAbort(req_id) => out.push(Output::Reply(
                        req_id,
                        Reply::InitProducerId(Err(TxnError::ConcurrentTransactions)),
                    )),
                    Then::Nothing => {}
                }
            }
            Err(err) => {
                warn!(transactional_id = %id, ?err, "transaction state write failed; state unchanged");
                match p.then {
                    Then::Reply(req_id, reply) => {
                        let failed = match reply {
                            Reply::InitProducerId(_) => Reply::InitProducerId(Err(err)),
                            Reply::AddPartitions(_) => Reply::AddPartitions(Err(err)),
                            Reply::Verify(_) => Reply::AddPartitions(Err(err)),
                            Reply::EndTxn(_) => Reply::EndTxn(Err(err)),
                        };
                        out.push(Output::Reply(req_id, failed));
                    }
                    Then::FenceAbort(req_id) => out.push(Output::Reply(
                        req_id,
                        Reply::InitProducerId(Err(TxnError::ConcurrentTransactions)),
                    )),
                    Then::Nothing => {}
                }
            }
        }
    }

    fn start_markers(&mut self, id: &str, out: &mut Vec<Output>) {
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        let Some(commit) = e.meta.state.decision() else {
            return;
        };
        e.markers_left = e.meta.partitions.clone();
        if e.markers_left.is_empty() {
            // Nothing was added (only possible for a fenced or expired empty transaction).
            return self.complete(id, out);
        }
        out.push(Output::WriteMarkers {
            transactional_id: id.to_owned(),
            producer_id: e.meta.producer_id,
            producer_epoch: e.meta.producer_epoch,
            coordinator_epoch: self.coordinator_epoch,
            commit,
            partitions: e.markers_left.iter().cloned().collect(),
        });
    }

    fn markers_written(
        &mut self,
        _now_ms: i64,
        id: &str,
        pid: i64,
        epoch: i16,
        partitions: Vec<TxnPartition>,
        out: &mut Vec<Output>,
    ) {
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        if e.meta.state.decision().is_none()
            || e.meta.producer_id != pid
            || e.meta.producer_epoch != epoch
        {
            return;
        }
        for p in &partitions {
            e.markers_left.remove(p);
        }
        if e.markers_left.is_empty() && e.pending.is_none() {
            self.complete(id, out);
        }
    }

    /// Every marker of a decided transaction is durable: record `Complete*`.
    fn complete(&mut self, id: &str, out: &mut Vec<Output>) {
        let Some(e) = self.entries.get(id) else {
            return;
        };
        let mut t = e.meta.clone();
        t.state = match t.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            _ => return,
        };
        t.partitions.clear();
        t.start_ms = -1;
        // Keeps the last change of the decision: expiry counts from the completion, and the
        // record stays a pure function of the log.
        self.begin_write(id, Some(t), Then::Nothing, out);
    }

    fn tick(&mut self, now_ms: i64, out: &mut Vec<Output>) {
        let mut ids: Vec<String> = self
            .entries
            .iter()
            .filter(|(id, e)| e.pending.is_none() && !self.allocating.contains_key(*id))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        for id in ids {
            let Some(e) = self.entries.get(&id) else {
                continue;
            };
            let m = &e.meta;
            match m.state {
                TxnState::Ongoing if now_ms >= m.start_ms.saturating_add(m.timeout_ms) => {
                    let mut t = m.clone();
                    t.producer_epoch = m.producer_epoch.saturating_add(1);
                    t.last_producer_epoch = NO_PRODUCER_EPOCH;
                    t.state = TxnState::PrepareAbort;
                    t.last_update_ms = now_ms;
                    info!(transactional_id = %id, producer_id = t.producer_id, timeout_ms = m.timeout_ms,
                        "transaction timed out: aborting it and fencing its producer epoch");
                    self.begin_write(&id, Some(t), Then::Nothing, out);
                }
                TxnState::PrepareCommit | TxnState::PrepareAbort if e.markers_left.is_empty() => {
                    // A failed Complete* write: try again.
                    self.complete(&id, out);
                }
                TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                    if now_ms
                        >= m.last_update_ms
                            .saturating_add(self.config.id_expiration_ms) =>
                {
                    self.begin_write(&id, None, Then::Nothing, out);
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT_MS: i64 = 60_000;

    /// Drives a core, completing every write, allocation and marker at once unless told not to.
    struct Harness {
        core: TxnCoordinatorCore,
        now_ms: i64,
        next_pid: i64,
        next_req: RequestId,
        /// The state log: every record reported durable.
        log: Vec<(String, Option<TxnMetadata>)>,
        /// Markers written: (producer id, epoch, commit, partition).
        markers: Vec<(i64, i16, bool, TxnPartition)>,
    }

    impl Harness {
        fn new() -> Self {
            let (core, out) = TxnCoordinatorCore::load(TxnConfig::default(), 1, []);
            assert!(out.is_empty());
            Self {
                core,
                now_ms: 1_000,
                next_pid: 1000,
                next_req: 1,
                log: Vec::new(),
                markers: Vec::new(),
            }
        }

        /// Feeds `input` and performs every output; returns the replies.
        fn settle(&mut self, input: Input) -> Vec<Reply> {
            let mut queue = vec![input];
            let mut replies = Vec::new();
            while let Some(i) = queue.pop() {
                for o in self.core.handle(self.now_ms, i) {
                    match o {
                        Output::Reply(_, r) => replies.push(r),
                        Output::AllocateProducerId { transactional_id } => {
                            self.next_pid += 1;
                            queue.push(Input::ProducerIdAllocated {
                                transactional_id,
                                producer_id: Ok(self.next_pid - 1),
                            });
                        }
                        Output::Write {
                            write_id,
                            transactional_id,
                            record,
                        } => {
                            self.log.push((transactional_id, record));
                            queue.push(Input::WriteDone {
                                write_id,
                                result: Ok(()),
                            });
                        }
                        Output::WriteMarkers {
                            transactional_id,
                            producer_id,
                            producer_epoch,
                            commit,
                            partitions,
                            ..
                        } => {
                            for p in &partitions {
                                self.markers
                                    .push((producer_id, producer_epoch, commit, p.clone()));
                            }
                            queue.push(Input::MarkersWritten {
                                transactional_id,
                                producer_id,
                                producer_epoch,
                                partitions,
                            });
                        }
                    }
                }
            }
            replies
        }

        fn init(&mut self, id: &str) -> Result<(i64, i16), TxnError> {
            self.init_expecting(id, None)
        }

        fn init_expecting(
            &mut self,
            id: &str,
            expected: Option<(i64, i16)>,
        ) -> Result<(i64, i16), TxnError> {
            self.next_req += 1;
            let r = self.settle(Input::InitProducerId(
                self.next_req,
                InitProducerIdRequest {
                    transactional_id: id.into(),
                    timeout_ms: TIMEOUT_MS,
                    expected,
                },
            ));
            match r.as_slice() {
                [Reply::InitProducerId(r)] => *r,
                other => panic!("unexpected replies {other:?}"),
            }
        }

        fn add(
            &mut self,
            id: &str,
            (pid, epoch): (i64, i16),
            parts: &[i32],
        ) -> Result<(), TxnError> {
            self.next_req += 1;
            let r = self.settle(Input::AddPartitions(
                self.next_req,
                AddPartitionsRequest {
                    transactional_id: id.into(),
                    producer_id: pid,
                    producer_epoch: epoch,
                    partitions: parts.iter().map(|p| TxnPartition::new("t", *p)).collect(),
                    verify_only: false,
                },
            ));
            match r.as_slice() {
                [Reply::AddPartitions(r)] => *r,
                other => panic!("unexpected replies {other:?}"),
            }
        }

        fn end(
            &mut self,
            id: &str,
            (pid, epoch): (i64, i16),
            commit: bool,
        ) -> Result<(), TxnError> {
            self.next_req += 1;
            let r = self.settle(Input::EndTxn(
                self.next_req,
                EndTxnRequest {
                    transactional_id: id.into(),
                    producer_id: pid,
                    producer_epoch: epoch,
                    commit,
                },
            ));
            match r.as_slice() {
                [Reply::EndTxn(r)] => *r,
                other => panic!("unexpected replies {other:?}"),
            }
        }

        fn state(&self, id: &str) -> TxnState {
            self.core
                .transaction(id)
                .map(|m| m.state)
                .unwrap_or(TxnState::Dead)
        }

        fn logged_states(&self, id: &str) -> Vec<TxnState> {
            self.log
                .iter()
                .filter(|(i, _)| i == id)
                .map(|(_, r)| r.as_ref().map_or(TxnState::Dead, |m| m.state))
                .collect()
        }
    }

    #[test]
    fn commit_writes_markers_everywhere_then_completes() {
        let mut h = Harness::new();
        let p = h.init("a").unwrap();
        assert_eq!(p, (1000, 0));
        h.add("a", p, &[0, 1]).unwrap();
        h.add("a", p, &[1, 2]).unwrap();
        h.end("a", p, true).unwrap();
        assert_eq!(h.state("a"), TxnState::CompleteCommit);
        let mut parts: Vec<i32> = h.markers.iter().map(|m| m.3.partition).collect();
        parts.sort();
        assert_eq!(parts, [0, 1, 2]);
        assert!(h.markers.iter().all(|m| m.0 == 1000 && m.1 == 0 && m.2));
        use TxnState::*;
        assert_eq!(
            h.logged_states("a"),
            [Empty, Ongoing, Ongoing, PrepareCommit, CompleteCommit]
        );
        // A retried commit succeeds; an abort of it does not.
        h.end("a", p, true).unwrap();
        assert_eq!(h.end("a", p, false), Err(TxnError::InvalidTxnState));
        // The next transaction uses the same epoch.
        h.add("a", p, &[3]).unwrap();
        h.end("a", p, false).unwrap();
        assert_eq!(h.state("a"), CompleteAbort);
    }

    #[test]
    fn end_txn_outcomes_by_state() {
        use TxnState::*;
        // (state to reach, commit?, expected result)
        let table: &[(TxnState, bool, Result<(), TxnError>)] = &[
            (Empty, true, Err(TxnError::InvalidTxnState)),
            (Empty, false, Err(TxnError::InvalidTxnState)),
            (CompleteCommit, true, Ok(())),
            (CompleteCommit, false, Err(TxnError::InvalidTxnState)),
            (CompleteAbort, false, Ok(())),
            (CompleteAbort, true, Err(TxnError::InvalidTxnState)),
        ];
        for (state, commit, want) in table {
            let mut h = Harness::new();
            let p = h.init("x").unwrap();
            if *state != Empty {
                h.add("x", p, &[0]).unwrap();
                h.end("x", p, *state == CompleteCommit).unwrap();
            }
            assert_eq!(h.state("x"), *state);
            assert_eq!(h.end("x", p, *commit), *want, "{state:?} commit={commit}");
        }
    }

    #[test]
    fn prepare_states_refuse_everything_until_markers_land() {
        let mut h = Harness::new();
        let p = h.init("a").unwrap();
        h.add("a", p, &[0]).unwrap();
        // EndTxn, without performing the markers.
        let out = h.core.handle(
            h.now_ms,
            Input::EndTxn(
                7,
                EndTxnRequest {
                    transactional_id: "a".into(),
                    producer_id: p.0,
                    producer_epoch: p.1,
                    commit: false,
                },
            ),
        );
        let Some(Output::Write { write_id, .. }) = out.first() else {
            panic!("{out:?}")
        };
        let out = h.core.handle(
            h.now_ms,
            Input::WriteDone {
                write_id: *write_id,
                result: Ok(()),
            },
        );
        assert!(
            matches!(out[0], Output::WriteMarkers { commit: false, .. }),
            "{out:?}"
        );
        assert_eq!(h.state("a"), TxnState::PrepareAbort);
        assert_eq!(h.end("a", p, false), Err(TxnError::ConcurrentTransactions));
        assert_eq!(h.end("a", p, true), Err(TxnError::InvalidTxnState));
        assert_eq!(h.add("a", p, &[1]), Err(TxnError::ConcurrentTransactions));
        assert_eq!(h.init("a"), Err(TxnError::ConcurrentTransactions));
        // A failed marker write is asked for again.
        let out = h.core.handle(
            h.now_ms,
            Input::MarkersFailed {
                transactional_id: "a".into(),
                producer_id: p.0,
                producer_epoch: p.1,
                partitions: vec![TxnPartition::new("t", 0)],
            },
        );
        assert!(
            matches!(&out[..], [Output::WriteMarkers { commit: false, .. }]),
            "{out:?}"
        );
        h.settle(Input::MarkersWritten {
            transactional_id: "a".into(),
            producer_id: p.0,
            producer_epoch: p.1,
            partitions: vec![TxnPartition::new("t", 0)],
        });
        assert_eq!(h.state("a"), TxnState::CompleteAbort);
    }

    #[test]
    fn new_incarnation_fences_and_aborts_the_open_transaction() {
        let mut h = Harness::new();
        let old = h.init("a").unwrap();
        h.add("a", old, &[0, 1]).unwrap();
        // The new producer is told to retry while the old transaction is aborted at epoch 1.
        assert_eq!(h.init("a"), Err(TxnError::ConcurrentTransactions));
        assert_eq!(h.markers.len(), 2);
        assert!(h.markers.iter().all(|m| m.1 == 1 && !m.2));
        let new = h.init("a").unwrap();
        assert_eq!(new, (old.0, 2));
        for r in [
            h.add("a", old, &[0]),
            h.end("a", old, true),
            h.end("a", old, false),
        ] {
            assert_eq!(r, Err(TxnError::ProducerFenced));
        }
        assert_eq!(
            h.add("a", (old.0 + 1, 2), &[0]),
            Err(TxnError::InvalidProducerIdMapping)
        );
        h.add("a", new, &[0]).unwrap();
        h.end("a", new, true).unwrap();
    }

    #[test]
    fn timeout_aborts_and_fences_the_producer() {
        let mut h = Harness::new();
        let p = h.init("a").unwrap();
        h.add("a", p, &[0]).unwrap();
        h.now_ms += TIMEOUT_MS - 1;
        assert!(h.settle(Input::Tick).is_empty());
        assert_eq!(h.state("a"), TxnState::Ongoing);
        h.now_ms += 1;
        h.settle(Input::Tick);
        assert_eq!(h.state("a"), TxnState::CompleteAbort);
        assert_eq!(h.markers, [(p.0, 1, false, TxnPartition::new("t", 0))]);
        assert_eq!(h.end("a", p, true), Err(TxnError::ProducerFenced));
        // KIP-360: the old producer cannot bump its way back in.
        assert_eq!(
            h.init_expecting("a", Some(p)),
            Err(TxnError::ProducerFenced)
        );
        assert_eq!(h.init("a").unwrap(), (p.0, 2));
    }

    #[test]
    fn state_changes_wait_for_the_write_and_a_failed_write_changes_nothing() {
        let mut h = Harness::new();
        let p = h.init("a").unwrap();
        let add = AddPartitionsRequest {
            transactional_id: "a".into(),
            producer_id: p.0,
            producer_epoch: p.1,
            partitions: vec![TxnPartition::new("t", 0)],
            verify_only: false,
        };
        let out = h
            .core
            .handle(h.now_ms, Input::AddPartitions(1, add.clone()));
        let [Output::Write { write_id, .. }] = out.as_slice() else {
            panic!("{out:?}")
        };
        // Not visible yet, and nothing else may change meanwhile.
        assert_eq!(h.state("a"), TxnState::Empty);
        assert_eq!(h.end("a", p, true), Err(TxnError::ConcurrentTransactions));
        assert_eq!(h.init("a"), Err(TxnError::ConcurrentTransactions));
        let out = h.core.handle(
            h.now_ms,
            Input::WriteDone {
                write_id: *write_id,
                result: Err(TxnError::NotCoordinator),
            },
        );
        assert_eq!(
            out,
            [Output::Reply(
                1,
                Reply::AddPartitions(Err(TxnError::NotCoordinator))
            )]
        );
        assert_eq!(h.state("a"), TxnState::Empty);
        // A late duplicate completion is ignored.
        assert!(h
            .core
            .handle(
                h.now_ms,
                Input::WriteDone {
                    write_id: *write_id,
                    result: Ok(())
                }
            )
            .is_empty());
        assert_eq!(h.state("a"), TxnState::Empty);
    }

    #[test]
    fn verify_only_checks_membership_without_changing_state() {
        let mut h = Harness::new();
        let p = h.init("a").unwrap();
        h.add("a", p, &[0]).unwrap();
        let verify = |pid, epoch| {
            Input::AddPartitions(
                9,
                AddPartitionsRequest {
                    transactional_id: "a".into(),
                    producer_id: pid,
                    producer_epoch: epoch,
                    partitions: vec![TxnPartition::new("t", 0), TxnPartition::new("t", 1)],
                    verify_only: true,
                },
            )
        };
        let logged = h.log.len();
        assert_eq!(
            h.settle(verify(p.0, p.1)),
            [Reply::Verify(vec![
                (TxnPartition::new("t", 0), None),
                (TxnPartition::new("t", 1), Some(TxnError::InvalidTxnState)),
            ])]
        );
        let Ok::<[Reply; 1], _>([Reply::Verify(r)]) = h.settle(verify(p.0, p.1 - 1)).try_into()
        else {
            panic!()
        };
        assert!(r.iter().all(|(_, e)| *e == Some(TxnError::ProducerFenced)));
        assert_eq!(h.log.len(), logged);
        h.end("a", p, true).unwrap();
        let Ok::<[Reply; 1], _>([Reply::Verify(r)]) = h.settle(verify(p.0, p.1)).try_into() else {
            panic!()
        };
        assert!(r.iter().all(|(_, e)| *e == Some(TxnError::InvalidTxnState)));
    }

    #[test]
    fn exhausted_epoch_moves_to_a_new_producer_id() {
        let mut h = Harness::new();
        let p = h.init("a").unwrap();
        // Fast-forward the epoch through the log, as a long-lived id would have it.
        let mut m = h.core.transaction("a").unwrap().clone();
        m.producer_epoch = PRODUCER_EPOCH_MAX - 1;
        let (core, _) = TxnCoordinatorCore::load(TxnConfig::default(), 2, [("a".into(), Some(m))]);
        h.core = core;
        let last = h
            .init_expecting("a", Some((p.0, PRODUCER_EPOCH_MAX - 1)))
            .unwrap();
        assert_eq!(last, (p.0, PRODUCER_EPOCH_MAX));
        // KIP-360: a retry of that bump gets the same answer.
        assert_eq!(
            h.init_expecting("a", Some((p.0, PRODUCER_EPOCH_MAX - 1))),
            Ok(last)
        );
        let rotated = h.init_expecting("a", Some(last)).unwrap();
        assert_eq!(rotated, (h.next_pid - 1, 0));
        assert_ne!(rotated.0, p.0);
        // A retry of the rotation too.
        assert_eq!(h.init_expecting("a", Some(last)), Ok(rotated));
        assert_eq!(
            h.add("a", last, &[0]),
            Err(TxnError::InvalidProducerIdMapping)
        );
        h.add("a", rotated, &[0]).unwrap();
    }

    #[test]
    fn load_finishes_decided_transactions_and_keeps_open_ones_timing() {
        let mut h = Harness::new();
        let a = h.init("a").unwrap();
        let b = h.init("b").unwrap();
        h.add("a", a, &[0, 1]).unwrap();
        h.add("b", b, &[2]).unwrap();
        // "a" decided to commit, but its markers were never confirmed.
        let mut decided = h.core.transaction("a").unwrap().clone();
        decided.state = TxnState::PrepareCommit;
        h.log.push(("a".into(), Some(decided)));
        let (core, out) = TxnCoordinatorCore::load(TxnConfig::default(), 5, h.log.clone());
        assert_eq!(
            out,
            [Output::WriteMarkers {
                transactional_id: "a".into(),
                producer_id: a.0,
                producer_epoch: a.1,
                coordinator_epoch: 5,
                commit: true,
                partitions: vec![TxnPartition::new("t", 0), TxnPartition::new("t", 1)],
            }]
        );
        h.core = core;
        assert_eq!(h.end("a", a, false), Err(TxnError::InvalidTxnState));
        h.settle(Input::MarkersWritten {
            transactional_id: "a".into(),
            producer_id: a.0,
            producer_epoch: a.1,
            partitions: vec![TxnPartition::new("t", 0), TxnPartition::new("t", 1)],
        });
        assert_eq!(h.state("a"), TxnState::CompleteCommit);
        // "b" is still open and its timeout counts from its start before the failover.
        assert_eq!(h.state("b"), TxnState::Ongoing);
        h.now_ms += TIMEOUT_MS;
        h.settle(Input::Tick);
        assert_eq!(h.state("b"), TxnState::CompleteAbort);
    }

    #[test]
    fn idle_ids_expire_and_bad_timeouts_are_refused() {
        let mut h = Harness::new();
        h.init("a").unwrap();
        h.now_ms += TxnConfig::default().id_expiration_ms;
        h.settle(Input::Tick);
        assert!(h.core.transaction("a").is_none());
        assert_eq!(h.log.last(), Some(&("a".into(), None)));
        let r = h.settle(Input::InitProducerId(
            1,
            InitProducerIdRequest {
                transactional_id: "b".into(),
                timeout_ms: TxnConfig::default().max_timeout_ms + 1,
                expected: None,
            },
        ));
        assert_eq!(
            r,
            [Reply::InitProducerId(Err(
                TxnError::InvalidTransactionTimeout
            ))]
        );
    }
}
