//! Kafka's "consumer" embedded protocol (subscription and assignment bytes of classic groups).
//! The codec is [`rivulet_actors::group::consumer_protocol`], shared with the group
//! coordinators; it is re-exported here for the handlers and the CLI. The tests check it
//! against the kafka-protocol crate's own encoder, which only this crate depends on.

pub use rivulet_actors::group::consumer_protocol::*;

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, Bytes, BytesMut};
    use kafka_protocol::messages::consumer_protocol_assignment::{
        ConsumerProtocolAssignment, TopicPartition,
    };
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn kafka_encoded(version: i16, user_data: Option<&'static [u8]>) -> Bytes {
        let mut a = ConsumerProtocolAssignment::default();
        let mut t1 = TopicPartition::default();
        t1.topic = TopicName(StrBytes::from_static_str("orders"));
        t1.partitions = vec![0, 2];
        let mut t2 = TopicPartition::default();
        t2.topic = TopicName(StrBytes::from_static_str("payments"));
        t2.partitions = vec![1];
        a.assigned_partitions = vec![t1, t2];
        a.user_data = user_data.map(Bytes::from_static);
        let mut out = BytesMut::new();
        out.put_i16(version);
        a.encode(&mut out, version).expect("encode");
        out.freeze()
    }

    #[test]
    fn decodes_what_kafka_encodes_in_every_version() {
        for version in 0..=3 {
            for user_data in [None, Some(&b"sticky"[..])] {
                let bytes = kafka_encoded(version, user_data);
                let a = decode_assignment(&bytes).expect("decode");
                assert_eq!(
                    a.partitions,
                    vec![
                        ("orders".to_string(), vec![0, 2]),
                        ("payments".to_string(), vec![1])
                    ],
                    "v{version}"
                );
                assert_eq!(a.user_data.as_deref(), user_data, "v{version}");
            }
        }
    }

    #[test]
    fn round_trips_and_groups_by_topic() {
        let bytes = encode_assignment([("b", 1), ("a", 3), ("b", 0), ("a", 3)], Some(b"x"));
        let a = decode_assignment(&bytes).expect("decode");
        assert_eq!(
            a.partitions,
            vec![("a".to_string(), vec![3]), ("b".to_string(), vec![0, 1])]
        );
        assert_eq!(a.user_data.as_deref(), Some(&b"x"[..]));
        // Same bytes as Kafka's own encoder.
        let mut k = ConsumerProtocolAssignment::default();
        for (t, ps) in &a.partitions {
            let mut tp = TopicPartition::default();
            tp.topic = TopicName(StrBytes::from_string(t.clone()));
            tp.partitions = ps.clone();
            k.assigned_partitions.push(tp);
        }
        k.user_data = Some(Bytes::from_static(b"x"));
        let mut out = BytesMut::new();
        out.put_i16(0);
        k.encode(&mut out, 0).expect("encode");
        assert_eq!(bytes, out.freeze());
    }

    #[test]
    fn empty_and_future_versions() {
        assert_eq!(
            decode_assignment(&[]).expect("empty"),
            Assignment::default()
        );
        // A future version with an extra trailing field still decodes.
        let mut bytes = BytesMut::from(&kafka_encoded(3, None)[..]);
        bytes[1] = 9;
        bytes.put_i32(42);
        let a = decode_assignment(&bytes).expect("future version");
        assert_eq!(a.partitions.len(), 2);
        // Without user data at all (truncated encoders).
        let a = decode_assignment(&[0, 0, 0, 0, 0, 0]).expect("no user data");
        assert!(a.partitions.is_empty() && a.user_data.is_none());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &[0u8][..],
            &[0, 0, 0, 0, 0, 1][..],
            &[0, 0, 0, 0, 0, 1, 0, 5, b'a'][..],
            &[0, 0, 0xff, 0xff, 0xff, 0xff][..],
            &[0xff, 0xff, 0, 0, 0, 0][..],
            &[0, 0, 0, 0, 0, 1, 0, 1, b'a', 0x7f, 0xff, 0xff, 0xff][..],
        ] {
            assert!(decode_assignment(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn subscriptions_decode_as_kafka_encodes_them_and_encode_as_kafka_does() {
        for version in 0..=3 {
            let mut s = ConsumerProtocolSubscription::default();
            s.topics = vec![
                StrBytes::from_static_str("orders"),
                StrBytes::from_static_str("payments"),
            ];
            s.user_data = Some(Bytes::from_static(b"sticky"));
            let mut out = BytesMut::new();
            out.put_i16(version);
            s.encode(&mut out, version).expect("encode");
            let d = decode_subscription(&out).expect("decode");
            assert_eq!(d.topics, vec!["orders", "payments"], "v{version}");
            assert_eq!(d.user_data.as_deref(), Some(&b"sticky"[..]), "v{version}");
            if version == 0 {
                let ours = encode_subscription(["orders", "payments"], Some(b"sticky"));
                assert_eq!(ours, out.freeze());
            }
        }
    }
}
