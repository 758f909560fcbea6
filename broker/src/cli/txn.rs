//! `rivulet txn list|describe`: the transactions the coordinators hold, through the Kafka
//! protocol itself (librdkafka has no ListTransactions / DescribeTransactions), as Kafka's
//! `kafka-transactions.sh` asks for them:
//!
//! - `list`: Metadata for the broker list, then ListTransactions to every broker (each answers
//!   for the coordinators it hosts), merged.
//! - `describe ID`: FindCoordinator (key type 1) for the id, then DescribeTransactions to that
//!   broker.

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use clap::Subcommand;
use kafka_protocol::messages::describe_transactions_response::TransactionState as DescribedTxn;
use kafka_protocol::messages::{
    DescribeTransactionsRequest, FindCoordinatorRequest, ListTransactionsRequest, MetadataRequest,
    ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::cluster::{connect_first, error_name, KafkaConnection};
use super::common::{outln, render_table, write_stdout, ClientArgs};

/// Kafka's COORDINATOR_LOAD_IN_PROGRESS / COORDINATOR_NOT_AVAILABLE / NOT_COORDINATOR: the
/// answer changes within seconds, so these are retried.
const RETRIABLE: [i16; 3] = [14, 15, 16];
/// How many times a retriable answer is retried, and the pause between tries.
const RETRIES_MAX: u32 = 20;
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// `rivulet txn ...`
#[derive(Debug, clap::Args)]
pub struct TxnArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: TxnCommand,
}

/// The txn subcommands.
#[derive(Debug, Subcommand)]
pub enum TxnCommand {
    /// List the transactional ids of every coordinator (id, producer id, state, coordinator).
    List {
        /// Only ids in this state (Empty, Ongoing, PrepareCommit, PrepareAbort,
        /// CompleteCommit, CompleteAbort); may be repeated.
        #[arg(long, value_name = "STATE")]
        state: Vec<String>,
        /// Only ids with this producer id; may be repeated.
        #[arg(long, value_name = "ID")]
        producer_id: Vec<i64>,
        /// Only transactions open longer than this many milliseconds (hanging ones).
        #[arg(long, value_name = "MS")]
        duration_ms: Option<i64>,
    },
    /// Show one transactional id: state, producer id and epoch, timeout, how long the open
    /// transaction has run and its partitions.
    Describe {
        /// Transactional id.
        transactional_id: String,
    },
}

/// Runs a txn subcommand.
pub(crate) async fn run(args: TxnArgs) -> anyhow::Result<()> {
    match args.command {
        TxnCommand::List {
            state,
            producer_id,
            duration_ms,
        } => list(&args.client, &state, &producer_id, duration_ms).await,
        TxnCommand::Describe { transactional_id } => {
            describe(&args.client, &transactional_id).await
        }
    }
}

/// One row of `txn list`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Listed {
    transactional_id: String,
    producer_id: i64,
    state: String,
    coordinator: i32,
}

async fn list(
    client: &ClientArgs,
    states: &[String],
    producer_ids: &[i64],
    duration_ms: Option<i64>,
) -> anyhow::Result<()> {
    let (mut conn, addr) = connect_first(&client.bootstrap).await?;
    let mut request = MetadataRequest::default();
    request.topics = Some(Vec::new()); // brokers only
    let metadata = conn
        .send(&request, 12)
        .await
        .with_context(|| format!("Metadata from {addr} failed"))?;
    let mut req = ListTransactionsRequest::default();
    req.state_filters = states
        .iter()
        .map(|s| StrBytes::from_string(s.clone()))
        .collect();
    req.producer_id_filters = producer_ids.iter().map(|p| ProducerId(*p)).collect();
    // v1 carries the duration filter (KIP-994); v0 is enough otherwise.
    let version = if duration_ms.is_some() { 1 } else { 0 };
    req.duration_filter = duration_ms.unwrap_or(-1);

    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut unknown_states = Vec::new();
    for broker in &metadata.brokers {
        let node = broker.node_id.0;
        let at = format!("{}:{}", broker.host, broker.port);
        match list_one(&at, &req, version).await {
            Ok((listed, unknown)) => {
                unknown_states.extend(unknown);
                rows.extend(listed.into_iter().map(|(id, pid, state)| Listed {
                    transactional_id: id,
                    producer_id: pid,
                    state,
                    coordinator: node,
                }));
            }
            Err(e) => failures.push(format!("node {node} at {at}: {e:#}")),
        }
    }
    unknown_states.sort();
    unknown_states.dedup();
    if !unknown_states.is_empty() {
        bail!(
            "unknown transaction state(s): {}; the states are Empty, Ongoing, PrepareCommit, \
             PrepareAbort, CompleteCommit, CompleteAbort",
            unknown_states.join(", ")
        );
    }
    rows.sort();
    if rows.is_empty() && failures.is_empty() {
        outln!(
            "No transactions{}. A transactional id appears once a producer with a \
             `transactional.id` calls init_transactions (and `[transactions] enabled` is set).",
            if states.is_empty() && producer_ids.is_empty() && duration_ms.is_none() {
                ""
            } else {
                " match the filters"
            }
        );
    } else if !rows.is_empty() {
        let table: Vec<Vec<String>> = rows
            .into_iter()
            .map(|r| {
                vec![
                    r.transactional_id,
                    r.producer_id.to_string(),
                    r.state,
                    r.coordinator.to_string(),
                ]
            })
            .collect();
        write_stdout(&render_table(
            &["TRANSACTIONAL ID", "PRODUCER ID", "STATE", "COORDINATOR"],
            &table,
        ));
    }
    if !failures.is_empty() {
        bail!(
            "the list is incomplete: {} (`rivulet cluster status` shows whether a node is down)",
            failures.join("; ")
        );
    }
    Ok(())
}

/// ListTransactions to one broker, retried while its coordinators load.
async fn list_one(
    at: &str,
    req: &ListTransactionsRequest,
    version: i16,
) -> anyhow::Result<(Vec<(String, i64, String)>, Vec<String>)> {
    let (mut conn, _) = connect_first(at).await?;
    for _ in 0..RETRIES_MAX {
        let r = conn.send(req, version).await?;
        if RETRIABLE.contains(&r.error_code) {
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        }
        if r.error_code != 0 {
            bail!("ListTransactions answered {}", error_name(r.error_code));
        }
        let listed = r
            .transaction_states
            .into_iter()
            .map(|t| {
                (
                    t.transactional_id.0.to_string(),
                    t.producer_id.0,
                    t.transaction_state.to_string(),
                )
            })
            .collect();
        let unknown = r
            .unknown_state_filters
            .iter()
            .map(ToString::to_string)
            .collect();
        return Ok((listed, unknown));
    }
    bail!("its transaction coordinators were still loading after {RETRIES_MAX} tries")
}

async fn describe(client: &ClientArgs, transactional_id: &str) -> anyhow::Result<()> {
    if transactional_id.is_empty() {
        bail!("the transactional id is empty: give the transactional.id your producer uses");
    }
    let (mut conn, addr) = connect_first(&client.bootstrap).await?;
    // The coordinator may be loading or moving: look it up again and retry, a bounded number
    // of times, as clients do.
    let mut last = String::new();
    let mut described = None;
    for _ in 0..RETRIES_MAX {
        match describe_once(&mut conn, &addr, transactional_id).await? {
            Ok(found) => {
                described = Some(found);
                break;
            }
            Err(retriable) => {
                last = retriable;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
    let Some((node, at, t)) = described else {
        bail!(
            "no answer for {transactional_id:?} after {RETRIES_MAX} tries ({last}); try again \
             in a few seconds (`rivulet cluster status` shows whether a node is down)"
        );
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let running = if t.transaction_start_time_ms < 0 {
        "-".to_string()
    } else {
        format!(
            "{} ms (started at {} ms since the epoch)",
            (now_ms - t.transaction_start_time_ms).max(0),
            t.transaction_start_time_ms
        )
    };
    let mut partitions: Vec<String> = t
        .topics
        .iter()
        .flat_map(|d| {
            d.partitions
                .iter()
                .map(move |p| format!("{}-{p}", d.topic.0))
        })
        .collect();
    partitions.sort();
    let rows = vec![
        vec!["transactional id".into(), t.transactional_id.0.to_string()],
        vec!["coordinator".into(), format!("node {node} ({at})")],
        vec!["state".into(), t.transaction_state.to_string()],
        vec!["producer id".into(), t.producer_id.0.to_string()],
        vec!["producer epoch".into(), t.producer_epoch.to_string()],
        vec!["timeout".into(), format!("{} ms", t.transaction_timeout_ms)],
        vec!["running for".into(), running],
        vec![
            "partitions".into(),
            if partitions.is_empty() {
                "-".into()
            } else {
                partitions.join(", ")
            },
        ],
    ];
    write_stdout(&render_table(&["FIELD", "VALUE"], &rows));
    Ok(())
}

/// FindCoordinator and DescribeTransactions once: `Ok(Err(why))` when worth retrying.
async fn describe_once(
    conn: &mut KafkaConnection,
    addr: &str,
    transactional_id: &str,
) -> anyhow::Result<Result<(i32, String, DescribedTxn), String>> {
    let mut req = FindCoordinatorRequest::default();
    req.key_type = 1;
    req.key = StrBytes::from_string(transactional_id.to_string());
    let r = conn
        .send(&req, 3)
        .await
        .with_context(|| format!("FindCoordinator at {addr} failed"))?;
    match r.error_code {
        0 => {}
        c if RETRIABLE.contains(&c) => return Ok(Err(error_name(c))),
        // TRANSACTIONAL_ID_AUTHORIZATION_FAILED: transactions are off on this cluster.
        53 => bail!(
            "the cluster does not serve transactions: set `[transactions] enabled = true` (or \
             RIVULET_TRANSACTIONS__ENABLED=true) on its nodes"
        ),
        c => bail!(
            "FindCoordinator for {transactional_id:?} answered {}",
            error_name(c)
        ),
    }
    let (node, at) = (r.node_id.0, format!("{}:{}", r.host, r.port));
    let mut coordinator = KafkaConnection::connect(&at)
        .await
        .map_err(|e| anyhow!("could not reach the coordinator, node {node} at {at}: {e:#}"))?;
    let mut req = DescribeTransactionsRequest::default();
    req.transactional_ids = vec![TransactionalId(StrBytes::from_string(
        transactional_id.to_string(),
    ))];
    let r = coordinator
        .send(&req, 0)
        .await
        .with_context(|| format!("DescribeTransactions at node {node} ({at}) failed"))?;
    let Some(t) = r.transaction_states.into_iter().next() else {
        bail!("DescribeTransactions at node {node} answered with no transaction");
    };
    match t.error_code {
        0 => Ok(Ok((node, at, t))),
        c if RETRIABLE.contains(&c) => Ok(Err(error_name(c))),
        // TRANSACTIONAL_ID_NOT_FOUND
        105 => bail!(
            "no transactional id {transactional_id:?} (it appears once a producer with this \
             `transactional.id` calls init_transactions)"
        ),
        c => bail!("DescribeTransactions answered {}", error_name(c)),
    }
}
