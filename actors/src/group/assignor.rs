//! Server-side assignors of the consumer group protocol (KIP-848).
//!
//! An assignor maps every partition of the topics the members subscribe to onto at most one
//! member that subscribes to its topic. Both assignors are deterministic: members are taken in
//! member-id order and topics in name order, so every coordinator computes the same target.
//!
//! * [`uniform`] (Kafka's default): spreads the partitions as evenly as possible over the
//!   members, counting every member's partitions across all its topics, and is sticky: a member
//!   keeps the partitions of its current target while the balance allows it. Members may
//!   subscribe to different topics.
//! * [`range`]: per topic, the members subscribed to it (sorted by member id) get contiguous
//!   ranges of partitions, the first `partitions % members` one partition more. Not sticky; the
//!   same member index gets the same partition range of every topic (co-partitioning).

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// Partitions by topic id.
pub type TopicPartitions = BTreeMap<Uuid, BTreeSet<i32>>;

/// The assignors this module implements.
pub const SUPPORTED_ASSIGNORS: &[&str] = &["uniform", "range"];

/// A topic as an assignor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignorTopic {
    /// Topic id.
    pub id: Uuid,
    /// Topic name (orders the topics).
    pub name: String,
    /// Partition count.
    pub partitions: i32,
}

/// A member as an assignor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignorMember {
    /// Member id (orders the members).
    pub member_id: String,
    /// Ids of the topics it subscribes to (resolved, existing ones).
    pub topics: BTreeSet<Uuid>,
    /// Its current target assignment, which a sticky assignor preserves where it can.
    pub current: TopicPartitions,
}

/// Runs the assignor called `name`; `None` for an assignor this module does not implement.
///
/// Every member appears in the result (possibly with an empty assignment); partitions of topics
/// missing from `topics` are never assigned.
pub fn assign(
    name: &str,
    members: &[AssignorMember],
    topics: &BTreeMap<Uuid, AssignorTopic>,
) -> Option<BTreeMap<String, TopicPartitions>> {
    match name {
        "uniform" => Some(uniform(members, topics)),
        "range" => Some(range(members, topics)),
        _ => None,
    }
}

/// Topics in name order (then id, for two topics of the same name during a re-creation).
fn sorted_topics(topics: &BTreeMap<Uuid, AssignorTopic>) -> Vec<&AssignorTopic> {
    let mut sorted: Vec<&AssignorTopic> = topics.values().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    sorted
}

/// Members in member-id order.
fn sorted_members(members: &[AssignorMember]) -> Vec<&AssignorMember> {
    let mut sorted: Vec<&AssignorMember> = members.iter().collect();
    sorted.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    sorted
}

/// The range assignor: per topic, contiguous ranges over the subscribed members in id order.
pub fn range(
    members: &[AssignorMember],
    topics: &BTreeMap<Uuid, AssignorTopic>,
) -> BTreeMap<String, TopicPartitions> {
    let members = sorted_members(members);
    let mut out: BTreeMap<String, TopicPartitions> = members
        .iter()
        .map(|m| (m.member_id.clone(), TopicPartitions::new()))
        .collect();
    for topic in sorted_topics(topics) {
        let subscribers: Vec<&&AssignorMember> = members
            .iter()
            .filter(|m| m.topics.contains(&topic.id))
            .collect();
        if subscribers.is_empty() || topic.partitions <= 0 {
            continue;
        }
        let n = topic.partitions as usize;
        let k = subscribers.len();
        let (base, extra) = (n / k, n % k);
        let mut start = 0usize;
        for (i, m) in subscribers.iter().enumerate() {
            let count = base + usize::from(i < extra);
            if count > 0 {
                let parts: BTreeSet<i32> = (start..start + count).map(|p| p as i32).collect();
                if let Some(assigned) = out.get_mut(&m.member_id) {
                    assigned.insert(topic.id, parts);
                }
            }
            start += count;
        }
    }
    out
}

/// The uniform assignor: balanced over the members, sticky to their current targets.
///
/// 1. Every member keeps the partitions of its current target that still exist and whose topic
///    it still subscribes to.
/// 2. Each unassigned partition (the most constrained first: fewest eligible members) goes to
///    the eligible member with the fewest partitions.
/// 3. While some member holds at least two partitions more than another member that could take
///    one of them, one partition (the member's highest of such) moves to the least loaded such
///    member. Every move lowers the sum of squared loads, so this ends; with identical
///    subscriptions it ends with loads differing by at most one.
pub fn uniform(
    members: &[AssignorMember],
    topics: &BTreeMap<Uuid, AssignorTopic>,
) -> BTreeMap<String, TopicPartitions> {
    let members = sorted_members(members);
    let topics = sorted_topics(topics);
    let topic_index: BTreeMap<Uuid, usize> =
        topics.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
    // subscribers[t]: indexes of the members subscribed to topic t, in member order.
    let subscribers: Vec<Vec<usize>> = topics
        .iter()
        .map(|t| {
            members
                .iter()
                .enumerate()
                .filter(|(_, m)| m.topics.contains(&t.id))
                .map(|(i, _)| i)
                .collect()
        })
        .collect();
    // held[m]: the (topic index, partition) pairs member m gets.
    let mut held: Vec<BTreeSet<(usize, i32)>> = vec![BTreeSet::new(); members.len()];
    let mut taken: BTreeSet<(usize, i32)> = BTreeSet::new();

    // 1. Stickiness.
    for (mi, m) in members.iter().enumerate() {
        for (topic_id, parts) in &m.current {
            let Some(&ti) = topic_index.get(topic_id) else {
                continue;
            };
            if !m.topics.contains(topic_id) {
                continue;
            }
            for &p in parts {
                if p >= 0 && p < topics[ti].partitions && taken.insert((ti, p)) {
                    held[mi].insert((ti, p));
                }
            }
        }
    }

    // 2. Unassigned partitions, most constrained first.
    let mut unassigned: Vec<(usize, usize, i32)> = Vec::new();
    for (ti, t) in topics.iter().enumerate() {
        if subscribers[ti].is_empty() {
            continue;
        }
        for p in 0..t.partitions.max(0) {
            if !taken.contains(&(ti, p)) {
                unassigned.push((subscribers[ti].len(), ti, p));
            }
        }
    }
    unassigned.sort_unstable();
    for (_, ti, p) in unassigned {
        let Some(&mi) = subscribers[ti]
            .iter()
            .min_by_key(|&&mi| (held[mi].len(), mi))
        else {
            continue;
        };
        held[mi].insert((ti, p));
    }

    // 3. Balance.
    loop {
        let mut order: Vec<usize> = (0..members.len()).collect();
        order.sort_by_key(|&mi| (std::cmp::Reverse(held[mi].len()), mi));
        let mut moved = false;
        for &from in &order {
            let load = held[from].len();
            if load < 2 {
                break;
            }
            let from_topics: BTreeSet<usize> = held[from].iter().map(|&(ti, _)| ti).collect();
            // The least loaded member able to take one of `from`'s partitions.
            let mut best: Option<(usize, usize)> = None; // (load, member)
            for &ti in &from_topics {
                for &to in &subscribers[ti] {
                    if to != from && held[to].len() + 2 <= load {
                        let candidate = (held[to].len(), to);
                        if best.is_none_or(|b| candidate < b) {
                            best = Some(candidate);
                        }
                    }
                }
            }
            let Some((_, to)) = best else {
                continue;
            };
            let Some(&tp) = held[from]
                .iter()
                .rev()
                .find(|&&(ti, _)| subscribers[ti].contains(&to))
            else {
                continue;
            };
            held[from].remove(&tp);
            held[to].insert(tp);
            moved = true;
            break;
        }
        if !moved {
            break;
        }
    }

    members
        .iter()
        .zip(held)
        .map(|(m, parts)| {
            let mut assignment = TopicPartitions::new();
            for (ti, p) in parts {
                assignment.entry(topics[ti].id).or_default().insert(p);
            }
            (m.member_id.clone(), assignment)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(n: u128, name: &str, partitions: i32) -> AssignorTopic {
        AssignorTopic {
            id: Uuid::from_u128(n),
            name: name.into(),
            partitions,
        }
    }

    fn topics(list: &[AssignorTopic]) -> BTreeMap<Uuid, AssignorTopic> {
        list.iter().map(|t| (t.id, t.clone())).collect()
    }

    fn member(id: &str, subscribed: &[u128]) -> AssignorMember {
        AssignorMember {
            member_id: id.into(),
            topics: subscribed.iter().map(|&n| Uuid::from_u128(n)).collect(),
            current: TopicPartitions::new(),
        }
    }

    fn count(a: &TopicPartitions) -> usize {
        a.values().map(BTreeSet::len).sum()
    }

    fn parts(a: &TopicPartitions, t: u128) -> Vec<i32> {
        a.get(&Uuid::from_u128(t))
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Every partition of a subscribed topic is assigned exactly once, to a subscriber.
    fn assert_complete(
        out: &BTreeMap<String, TopicPartitions>,
        members: &[AssignorMember],
        topics: &BTreeMap<Uuid, AssignorTopic>,
    ) {
        let mut seen = BTreeSet::new();
        for (mid, a) in out {
            let m = members.iter().find(|m| &m.member_id == mid).unwrap();
            for (t, ps) in a {
                assert!(m.topics.contains(t), "{mid} got an unsubscribed topic");
                for &p in ps {
                    assert!(p < topics[t].partitions);
                    assert!(seen.insert((*t, p)), "partition {t}/{p} assigned twice");
                }
            }
        }
        for t in topics.values() {
            if members.iter().any(|m| m.topics.contains(&t.id)) {
                for p in 0..t.partitions {
                    assert!(
                        seen.contains(&(t.id, p)),
                        "partition {}/{p} unassigned",
                        t.name
                    );
                }
            }
        }
    }

    #[test]
    fn range_gives_contiguous_ranges_first_members_get_extra() {
        let ts = topics(&[topic(1, "a", 7), topic(2, "b", 2)]);
        let ms = vec![
            member("m3", &[1, 2]),
            member("m1", &[1, 2]),
            member("m2", &[1]),
        ];
        let out = range(&ms, &ts);
        assert_complete(&out, &ms, &ts);
        assert_eq!(parts(&out["m1"], 1), vec![0, 1, 2]);
        assert_eq!(parts(&out["m2"], 1), vec![3, 4]);
        assert_eq!(parts(&out["m3"], 1), vec![5, 6]);
        // Topic b: only m1 and m3 subscribe.
        assert_eq!(parts(&out["m1"], 2), vec![0]);
        assert_eq!(parts(&out["m2"], 2), Vec::<i32>::new());
        assert_eq!(parts(&out["m3"], 2), vec![1]);
    }

    #[test]
    fn range_more_members_than_partitions() {
        let ts = topics(&[topic(1, "a", 2)]);
        let ms = vec![member("a", &[1]), member("b", &[1]), member("c", &[1])];
        let out = range(&ms, &ts);
        assert_complete(&out, &ms, &ts);
        assert_eq!(parts(&out["a"], 1), vec![0]);
        assert_eq!(parts(&out["b"], 1), vec![1]);
        assert!(out["c"].is_empty());
    }

    #[test]
    fn uniform_balances_across_topics() {
        let ts = topics(&[topic(1, "a", 5), topic(2, "b", 4)]);
        let ms = vec![
            member("m1", &[1, 2]),
            member("m2", &[1, 2]),
            member("m3", &[1, 2]),
        ];
        let out = uniform(&ms, &ts);
        assert_complete(&out, &ms, &ts);
        for a in out.values() {
            assert_eq!(count(a), 3);
        }
    }

    #[test]
    fn uniform_is_deterministic() {
        let ts = topics(&[topic(1, "a", 13), topic(2, "b", 5)]);
        let ms = vec![
            member("x", &[1, 2]),
            member("y", &[1]),
            member("z", &[2, 1]),
        ];
        let mut reversed = ms.clone();
        reversed.reverse();
        assert_eq!(uniform(&ms, &ts), uniform(&reversed, &ts));
    }

    #[test]
    fn uniform_is_sticky_when_a_member_joins() {
        let ts = topics(&[topic(1, "a", 6)]);
        let mut ms = vec![member("m1", &[1]), member("m2", &[1])];
        let first = uniform(&ms, &ts);
        assert_complete(&first, &ms, &ts);
        for m in &mut ms {
            m.current = first[&m.member_id].clone();
        }
        ms.push(member("m3", &[1]));
        let second = uniform(&ms, &ts);
        assert_complete(&second, &ms, &ts);
        for mid in ["m1", "m2"] {
            assert_eq!(count(&second[mid]), 2);
            // Each old member only lost partitions; it gained none.
            for p in parts(&second[mid], 1) {
                assert!(parts(&first[mid], 1).contains(&p), "{mid} gained {p}");
            }
        }
        assert_eq!(count(&second["m3"]), 2);
    }

    #[test]
    fn uniform_is_sticky_when_a_member_leaves() {
        let ts = topics(&[topic(1, "a", 9)]);
        let mut ms = vec![member("m1", &[1]), member("m2", &[1]), member("m3", &[1])];
        let first = uniform(&ms, &ts);
        for m in &mut ms {
            m.current = first[&m.member_id].clone();
        }
        ms.retain(|m| m.member_id != "m2");
        let second = uniform(&ms, &ts);
        assert_complete(&second, &ms, &ts);
        for mid in ["m1", "m3"] {
            for p in parts(&first[mid], 1) {
                assert!(parts(&second[mid], 1).contains(&p), "{mid} lost {p}");
            }
        }
        let loads: Vec<usize> = second.values().map(count).collect();
        assert!(loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1);
    }

    #[test]
    fn uniform_keeps_nothing_of_unsubscribed_or_vanished_topics() {
        let ts = topics(&[topic(1, "a", 2)]);
        let mut m = member("m1", &[1]);
        m.current.insert(Uuid::from_u128(9), [0, 1].into()); // topic no longer exists
        m.current.insert(Uuid::from_u128(1), [0, 5].into()); // partition 5 no longer exists
        let ms = vec![m];
        let out = uniform(&ms, &ts);
        assert_complete(&out, &ms, &ts);
        assert_eq!(out["m1"].len(), 1);
        assert_eq!(parts(&out["m1"], 1), vec![0, 1]);
    }

    #[test]
    fn uniform_heterogeneous_subscriptions() {
        // m1 subscribes to a and b, m2 only to b, m3 only to a.
        let ts = topics(&[topic(1, "a", 4), topic(2, "b", 4)]);
        let ms = vec![
            member("m1", &[1, 2]),
            member("m2", &[2]),
            member("m3", &[1]),
        ];
        let out = uniform(&ms, &ts);
        assert_complete(&out, &ms, &ts);
        let loads: Vec<usize> = out.values().map(count).collect();
        assert!(
            loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1,
            "{loads:?}"
        );
        // A member alone on a topic gets all of it.
        let ts = topics(&[topic(1, "a", 4), topic(2, "b", 3)]);
        let ms = vec![member("m1", &[1]), member("m2", &[2])];
        let out = uniform(&ms, &ts);
        assert_complete(&out, &ms, &ts);
        assert_eq!(parts(&out["m1"], 1), vec![0, 1, 2, 3]);
        assert_eq!(parts(&out["m2"], 2), vec![0, 1, 2]);
    }

    #[test]
    fn uniform_rebalances_a_lopsided_current_assignment() {
        let ts = topics(&[topic(1, "a", 8)]);
        let mut m1 = member("m1", &[1]);
        m1.current.insert(Uuid::from_u128(1), (0..8).collect());
        let ms = vec![
            m1,
            member("m2", &[1]),
            member("m3", &[1]),
            member("m4", &[1]),
        ];
        let out = uniform(&ms, &ts);
        assert_complete(&out, &ms, &ts);
        for a in out.values() {
            assert_eq!(count(a), 2);
        }
        // m1 keeps its lowest partitions.
        assert_eq!(parts(&out["m1"], 1), vec![0, 1]);
    }

    #[test]
    fn unknown_assignor_is_none_and_empty_inputs_work() {
        let ts = topics(&[topic(1, "a", 3)]);
        assert!(assign("sticky", &[], &ts).is_none());
        assert!(assign("uniform", &[], &ts).unwrap().is_empty());
        let ms = vec![member("m1", &[])];
        assert!(assign("range", &ms, &ts).unwrap()["m1"].is_empty());
        assert!(assign("uniform", &ms, &ts).unwrap()["m1"].is_empty());
    }
}
