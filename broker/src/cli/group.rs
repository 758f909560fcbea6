//! `rivulet group list|describe|delete|reset-offsets`: consumer group administration through
//! librdkafka, i.e. with the same requests any Kafka client sends: ListGroups + DescribeGroups
//! (`fetch_group_list`), OffsetFetch (`committed_offsets` of a consumer that carries the group
//! id but never subscribes, so it never joins the group), ListOffsets (`fetch_watermarks`),
//! DeleteGroups (admin client) and OffsetCommit (`commit` from that same non-member consumer,
//! which the coordinator accepts only while the group has no active members).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use clap::Subcommand;
use rdkafka::{
    admin::{AdminClient, AdminOptions},
    consumer::{BaseConsumer, CommitMode, Consumer},
    error::{KafkaError, RDKafkaErrorCode},
    groups::GroupInfo,
    Offset, TopicPartitionList,
};

use super::common::{
    check_partition, client_creation_error, existing_topic, fetch_metadata, metadata_client, outln,
    render_table, run_blocking, serve_events, unreachable_error, validate_topic_name, write_stdout,
    CliContext, ClientArgs, CONNECT_TIMEOUT,
};
use crate::consumer_protocol;
use rivulet_cluster::policy::is_internal;

/// How long the broker may take to carry out a DeleteGroups request.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an OffsetFetch / OffsetCommit may take (coordinator lookup included).
const OFFSETS_TIMEOUT: Duration = Duration::from_secs(30);

/// `rivulet group ...`
#[derive(Debug, clap::Args)]
pub struct GroupArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: GroupCommand,
}

/// The group subcommands.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List the consumer groups of the cluster (state, protocol, member count).
    List,
    /// Show a group's members and, per partition, the committed offset, log end offset, lag
    /// and owning member.
    Describe {
        /// Group id.
        group: String,
    },
    /// Delete a group and its committed offsets (the group must have no active members).
    Delete {
        /// Group id.
        group: String,
    },
    /// Move a group's committed offsets on a topic. Prints the plan; changes nothing unless
    /// --execute is given. The group's consumers must be stopped first.
    ResetOffsets(ResetArgs),
}

/// `rivulet group reset-offsets`
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("target")
        .required(true)
        .args(["to_earliest", "to_latest", "to_offset", "shift_by"])
))]
pub struct ResetArgs {
    /// Group id.
    pub group: String,
    /// Topic whose offsets to move.
    #[arg(long, short = 't')]
    pub topic: String,
    /// Move to the first retained record of each partition.
    #[arg(long)]
    pub to_earliest: bool,
    /// Move to the end of each partition (skip everything not yet consumed).
    #[arg(long)]
    pub to_latest: bool,
    /// Move to this offset (clamped to what each partition holds).
    #[arg(long, value_name = "OFFSET")]
    pub to_offset: Option<i64>,
    /// Move by N records from the committed offset (negative: back, to re-read).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub shift_by: Option<i64>,
    /// Only this partition (default: every partition of the topic).
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
    /// Commit the new offsets (without it, only print what would change).
    #[arg(long)]
    pub execute: bool,
}

impl ResetArgs {
    fn target(&self) -> ResetTo {
        if self.to_earliest {
            ResetTo::Earliest
        } else if self.to_latest {
            ResetTo::Latest
        } else if let Some(o) = self.to_offset {
            ResetTo::Offset(o)
        } else {
            ResetTo::ShiftBy(self.shift_by.unwrap_or(0))
        }
    }
}

/// Where `reset-offsets` moves each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResetTo {
    Earliest,
    Latest,
    Offset(i64),
    ShiftBy(i64),
}

/// Runs a group subcommand.
pub(crate) async fn run(args: GroupArgs) -> anyhow::Result<()> {
    let client = args.client;
    match args.command {
        GroupCommand::List => run_blocking(move || list(&client)).await,
        GroupCommand::Describe { group } => run_blocking(move || describe(&client, &group)).await,
        GroupCommand::Delete { group } => delete(&client, &group).await,
        GroupCommand::ResetOffsets(reset) => {
            run_blocking(move || reset_offsets(&client, &reset)).await
        }
    }
}

/// Group ids are free-form in Kafka but cannot be empty.
fn validate_group_id(group: &str) -> anyhow::Result<()> {
    if group.is_empty() {
        bail!("the group id is empty: give the group.id your consumers use");
    }
    Ok(())
}

/// A consumer that carries `group.id` but never subscribes: it reads and commits the group's
/// offsets without joining the group.
fn group_client(client: &ClientArgs, group: &str) -> anyhow::Result<BaseConsumer<CliContext>> {
    client
        .config("rivulet-cli")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("allow.auto.create.topics", "false")
        .create_with_context(CliContext::default())
        .map_err(client_creation_error)
}

/// A failed group request: unreachable broker, or a coordinator error with what to do.
fn request_error(
    client: &ClientArgs,
    consumer: &BaseConsumer<CliContext>,
    what: &str,
    err: KafkaError,
) -> anyhow::Error {
    serve_events(consumer);
    match err.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::RequestTimedOut,
        ) => unreachable_error(&client.bootstrap, consumer.context(), &err),
        Some(
            RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::CoordinatorLoadInProgress,
        ) => anyhow!(
            "{what}: the group coordinator is not available right now ({err}); try again in a \
             few seconds (`rivulet cluster status` shows whether a node is down)"
        ),
        _ => anyhow!(
            "{what} failed: {err}; is the broker at {} healthy?",
            client.bootstrap
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// list
// ---------------------------------------------------------------------------------------------

fn list(client: &ClientArgs) -> anyhow::Result<()> {
    let consumer = metadata_client(client)?;
    let groups = consumer
        .fetch_group_list(None, CONNECT_TIMEOUT)
        .map_err(|e| request_error(client, &consumer, "listing groups", e))?;
    let mut groups: Vec<&GroupInfo> = groups.groups().iter().collect();
    if groups.is_empty() {
        outln!(
            "No consumer groups yet. A group appears when a consumer with a `group.id` joins or \
             commits offsets."
        );
        return Ok(());
    }
    groups.sort_by(|a, b| a.name().cmp(b.name()));
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                g.name().to_string(),
                or_dash(g.state()),
                or_dash(g.protocol_type()),
                or_dash(g.protocol()),
                g.members().len().to_string(),
            ]
        })
        .collect();
    write_stdout(&render_table(
        &["GROUP", "STATE", "PROTOCOL-TYPE", "PROTOCOL", "MEMBERS"],
        &rows,
    ));
    Ok(())
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// describe
// ---------------------------------------------------------------------------------------------

/// A member as `describe` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberView {
    pub(crate) member_id: String,
    pub(crate) client_id: String,
    pub(crate) host: String,
    /// Assigned partitions, decoded from the consumer protocol assignment.
    pub(crate) partitions: Vec<(String, i32)>,
    /// Why the assignment could not be read, if it could not.
    pub(crate) problem: Option<String>,
}

fn member_view(m: &rdkafka::groups::GroupMemberInfo, consumer_protocol: bool) -> MemberView {
    let (partitions, problem) = match m.assignment() {
        _ if !consumer_protocol => (Vec::new(), Some("not a consumer-protocol member".into())),
        None => (Vec::new(), None),
        Some(bytes) => match consumer_protocol::decode_assignment(bytes) {
            Ok(a) => (
                a.partitions
                    .into_iter()
                    .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
                    .collect(),
                None,
            ),
            Err(e) => (Vec::new(), Some(e.to_string())),
        },
    };
    MemberView {
        member_id: m.id().to_string(),
        client_id: m.client_id().to_string(),
        host: m.client_host().to_string(),
        partitions,
        problem,
    }
}

/// One line of the partition table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionView {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) committed: Option<i64>,
    pub(crate) log_end: Option<i64>,
    /// Index into the members.
    pub(crate) owner: Option<usize>,
}

impl PartitionView {
    /// Records the group has not consumed yet; unknown without a committed offset.
    pub(crate) fn lag(&self) -> Option<i64> {
        match (self.committed, self.log_end) {
            (Some(c), Some(e)) => Some((e - c).max(0)),
            _ => None,
        }
    }
}

/// The partitions to show: every partition a member owns and every partition with a committed
/// offset, sorted by topic and partition.
pub(crate) fn partition_views(
    members: &[MemberView],
    committed: &BTreeMap<(String, i32), i64>,
    log_ends: &BTreeMap<(String, i32), i64>,
) -> Vec<PartitionView> {
    let mut keys: BTreeSet<(String, i32)> = committed.keys().cloned().collect();
    let mut owners: BTreeMap<(String, i32), usize> = BTreeMap::new();
    for (i, m) in members.iter().enumerate() {
        for (t, p) in &m.partitions {
            keys.insert((t.clone(), *p));
            owners.entry((t.clone(), *p)).or_insert(i);
        }
    }
    keys.into_iter()
        .map(|k| PartitionView {
            committed: committed.get(&k).copied(),
            log_end: log_ends.get(&k).copied(),
            owner: owners.get(&k).copied(),
            topic: k.0,
            partition: k.1,
        })
        .collect()
}

fn opt_num(v: Option<i64>) -> String {
    v.map_or_else(|| "-".into(), |x| x.to_string())
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone)]
struct GroupView {
    state: String,
    protocol_type: String,
    protocol: String,
    members: Vec<MemberView>,
}

/// The group as the coordinator describes it, or `None` when no broker lists it.
fn find_group(
    client: &ClientArgs,
    consumer: &BaseConsumer<CliContext>,
    group: &str,
) -> anyhow::Result<Option<GroupView>> {
    let list = consumer
        .fetch_group_list(Some(group), CONNECT_TIMEOUT)
        .map_err(|e| request_error(client, consumer, "describing the group", e))?;
    let Some(g) = list.groups().iter().find(|g| g.name() == group) else {
        return Ok(None);
    };
    if g.state() == "Dead" {
        return Ok(None);
    }
    let consumer_protocol = g.protocol_type() == "consumer" || g.protocol_type().is_empty();
    let members = g
        .members()
        .iter()
        .map(|m| member_view(m, consumer_protocol))
        .collect();
    Ok(Some(GroupView {
        state: g.state().to_string(),
        protocol_type: g.protocol_type().to_string(),
        protocol: g.protocol().to_string(),
        members,
    }))
}

/// Committed offsets of `group` for the given partitions (those without one are left out).
fn committed_offsets(
    client: &ClientArgs,
    group_consumer: &BaseConsumer<CliContext>,
    partitions: &[(String, i32)],
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let mut out = BTreeMap::new();
    if partitions.is_empty() {
        return Ok(out);
    }
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    for (t, p) in partitions {
        tpl.add_partition(t, *p);
    }
    let tpl = group_consumer
        .committed_offsets(tpl, OFFSETS_TIMEOUT)
        .map_err(|e| request_error(client, group_consumer, "reading committed offsets", e))?;
    for e in tpl.elements() {
        if let Offset::Offset(o) = e.offset() {
            out.insert((e.topic().to_string(), e.partition()), o);
        }
    }
    Ok(out)
}

fn describe(client: &ClientArgs, group: &str) -> anyhow::Result<()> {
    validate_group_id(group)?;
    let consumer = metadata_client(client)?;
    let metadata = fetch_metadata(&consumer, &client.bootstrap, None)?;
    let found = find_group(client, &consumer, group)?;

    // Every partition of every topic: the committed offsets tell which ones the group uses.
    let all: Vec<(String, i32)> = metadata
        .topics()
        .iter()
        .filter(|t| !is_internal(t.name()) && t.error().is_none())
        .flat_map(|t| {
            t.partitions()
                .iter()
                .map(|p| (t.name().to_string(), p.id()))
        })
        .collect();
    let group_consumer = group_client(client, group)?;
    let committed = committed_offsets(client, &group_consumer, &all)?;

    let GroupView {
        state,
        protocol_type,
        protocol,
        members,
    } = match found {
        Some(f) => f,
        None if committed.is_empty() => bail!(
            "group `{group}` does not exist (no member and no committed offset): list groups \
             with `rivulet group list`"
        ),
        None => GroupView {
            state: "Empty".into(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        },
    };

    let mut problems = Vec::new();
    let wanted: BTreeSet<(String, i32)> = committed
        .keys()
        .cloned()
        .chain(members.iter().flat_map(|m| m.partitions.iter().cloned()))
        .collect();
    let mut log_ends = BTreeMap::new();
    for (t, p) in &wanted {
        match consumer.fetch_watermarks(t, *p, CONNECT_TIMEOUT) {
            Ok((_, high)) => {
                log_ends.insert((t.clone(), *p), high);
            }
            Err(e) => problems.push(format!("log end of {t}/{p}: {e}")),
        }
    }
    let views = partition_views(&members, &committed, &log_ends);

    outln!("Group:    {group}");
    outln!("State:    {state}");
    if !protocol_type.is_empty() || !protocol.is_empty() {
        outln!(
            "Protocol: {} ({})",
            or_dash(&protocol),
            or_dash(&protocol_type)
        );
    }
    outln!("Members:  {}", members.len());
    outln!();
    if !members.is_empty() {
        let rows: Vec<Vec<String>> = members
            .iter()
            .map(|m| {
                let assigned = match &m.problem {
                    Some(p) => format!("? ({p})"),
                    None => m.partitions.len().to_string(),
                };
                vec![
                    m.member_id.clone(),
                    or_dash(&m.client_id),
                    or_dash(&m.host),
                    assigned,
                ]
            })
            .collect();
        write_stdout(&render_table(
            &["MEMBER", "CLIENT-ID", "HOST", "PARTITIONS"],
            &rows,
        ));
        outln!();
    }
    if views.is_empty() {
        outln!("No partitions: the group has no assignment and no committed offset yet.");
    } else {
        let mut total_lag = 0i64;
        let rows: Vec<Vec<String>> = views
            .iter()
            .map(|v| {
                total_lag += v.lag().unwrap_or(0);
                let owner = v.owner.map(|i| &members[i]);
                vec![
                    v.topic.clone(),
                    v.partition.to_string(),
                    opt_num(v.committed),
                    opt_num(v.log_end),
                    opt_num(v.lag()),
                    owner.map_or_else(|| "-".into(), |m| m.member_id.clone()),
                    owner.map_or_else(|| "-".into(), |m| or_dash(&m.host)),
                    owner.map_or_else(|| "-".into(), |m| or_dash(&m.client_id)),
                ]
            })
            .collect();
        write_stdout(&render_table(
            &[
                "TOPIC",
                "PARTITION",
                "COMMITTED",
                "LOG-END",
                "LAG",
                "MEMBER",
                "HOST",
                "CLIENT-ID",
            ],
            &rows,
        ));
        outln!(
            "(COMMITTED is the next offset the group will read; LAG = LOG-END - COMMITTED; \
             {total_lag} records behind in all.)"
        );
    }
    if !problems.is_empty() {
        bail!(
            "part of the description is missing ({}); try again in a moment",
            problems.join("; ")
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// delete
// ---------------------------------------------------------------------------------------------

async fn delete(client: &ClientArgs, group: &str) -> anyhow::Result<()> {
    validate_group_id(group)?;
    fetch_metadata(&metadata_client(client)?, &client.bootstrap, None)?;
    let admin: AdminClient<CliContext> = client
        .config("rivulet-cli")
        .create_with_context(CliContext::default())
        .map_err(client_creation_error)?;
    let opts = AdminOptions::new()
        .operation_timeout(Some(ADMIN_TIMEOUT))
        .request_timeout(Some(ADMIN_TIMEOUT));
    let results = admin.delete_groups(&[group], &opts).await.map_err(|e| {
        anyhow!(
            "the delete request failed: {e}; is the broker at {} healthy?",
            client.bootstrap
        )
    })?;
    for result in results {
        match result {
            Ok(name) => outln!("Deleted group `{name}` and its committed offsets."),
            Err((name, code)) => return Err(delete_error(&name, code)),
        }
    }
    Ok(())
}

fn delete_error(group: &str, code: RDKafkaErrorCode) -> anyhow::Error {
    match code {
        RDKafkaErrorCode::NonEmptyGroup => anyhow!(
            "group `{group}` still has active members: stop its consumers first (`rivulet group \
             describe {group}` shows them), then delete it"
        ),
        RDKafkaErrorCode::GroupIdNotFound => {
            anyhow!("group `{group}` does not exist: list groups with `rivulet group list`")
        }
        RDKafkaErrorCode::InvalidGroupId => anyhow!("`{group}` is not a valid group id"),
        RDKafkaErrorCode::CoordinatorNotAvailable
        | RDKafkaErrorCode::NotCoordinator
        | RDKafkaErrorCode::CoordinatorLoadInProgress => anyhow!(
            "the coordinator of group `{group}` is not available right now ({code}); try again \
             in a few seconds"
        ),
        other => anyhow!("could not delete group `{group}`: {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// reset-offsets
// ---------------------------------------------------------------------------------------------

/// One partition of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlanRow {
    pub(crate) partition: i32,
    pub(crate) current: Option<i64>,
    pub(crate) new: i64,
    pub(crate) log_start: i64,
    pub(crate) log_end: i64,
    /// Set when the requested offset was outside the log and was clamped.
    pub(crate) note: Option<String>,
}

/// Where one partition goes. Offsets outside `[log_start, log_end]` are clamped to the nearest
/// end, as Kafka's tool does.
pub(crate) fn plan_partition(
    to: ResetTo,
    partition: i32,
    current: Option<i64>,
    log_start: i64,
    log_end: i64,
) -> Result<PlanRow, String> {
    let wanted = match to {
        ResetTo::Earliest => log_start,
        ResetTo::Latest => log_end,
        ResetTo::Offset(o) => o,
        ResetTo::ShiftBy(n) => match current {
            Some(c) => c.saturating_add(n),
            None => {
                return Err(format!(
                    "partition {partition} has no committed offset to shift from; use \
                     --to-earliest, --to-latest or --to-offset for it"
                ))
            }
        },
    };
    let new = wanted.clamp(log_start, log_end.max(log_start));
    let note = (new != wanted).then(|| {
        if wanted < log_start {
            format!("{wanted} is before the log start")
        } else {
            format!("{wanted} is past the log end")
        }
    });
    Ok(PlanRow {
        partition,
        current,
        new,
        log_start,
        log_end,
        note,
    })
}

/// True for the errors a coordinator gives a commit from outside a group that has members.
fn is_active_group_error(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::UnknownMemberId
            | RDKafkaErrorCode::IllegalGeneration
            | RDKafkaErrorCode::RebalanceInProgress
            | RDKafkaErrorCode::StaleMemberEpoch
            | RDKafkaErrorCode::FencedMemberEpoch
    )
}

fn active_group_error(group: &str) -> anyhow::Error {
    anyhow!(
        "group `{group}` has active members, and offsets can only be reset while the group is \
         inactive: stop its consumers first (`rivulet group describe {group}` shows them), then \
         run this again"
    )
}

fn reset_offsets(client: &ClientArgs, args: &ResetArgs) -> anyhow::Result<()> {
    let group = args.group.as_str();
    validate_group_id(group)?;
    validate_topic_name(&args.topic)?;
    let consumer = metadata_client(client)?;
    let metadata = fetch_metadata(&consumer, &client.bootstrap, Some(&args.topic))?;
    let topic = existing_topic(&metadata, &args.topic)?;
    if is_internal(topic.name()) {
        bail!("{} is internal: its offsets cannot be reset", topic.name());
    }
    let partitions: Vec<i32> = match args.partition {
        Some(p) => {
            check_partition(topic, p)?;
            vec![p]
        }
        None => {
            let mut ids: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
            ids.sort_unstable();
            ids
        }
    };
    let group_consumer = group_client(client, group)?;
    let keys: Vec<(String, i32)> = partitions
        .iter()
        .map(|p| (args.topic.clone(), *p))
        .collect();
    let committed = committed_offsets(client, &group_consumer, &keys)?;

    let to = args.target();
    let mut plan = Vec::with_capacity(partitions.len());
    let mut refused = Vec::new();
    for p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(&args.topic, *p, CONNECT_TIMEOUT)
            .with_context(|| {
                format!(
                    "could not read the offsets of {}/{p}; try again in a moment",
                    args.topic
                )
            })?;
        let current = committed.get(&(args.topic.clone(), *p)).copied();
        match plan_partition(to, *p, current, low, high) {
            Ok(row) => plan.push(row),
            Err(e) => refused.push(e),
        }
    }
    if !refused.is_empty() {
        bail!("{}", refused.join("\n"));
    }

    let rows: Vec<Vec<String>> = plan
        .iter()
        .map(|r| {
            vec![
                args.topic.clone(),
                r.partition.to_string(),
                opt_num(r.current),
                r.new.to_string(),
                r.log_start.to_string(),
                r.log_end.to_string(),
                r.note
                    .clone()
                    .map_or_else(String::new, |n| format!("clamped: {n}")),
            ]
        })
        .collect();
    write_stdout(&render_table(
        &[
            "TOPIC",
            "PARTITION",
            "CURRENT",
            "NEW",
            "LOG-START",
            "LOG-END",
            "NOTE",
        ],
        &rows,
    ));
    if !args.execute {
        outln!(
            "Dry run: nothing was changed. Run again with --execute to commit these offsets for \
             group `{group}`."
        );
        return Ok(());
    }

    // The coordinator refuses the commit while the group has members; say so before trying.
    if let Some(g) = find_group(client, &consumer, group)? {
        if !g.members.is_empty() {
            return Err(active_group_error(group));
        }
    }
    let mut tpl = TopicPartitionList::with_capacity(plan.len());
    for r in &plan {
        tpl.add_partition_offset(&args.topic, r.partition, Offset::Offset(r.new))
            .context("could not build the offset list")?;
    }
    if let Err(e) = group_consumer.commit(&tpl, CommitMode::Sync) {
        return Err(match e.rdkafka_error_code() {
            Some(code) if is_active_group_error(code) => active_group_error(group),
            _ => request_error(client, &group_consumer, "committing the new offsets", e),
        });
    }
    // librdkafka reports per-partition commit errors only in its callbacks: read back instead.
    let now = committed_offsets(client, &group_consumer, &keys)?;
    let wrong: Vec<String> = plan
        .iter()
        .filter(|r| now.get(&(args.topic.clone(), r.partition)) != Some(&r.new))
        .map(|r| {
            format!(
                "{}/{}: committed {} instead of {}",
                args.topic,
                r.partition,
                opt_num(now.get(&(args.topic.clone(), r.partition)).copied()),
                r.new
            )
        })
        .collect();
    if !wrong.is_empty() {
        bail!(
            "the coordinator did not take every new offset ({}); if the group's consumers are \
             running, stop them and run this again",
            wrong.join("; ")
        );
    }
    outln!(
        "Committed new offsets for group `{group}` on {} partition(s) of `{}`.",
        plan.len(),
        args.topic
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, parts: &[(&str, i32)]) -> MemberView {
        MemberView {
            member_id: id.into(),
            client_id: "c".into(),
            host: "/127.0.0.1".into(),
            partitions: parts.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
            problem: None,
        }
    }

    fn key(t: &str, p: i32) -> (String, i32) {
        (t.to_string(), p)
    }

    #[test]
    fn partitions_union_members_and_committed_offsets() {
        let members = vec![member("m1", &[("a", 0)]), member("m2", &[("a", 1)])];
        let committed = BTreeMap::from([(key("a", 0), 5), (key("b", 0), 2)]);
        let ends = BTreeMap::from([(key("a", 0), 9), (key("a", 1), 3), (key("b", 0), 2)]);
        let views = partition_views(&members, &committed, &ends);
        assert_eq!(views.len(), 3);
        assert_eq!(
            (views[0].owner, views[0].lag()),
            (Some(0), Some(4)),
            "a/0 owned by m1, 4 behind"
        );
        assert_eq!(
            (views[1].owner, views[1].committed, views[1].lag()),
            (Some(1), None, None),
            "a/1: no commit yet, lag unknown"
        );
        assert_eq!(
            (views[2].owner, views[2].lag()),
            (None, Some(0)),
            "b/0: offsets only"
        );
    }

    #[test]
    fn plans_clamp_to_the_log() {
        let row = |to, cur| plan_partition(to, 0, cur, 10, 100);
        assert_eq!(row(ResetTo::Earliest, Some(50)).unwrap().new, 10);
        assert_eq!(row(ResetTo::Latest, None).unwrap().new, 100);
        assert_eq!(row(ResetTo::Offset(42), None).unwrap().new, 42);
        let r = row(ResetTo::Offset(5), None).unwrap();
        assert_eq!(r.new, 10);
        assert!(r.note.is_some());
        assert_eq!(row(ResetTo::Offset(500), None).unwrap().new, 100);
        assert_eq!(row(ResetTo::ShiftBy(-20), Some(50)).unwrap().new, 30);
        assert_eq!(row(ResetTo::ShiftBy(-90), Some(50)).unwrap().new, 10);
        assert_eq!(row(ResetTo::ShiftBy(i64::MAX), Some(50)).unwrap().new, 100);
        assert!(row(ResetTo::ShiftBy(1), None).is_err());
        // An empty log: everything lands on its one offset.
        assert_eq!(
            plan_partition(ResetTo::Latest, 0, None, 7, 7).unwrap().new,
            7
        );
    }

    #[test]
    fn commit_refusals_that_mean_active_members() {
        assert!(is_active_group_error(RDKafkaErrorCode::UnknownMemberId));
        assert!(is_active_group_error(RDKafkaErrorCode::IllegalGeneration));
        assert!(is_active_group_error(RDKafkaErrorCode::StaleMemberEpoch));
        assert!(!is_active_group_error(RDKafkaErrorCode::NotCoordinator));
        let msg = active_group_error("g").to_string();
        assert!(msg.contains("stop its consumers"), "{msg}");
        let msg = delete_error("g", RDKafkaErrorCode::NonEmptyGroup).to_string();
        assert!(msg.contains("stop its consumers"), "{msg}");
    }
}
