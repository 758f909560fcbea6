//! `rivulet topic create|list|describe|delete`: topic administration through librdkafka's admin
//! client (CreateTopics, DeleteTopics, DescribeConfigs) and metadata/ListOffsets requests.

use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::Subcommand;
use rdkafka::{
    admin::{
        AdminClient, AdminOptions, ConfigSource, NewTopic, ResourceSpecifier, TopicReplication,
    },
    consumer::Consumer,
    error::RDKafkaErrorCode,
    metadata::MetadataTopic,
};

use super::common::{
    client_creation_error, existing_topic, fetch_metadata, metadata_client, outln, parse_key_value,
    render_table, validate_topic_name, write_stdout, CliContext, ClientArgs, CONNECT_TIMEOUT,
    TOPIC_NAME_RULES,
};

/// How long the broker may take to carry out a CreateTopics/DeleteTopics request.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// `rivulet topic ...`
#[derive(Debug, clap::Args)]
pub struct TopicArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: TopicCommand,
}

/// The topic subcommands.
#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List the topics of the cluster.
    List,
    /// Show a topic's partitions (leader, replicas, ISR, offsets) and configs.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Delete a topic and all its records.
    Delete {
        /// Topic name.
        name: String,
    },
}

/// `rivulet topic create`
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Topic name (letters, digits, '.', '_' and '-').
    pub name: String,
    /// Number of partitions.
    #[arg(long, short = 'p', default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,
    /// Number of replicas of each partition (at most the number of brokers).
    #[arg(long, short = 'r', default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub replication_factor: i32,
    /// A topic config, e.g. `--config retention.ms=86400000` (repeatable).
    #[arg(long = "config", short = 'c', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub configs: Vec<(String, String)>,
}

/// Runs a topic subcommand.
pub(crate) async fn run(args: TopicArgs) -> anyhow::Result<()> {
    match args.command {
        TopicCommand::Create(create_args) => create(&args.client, create_args).await,
        TopicCommand::List => list(&args.client),
        TopicCommand::Describe { name } => describe(&args.client, &name).await,
        TopicCommand::Delete { name } => delete(&args.client, &name).await,
    }
}

fn admin_client(client: &ClientArgs) -> anyhow::Result<AdminClient<CliContext>> {
    client
        .config("rivulet-cli")
        .create_with_context(CliContext::default())
        .map_err(client_creation_error)
}

fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .operation_timeout(Some(ADMIN_TIMEOUT))
        .request_timeout(Some(ADMIN_TIMEOUT))
}

async fn create(client: &ClientArgs, args: CreateArgs) -> anyhow::Result<()> {
    validate_topic_name(&args.name)?;
    let metadata = fetch_metadata(&metadata_client(client)?, &client.bootstrap, None)?;
    let admin = admin_client(client)?;
    let brokers = metadata.brokers().len();

    let mut new_topic = NewTopic::new(
        &args.name,
        args.partitions,
        TopicReplication::Fixed(args.replication_factor),
    );
    for (key, value) in &args.configs {
        new_topic = new_topic.set(key, value);
    }
    let results = admin
        .create_topics([&new_topic], &admin_options())
        .await
        .map_err(|e| {
            anyhow!(
                "the create request failed: {e}; is the broker at {} healthy?",
                client.bootstrap
            )
        })?;
    for result in results {
        match result {
            Ok(_) => outln!(
                "Created topic `{}` ({} partition{}, replication factor {}).",
                args.name,
                args.partitions,
                plural(args.partitions as usize),
                args.replication_factor
            ),
            Err((name, code)) => return Err(create_error(&name, code, &args, brokers)),
        }
    }
    Ok(())
}

fn create_error(
    name: &str,
    code: RDKafkaErrorCode,
    args: &CreateArgs,
    brokers: usize,
) -> anyhow::Error {
    match code {
        RDKafkaErrorCode::TopicAlreadyExists => {
            anyhow!("topic `{name}` already exists: see it with `rivulet topic describe {name}`")
        }
        RDKafkaErrorCode::InvalidReplicationFactor => anyhow!(
            "cannot create `{name}` with replication factor {}: the cluster has {brokers} broker{}; \
             use --replication-factor {brokers} or less",
            args.replication_factor,
            plural(brokers)
        ),
        RDKafkaErrorCode::InvalidPartitions => anyhow!(
            "the broker rejected --partitions {} for `{name}`: {code}",
            args.partitions
        ),
        RDKafkaErrorCode::InvalidConfig => anyhow!(
            "the broker rejected a topic config of `{name}` ({code}); check the --config keys and values"
        ),
        RDKafkaErrorCode::InvalidTopic => {
            anyhow!("`{name}` is not a valid topic name: {TOPIC_NAME_RULES}")
        }
        RDKafkaErrorCode::RequestTimedOut | RDKafkaErrorCode::OperationTimedOut => anyhow!(
            "creating `{name}` timed out; it may still appear: check with `rivulet topic describe {name}`"
        ),
        other => anyhow!("could not create topic `{name}`: {other}"),
    }
}

fn list(client: &ClientArgs) -> anyhow::Result<()> {
    let consumer = metadata_client(client)?;
    let metadata = fetch_metadata(&consumer, &client.bootstrap, None)?;
    let mut topics: Vec<&MetadataTopic> = metadata.topics().iter().collect();
    if topics.is_empty() {
        outln!("No topics yet. Create one with `rivulet topic create NAME`.");
        return Ok(());
    }
    topics.sort_by(|a, b| a.name().cmp(b.name()));
    let rows: Vec<Vec<String>> = topics
        .iter()
        .map(|t| {
            let replication = t
                .partitions()
                .iter()
                .map(|p| p.replicas().len())
                .max()
                .unwrap_or(0);
            let status = match t.error() {
                None => String::new(),
                Some(err) => RDKafkaErrorCode::from(err).to_string(),
            };
            vec![
                t.name().to_string(),
                t.partitions().len().to_string(),
                replication.to_string(),
                status,
            ]
        })
        .collect();
    write_stdout(&render_table(
        &["TOPIC", "PARTITIONS", "REPLICATION", "STATUS"],
        &rows,
    ));
    Ok(())
}

async fn describe(client: &ClientArgs, name: &str) -> anyhow::Result<()> {
    validate_topic_name(name)?;
    let consumer = metadata_client(client)?;
    let metadata = fetch_metadata(&consumer, &client.bootstrap, Some(name))?;
    let topic = existing_topic(&metadata, name)?;
    let mut problems = Vec::new();

    let mut partitions: Vec<_> = topic.partitions().iter().collect();
    partitions.sort_by_key(|p| p.id());
    let replication = partitions
        .iter()
        .map(|p| p.replicas().len())
        .max()
        .unwrap_or(0);
    outln!("Topic:              {name}");
    outln!("Partitions:         {}", partitions.len());
    outln!("Replication factor: {replication}");
    outln!();

    let mut rows = Vec::new();
    let mut total = 0i64;
    for p in &partitions {
        let (low, high, records) = match consumer.fetch_watermarks(name, p.id(), CONNECT_TIMEOUT) {
            Ok((low, high)) => {
                total += high - low;
                (low.to_string(), high.to_string(), (high - low).to_string())
            }
            Err(err) => {
                problems.push(format!("offsets of partition {}: {err}", p.id()));
                ("?".into(), "?".into(), "?".into())
            }
        };
        let leader = if p.leader() < 0 {
            "none".to_string()
        } else {
            p.leader().to_string()
        };
        let mut status = p
            .error()
            .map(|e| RDKafkaErrorCode::from(e).to_string())
            .unwrap_or_default();
        if status.is_empty() && p.isr().len() < p.replicas().len() {
            status = "under-replicated".into();
        }
        rows.push(vec![
            p.id().to_string(),
            leader,
            join_ids(p.replicas()),
            join_ids(p.isr()),
            low,
            high,
            records,
            status,
        ]);
    }
    write_stdout(&render_table(
        &[
            "PARTITION",
            "LEADER",
            "REPLICAS",
            "ISR",
            "LOW",
            "HIGH",
            "RECORDS",
            "STATUS",
        ],
        &rows,
    ));
    outln!("(LOW/HIGH are the first offset and the next offset to be written; {total} records in all.)");
    outln!();

    let admin = admin_client(client)?;
    match admin
        .describe_configs([&ResourceSpecifier::Topic(name)], &admin_options())
        .await
    {
        Ok(results) => {
            for result in results {
                match result {
                    Ok(resource) => {
                        let mut entries: Vec<_> = resource.entries.iter().collect();
                        entries.sort_by(|a, b| a.name.cmp(&b.name));
                        if entries.is_empty() {
                            outln!("Configs: none reported.");
                            continue;
                        }
                        let rows: Vec<Vec<String>> = entries
                            .iter()
                            .map(|e| {
                                let value = if e.is_sensitive {
                                    "(hidden)".to_string()
                                } else {
                                    e.value.clone().unwrap_or_else(|| "(none)".into())
                                };
                                vec![e.name.clone(), value, source_label(&e.source, e.is_default)]
                            })
                            .collect();
                        write_stdout(&render_table(&["CONFIG", "VALUE", "SOURCE"], &rows));
                    }
                    Err(code) => problems.push(format!("configs: {code}")),
                }
            }
        }
        Err(err) => problems.push(format!("configs: {err}")),
    }

    if !problems.is_empty() {
        bail!(
            "part of the description is missing ({}); the broker at {} may not support every request yet",
            problems.join("; "),
            client.bootstrap
        );
    }
    Ok(())
}

fn source_label(source: &ConfigSource, is_default: bool) -> String {
    match source {
        ConfigSource::DynamicTopic => "set on topic".into(),
        ConfigSource::DynamicBroker
        | ConfigSource::DynamicDefaultBroker
        | ConfigSource::StaticBroker => "broker".into(),
        ConfigSource::Default => "default".into(),
        ConfigSource::Unknown if is_default => "default".into(),
        ConfigSource::Unknown => String::new(),
    }
}

async fn delete(client: &ClientArgs, name: &str) -> anyhow::Result<()> {
    validate_topic_name(name)?;
    fetch_metadata(&metadata_client(client)?, &client.bootstrap, None)?;
    let admin = admin_client(client)?;
    let results = admin
        .delete_topics(&[name], &admin_options())
        .await
        .map_err(|e| {
            anyhow!(
                "the delete request failed: {e}; is the broker at {} healthy?",
                client.bootstrap
            )
        })?;
    for result in results {
        match result {
            Ok(deleted) => outln!("Deleted topic `{deleted}`."),
            Err((name, RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                bail!("topic `{name}` does not exist: list topics with `rivulet topic list`")
            }
            Err((name, code)) => bail!("could not delete topic `{name}`: {code}"),
        }
    }
    Ok(())
}

fn join_ids(ids: &[i32]) -> String {
    if ids.is_empty() {
        return "-".into();
    }
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_joined() {
        assert_eq!(join_ids(&[]), "-");
        assert_eq!(join_ids(&[1]), "1");
        assert_eq!(join_ids(&[1, 2, 3]), "1,2,3");
    }

    #[test]
    fn config_sources() {
        assert_eq!(
            source_label(&ConfigSource::DynamicTopic, false),
            "set on topic"
        );
        assert_eq!(source_label(&ConfigSource::Default, true), "default");
        assert_eq!(source_label(&ConfigSource::Unknown, true), "default");
        assert_eq!(source_label(&ConfigSource::StaticBroker, false), "broker");
    }
}
