//! The error codes a response carries, for `rivulet_kafka_request_errors_total`.
//!
//! Kafka puts error codes at several depths (the response, each topic, each partition, each
//! group); every non-zero one counts once. APIs not listed here are counted by requests and
//! latency only.

use kafka_protocol::messages::ResponseKind;

/// Calls `f` with every error code in `response` (zeros included; the caller skips them).
pub fn error_codes(response: &ResponseKind, mut f: impl FnMut(i16)) {
    match response {
        ResponseKind::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| f(p.error_code)),
        ResponseKind::Fetch(r) => {
            f(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| f(p.error_code));
        }
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        ResponseKind::Metadata(r) => {
            for t in &r.topics {
                f(t.error_code);
                t.partitions.iter().for_each(|p| f(p.error_code));
            }
        }
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        ResponseKind::OffsetFetch(r) => {
            f(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| f(p.error_code));
            for g in &r.groups {
                f(g.error_code);
                g.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .for_each(|p| f(p.error_code));
            }
        }
        ResponseKind::FindCoordinator(r) => {
            f(r.error_code);
            r.coordinators.iter().for_each(|c| f(c.error_code));
        }
        ResponseKind::JoinGroup(r) => f(r.error_code),
        ResponseKind::SyncGroup(r) => f(r.error_code),
        ResponseKind::Heartbeat(r) => f(r.error_code),
        ResponseKind::LeaveGroup(r) => f(r.error_code),
        ResponseKind::ListGroups(r) => f(r.error_code),
        ResponseKind::DescribeGroups(r) => r.groups.iter().for_each(|g| f(g.error_code)),
        ResponseKind::ConsumerGroupHeartbeat(r) => f(r.error_code),
        ResponseKind::CreateTopics(r) => r.topics.iter().for_each(|t| f(t.error_code)),
        ResponseKind::DeleteTopics(r) => r.responses.iter().for_each(|t| f(t.error_code)),
        ResponseKind::InitProducerId(r) => f(r.error_code),
        ResponseKind::DescribeCluster(r) => f(r.error_code),
        ResponseKind::ApiVersions(r) => f(r.error_code),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::ProduceResponse;

    use super::*;

    #[test]
    fn produce_errors_are_counted_per_partition() {
        let mut r = ProduceResponse::default();
        let mut t = TopicProduceResponse::default();
        for code in [0, 6, 6, 3] {
            let mut p = PartitionProduceResponse::default();
            p.error_code = code;
            t.partition_responses.push(p);
        }
        r.responses.push(t);
        let mut seen = Vec::new();
        error_codes(&ResponseKind::Produce(r), |c| seen.push(c));
        assert_eq!(seen, vec![0, 6, 6, 3]);
    }
}
