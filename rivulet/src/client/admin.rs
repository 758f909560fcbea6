//! The native admin client: topics and their configs through the controller, groups through
//! the coordinators of every node (this node's directly, peers' through their
//! `ForwardService`), and the cluster status `rivulet cluster status` shows.

use std::collections::BTreeMap;
use std::time::Duration;

use rivulet_actors::group::{GroupDescription, GroupListing, Groups};
use rivulet_actors::replication::NodeId;
use rivulet_broker::cli::cluster::ClusterStatus;
use rivulet_broker::node::NodeHandle;
use rivulet_cluster::{ConfigEntry, Controller, NewTopic, PartitionInfo};
use rivulet_storage::TopicMeta;

use super::{ClientError, ClientResult};

/// How long a group question waits for each peer.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// A topic with where its partitions live.
#[derive(Debug, Clone)]
pub struct TopicDescription {
    /// The topic.
    pub topic: TopicMeta,
    /// Its partitions: leader (-1 while none serves), epoch, replicas, ISR.
    pub partitions: Vec<PartitionInfo>,
}

/// Administration through a node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Admin {
    node_id: NodeId,
    controller: Controller,
    groups: Groups,
    cluster_id: String,
    /// The node's Kafka address (what the status calls the queried node), if it has one.
    advertised: (String, i32),
}

impl Admin {
    pub(crate) fn new(node: &NodeHandle) -> Admin {
        let advertised = node.kafka_addr().map_or((String::new(), 0), |a| {
            (a.ip().to_string(), i32::from(a.port()))
        });
        Admin {
            node_id: node.node_id(),
            controller: node.controller().clone(),
            groups: node.groups().clone(),
            cluster_id: node.cluster_id().to_string(),
            advertised,
        }
    }

    /// Creates a topic (partitions and replication factor default to the node's settings).
    pub async fn create_topic(&self, topic: NewTopic) -> ClientResult<TopicMeta> {
        Ok(self.controller.create_topic(topic).await?)
    }

    /// Deletes a topic and its data.
    pub async fn delete_topic(&self, name: &str) -> ClientResult<()> {
        self.controller.delete_topic(name).await?;
        Ok(())
    }

    /// Topic names, sorted.
    pub fn list_topics(&self) -> Vec<String> {
        self.controller
            .topics()
            .into_iter()
            .map(|t| t.name)
            .collect()
    }

    /// A topic and its partitions, or `UnknownTopic`.
    pub fn describe_topic(&self, name: &str) -> ClientResult<TopicDescription> {
        let topic = self
            .controller
            .topic(name)
            .ok_or_else(|| rivulet_cluster::ControllerError::UnknownTopic(name.to_string()))?;
        let partitions = self.controller.partitions(&topic);
        Ok(TopicDescription { topic, partitions })
    }

    /// Every config of a topic with its value and where the value comes from.
    pub fn describe_configs(&self, topic: &str) -> ClientResult<Vec<ConfigEntry>> {
        let meta = self.describe_topic(topic)?.topic;
        Ok(self.controller.describe_configs(&meta))
    }

    /// Replaces a topic's config overrides with `configs` (Kafka's AlterConfigs: keys not
    /// given return to their defaults).
    pub async fn alter_configs(
        &self,
        topic: &str,
        configs: BTreeMap<String, String>,
    ) -> ClientResult<()> {
        Ok(self.controller.alter_configs(topic, configs, false).await?)
    }

    /// The groups of the whole cluster: every node is asked for the groups it coordinates,
    /// as Kafka's admin client asks every broker. A node that does not answer within 5 s is
    /// left out (logged), so during a failover the list may miss that node's groups.
    pub async fn list_groups(&self) -> Vec<GroupListing> {
        rivulet_cluster::forward::list_groups_in_cluster(self.node_id, &self.groups, PEER_TIMEOUT)
            .await
    }

    /// A group as its coordinator (on any node) describes it: state, protocol, members and
    /// their assignments. A group that no node coordinates is `Dead` with no members.
    pub async fn describe_group(&self, group_id: &str) -> ClientResult<GroupDescription> {
        rivulet_cluster::forward::describe_group_in_cluster(
            self.node_id,
            &self.groups,
            group_id,
            PEER_TIMEOUT,
        )
        .await
        .map_err(|e| ClientError::Group(e.to_string()))
    }

    /// What `rivulet cluster status` shows: nodes, controller, partitions that are
    /// under-replicated or offline.
    pub fn cluster_status(&self) -> ClusterStatus {
        rivulet_broker::admin_http::cluster_status(
            &self.controller,
            &self.cluster_id,
            &self.advertised.0,
            self.advertised.1,
        )
    }
}
