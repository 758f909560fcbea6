//! `rivulet config describe|set|delete`: configs of topics, brokers (one node or the
//! cluster-wide default) and consumer groups, as `kafka-configs` shows and changes them.
//!
//! Like `cluster status` it speaks the Kafka protocol itself (DescribeConfigs v4 with
//! synonyms, IncrementalAlterConfigs v1): librdkafka cannot name the cluster-wide default
//! broker resource (`""`), which is where dynamic defaults live.

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};
use kafka_protocol::protocol::StrBytes;

use super::cluster::{connect_first, error_name};
use super::common::{render_table, write_stdout, ClientArgs};

/// `rivulet config ...`
#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// Which resource's configs.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct Entity {
    /// Cluster-wide dynamic broker defaults (Kafka's `--entity-default`).
    #[arg(long)]
    pub cluster_default: bool,
    /// One broker, by node id.
    #[arg(long, value_name = "NODE_ID")]
    pub broker: Option<i32>,
    /// One consumer group.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// One topic.
    #[arg(long, value_name = "TOPIC")]
    pub topic: Option<String>,
}

impl Entity {
    /// Kafka's resource type and name.
    fn resource(&self) -> (i8, String) {
        if let Some(b) = self.broker {
            (4, b.to_string())
        } else if let Some(g) = &self.group {
            (32, g.clone())
        } else if let Some(t) = &self.topic {
            (2, t.clone())
        } else {
            (4, String::new())
        }
    }

    fn label(&self) -> String {
        match self.resource() {
            (4, n) if n.is_empty() => "the cluster-wide broker defaults".to_string(),
            (4, n) => format!("broker {n}"),
            (32, n) => format!("group {n:?}"),
            (_, n) => format!("topic {n:?}"),
        }
    }
}

/// The config subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Show configs: by default those set on the resource (dynamic or overrides), with
    /// `--all` every config with its source.
    Describe {
        #[command(flatten)]
        entity: Entity,
        /// Every config, not only those set on the resource.
        #[arg(long)]
        all: bool,
    },
    /// Set configs (IncrementalAlterConfigs SET), e.g. `--cluster-default
    /// log.retention.ms=86400000`.
    Set {
        #[command(flatten)]
        entity: Entity,
        /// `KEY=VALUE` pairs.
        #[arg(required = true, value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Only check the change.
        #[arg(long)]
        validate_only: bool,
    },
    /// Delete configs set on the resource, so the next level's value applies again.
    Delete {
        #[command(flatten)]
        entity: Entity,
        /// Keys.
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
}

/// Kafka's name of a DescribeConfigs source.
fn source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        8 => "DYNAMIC_GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

/// Sources that mean "set on this resource" (what `describe` shows without `--all`).
fn is_set_here(source: i8) -> bool {
    matches!(source, 1 | 2 | 3 | 8)
}

/// `KEY=VALUE` into its halves.
fn parse_pair(pair: &str) -> anyhow::Result<(String, String)> {
    match pair.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => bail!("{pair:?} is not KEY=VALUE (e.g. log.retention.ms=86400000)"),
    }
}

/// Runs a config subcommand.
pub(crate) async fn run(args: ConfigArgs) -> anyhow::Result<()> {
    let (mut conn, addr) = connect_first(&args.client.bootstrap).await?;
    match args.command {
        ConfigCommand::Describe { entity, all } => {
            let (resource_type, name) = entity.resource();
            let mut res = DescribeConfigsResource::default();
            res.resource_type = resource_type;
            res.resource_name = StrBytes::from_string(name);
            res.configuration_keys = None;
            let mut req = DescribeConfigsRequest::default();
            req.resources = vec![res];
            req.include_synonyms = true;
            let resp = conn
                .send(&req, 4)
                .await
                .with_context(|| format!("DescribeConfigs to {addr} failed"))?;
            let Some(result) = resp.results.first() else {
                bail!("{addr} answered DescribeConfigs without a result");
            };
            if result.error_code != 0 {
                bail!(
                    "{}: {}{}",
                    entity.label(),
                    error_name(result.error_code),
                    result
                        .error_message
                        .as_ref()
                        .map(|m| format!(": {}", m.as_str()))
                        .unwrap_or_default()
                );
            }
            let mut rows: Vec<Vec<String>> = result
                .configs
                .iter()
                .filter(|c| all || is_set_here(c.config_source))
                .map(|c| {
                    let value = if c.is_sensitive {
                        "(hidden)".to_string()
                    } else {
                        c.value
                            .as_ref()
                            .map_or_else(|| "(none)".into(), |v| v.to_string())
                    };
                    let synonyms = c
                        .synonyms
                        .iter()
                        .map(|s| {
                            format!(
                                "{}:{}={}",
                                source_name(s.source),
                                s.name.as_str(),
                                s.value.as_ref().map_or("", |v| v.as_str())
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                    vec![
                        c.name.to_string(),
                        value,
                        source_name(c.config_source).to_string(),
                        synonyms,
                    ]
                })
                .collect();
            rows.sort();
            if rows.is_empty() {
                write_stdout(&format!(
                    "No configs are set on {}{}.\n",
                    entity.label(),
                    if all { "" } else { " (--all shows every one)" }
                ));
            } else {
                write_stdout(&render_table(
                    &["CONFIG", "VALUE", "SOURCE", "SYNONYMS"],
                    &rows,
                ));
            }
            Ok(())
        }
        ConfigCommand::Set {
            entity,
            configs,
            validate_only,
        } => {
            let mut ops = Vec::with_capacity(configs.len());
            for pair in &configs {
                let (k, v) = parse_pair(pair)?;
                ops.push((k, 0, Some(v)));
            }
            alter(&mut conn, &addr, &entity, ops, validate_only).await?;
            let verb = if validate_only { "would set" } else { "set" };
            write_stdout(&format!(
                "{} {verb}: {}\n",
                entity.label(),
                configs.join(", ")
            ));
            Ok(())
        }
        ConfigCommand::Delete { entity, keys } => {
            let ops = keys.iter().map(|k| (k.clone(), 1, None)).collect();
            alter(&mut conn, &addr, &entity, ops, false).await?;
            write_stdout(&format!(
                "{} deleted: {}\n",
                entity.label(),
                keys.join(", ")
            ));
            Ok(())
        }
    }
}

/// One IncrementalAlterConfigs of `entity` with `(key, operation, value)` operations.
async fn alter(
    conn: &mut super::cluster::KafkaConnection,
    addr: &str,
    entity: &Entity,
    ops: Vec<(String, i8, Option<String>)>,
    validate_only: bool,
) -> anyhow::Result<()> {
    let (resource_type, name) = entity.resource();
    let mut res = AlterConfigsResource::default();
    res.resource_type = resource_type;
    res.resource_name = StrBytes::from_string(name);
    res.configs = ops
        .into_iter()
        .map(|(k, op, v)| {
            let mut c = AlterableConfig::default();
            c.name = StrBytes::from_string(k);
            c.config_operation = op;
            c.value = v.map(StrBytes::from_string);
            c
        })
        .collect();
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources = vec![res];
    req.validate_only = validate_only;
    let resp = conn
        .send(&req, 1)
        .await
        .with_context(|| format!("IncrementalAlterConfigs to {addr} failed"))?;
    let Some(out) = resp.responses.first() else {
        bail!("{addr} answered IncrementalAlterConfigs without a result");
    };
    if out.error_code != 0 {
        bail!(
            "{} refused: {}{}",
            entity.label(),
            error_name(out.error_code),
            out.error_message
                .as_ref()
                .map(|m| format!(": {}", m.as_str()))
                .unwrap_or_default()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_sources() {
        assert_eq!(
            parse_pair("log.retention.ms=1000").unwrap(),
            ("log.retention.ms".to_string(), "1000".to_string())
        );
        assert!(parse_pair("log.retention.ms").is_err());
        assert!(parse_pair("=1").is_err());
        assert_eq!(source_name(3), "DYNAMIC_DEFAULT_BROKER_CONFIG");
        assert!(is_set_here(8) && !is_set_here(5));
    }
}
