//! Incremental fetch sessions (KIP-227): a consumer or follower following many partitions
//! sends, after its first (full) fetch, only the partitions whose fetch position changed;
//! the broker keeps the rest and answers only partitions with something new (records, an
//! error, a moved high watermark, last stable or log start offset).
//!
//! ```text
//!  session 0,  epoch -1 : no session (a full fetch, as before KIP-227)
//!  session 0,  epoch 0  : full fetch; the answer names a new session
//!  session id, epoch n  : incremental; n must be the session's next epoch
//!  session id, epoch 0  : close that session, open a new one (full)
//!  session id, epoch -1 : close that session (full fetch, no session)
//! ```
//!
//! Sessions live in a bounded cache (`--max-incremental-fetch-session-cache-slots`, Kafka's
//! `max.incremental.fetch.session.cache.slots`); when it is full the least recently used
//! session makes room if idle for 120 s, else a new client fetches without a session. A
//! session reads its partitions in turn: those that just returned records go last.
//! With the authorizer on, no session is created: every fetch names every partition, so
//! every partition is authorised on every fetch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use parking_lot::Mutex;
use uuid::Uuid;

pub const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
pub const INVALID_FETCH_SESSION_EPOCH: i16 = 71;
pub const FETCH_SESSION_TOPIC_ID_ERROR: i16 = 106;
/// A full cache makes room only from sessions idle this long (Kafka's 120 s); otherwise a
/// new client fetches without a session.
const EVICTABLE_AFTER: Duration = Duration::from_secs(120);

/// A partition as the session names it: (topic id, topic name, partition); requests from
/// v13 name topics by id, older ones by name.
type Key = (Uuid, String, i32);

#[derive(Debug, Clone)]
struct Cached {
    topic: TopicName,
    request: FetchPartition,
    /// What the last answer told the client (None: not told yet).
    told: Option<(i64, i64, i64)>,
}

#[derive(Debug)]
struct Session {
    next_epoch: i32,
    partitions: BTreeMap<Key, Cached>,
    /// The order partitions are read in: those that just returned records go last, so a
    /// fetch that runs out of bytes does not always serve the same ones.
    order: Vec<Key>,
    /// v13+: topics by id.
    by_id: bool,
    last_used: Instant,
}

/// What a request did to the sessions, for [`FetchSessions::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No session: answer every partition, session id 0.
    Sessionless,
    /// A full fetch that opened session `id` (v13+: topics by id).
    Full(i32, bool),
    /// An incremental fetch in session `id`; the keys are the partitions the request named.
    Incremental(i32, bool, HashSet<Key>),
}

pub struct FetchSessions {
    slots: usize,
    sessions: Mutex<HashMap<i32, Session>>,
}

/// v13+ names topics by id, older versions by name: the key holds only the one in use.
fn key_of(by_id: bool, id: Uuid, name: &str, partition: i32) -> Key {
    if by_id {
        (id, String::new(), partition)
    } else {
        (Uuid::nil(), name.to_string(), partition)
    }
}

fn next(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

impl FetchSessions {
    pub fn new(slots: usize) -> Self {
        Self {
            slots,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a request's session fields; an incremental request gets every partition of its
    /// session back in `topics`. Err: the error code of the whole answer.
    pub fn begin(&self, req: &mut FetchRequest, version: i16, allowed: bool) -> Result<Step, i16> {
        let (id, epoch) = (req.session_id, req.session_epoch);
        if id == 0 && (version < 7 || epoch == -1) {
            // Sessionless (every follower and librdkafka fetch): no lock taken.
            return Ok(Step::Sessionless);
        }
        let by_id = version >= 13;
        let key = |t: &FetchTopic, p: i32| key_of(by_id, t.topic_id, t.topic.as_str(), p);
        let mut sessions = self.sessions.lock();
        if version < 7 || epoch == -1 || (epoch == 0 && (!allowed || self.slots == 0)) {
            if id != 0 {
                sessions.remove(&id);
            }
            return Ok(Step::Sessionless);
        }
        if epoch == 0 {
            if id != 0 {
                sessions.remove(&id);
            }
            if sessions.len() >= self.slots {
                // The least recently used session makes room if it has been idle long
                // enough; a busy cache answers without a session instead.
                let now = Instant::now();
                match sessions
                    .iter()
                    .min_by_key(|(_, s)| s.last_used)
                    .filter(|(_, s)| now.duration_since(s.last_used) >= EVICTABLE_AFTER)
                    .map(|(id, _)| *id)
                {
                    Some(oldest) => {
                        sessions.remove(&oldest);
                    }
                    None => return Ok(Step::Sessionless),
                }
            }
            let mut new_id = ((Uuid::new_v4().as_u128() as u32) >> 1) as i32;
            while new_id == 0 || sessions.contains_key(&new_id) {
                new_id = ((Uuid::new_v4().as_u128() as u32) >> 1) as i32;
            }
            let mut partitions = BTreeMap::new();
            let mut order = Vec::new();
            for t in &req.topics {
                for p in &t.partitions {
                    let k = key(t, p.partition);
                    if partitions
                        .insert(
                            k.clone(),
                            Cached {
                                topic: t.topic.clone(),
                                request: p.clone(),
                                told: None,
                            },
                        )
                        .is_none()
                    {
                        order.push(k);
                    }
                }
            }
            sessions.insert(
                new_id,
                Session {
                    next_epoch: 1,
                    partitions,
                    order,
                    by_id,
                    last_used: Instant::now(),
                },
            );
            return Ok(Step::Full(new_id, by_id));
        }
        let Some(session) = sessions.get_mut(&id) else {
            return Err(FETCH_SESSION_ID_NOT_FOUND);
        };
        if session.next_epoch != epoch {
            return Err(INVALID_FETCH_SESSION_EPOCH);
        }
        if session.by_id != by_id {
            return Err(FETCH_SESSION_TOPIC_ID_ERROR);
        }
        session.next_epoch = next(epoch);
        session.last_used = Instant::now();
        let mut named = HashSet::new();
        for t in &req.topics {
            for p in &t.partitions {
                let k = key(t, p.partition);
                named.insert(k.clone());
                let told = session.partitions.get(&k).and_then(|c| c.told);
                let cached = Cached {
                    topic: t.topic.clone(),
                    request: p.clone(),
                    told,
                };
                if session.partitions.insert(k.clone(), cached).is_none() {
                    session.order.push(k);
                }
            }
        }
        for f in &req.forgotten_topics_data {
            for p in &f.partitions {
                session
                    .partitions
                    .remove(&key_of(by_id, f.topic_id, f.topic.as_str(), *p));
            }
        }
        let Session {
            partitions, order, ..
        } = session;
        order.retain(|k| partitions.contains_key(k));
        // The whole session, in its reading order (a topic's runs of partitions together),
        // is what the fetch reads.
        let mut topics: Vec<FetchTopic> = Vec::new();
        for k in order.iter() {
            let Some(c) = partitions.get(k) else { continue };
            match topics.last_mut() {
                Some(t) if t.topic_id == k.0 && t.topic == c.topic => {
                    t.partitions.push(c.request.clone())
                }
                _ => topics.push(
                    FetchTopic::default()
                        .with_topic(c.topic.clone())
                        .with_topic_id(k.0)
                        .with_partitions(vec![c.request.clone()]),
                ),
            }
        }
        req.topics = topics;
        Ok(Step::Incremental(id, by_id, named))
    }

    /// Stamps the answer with its session and, for an incremental fetch, keeps only the
    /// partitions with something new (and those the request named). Every partition's
    /// answered offsets are remembered, and a partition that got records has its next fetch
    /// offset moved past them only by the client's next request.
    pub fn finish(&self, step: &Step, resp: &mut FetchResponse) {
        let id = match step {
            Step::Sessionless => {
                resp.session_id = 0;
                return;
            }
            Step::Full(id, _) | Step::Incremental(id, _, _) => *id,
        };
        let by_id = match step {
            Step::Full(_, b) | Step::Incremental(_, b, _) => *b,
            Step::Sessionless => false,
        };
        resp.session_id = id;
        let mut sessions = self.sessions.lock();
        let Some(session) = sessions.get_mut(&id) else {
            return;
        };
        let empty = HashSet::new();
        let named = match step {
            Step::Incremental(_, _, named) => named,
            _ => &empty,
        };
        let incremental = matches!(step, Step::Incremental(..));
        let mut served: Vec<Key> = Vec::new();
        for t in resp.responses.iter_mut() {
            let (tid, name) = (t.topic_id, t.topic.to_string());
            t.partitions.retain(|p| {
                let k = key_of(by_id, tid, &name, p.partition_index);
                let now = (p.high_watermark, p.last_stable_offset, p.log_start_offset);
                let Some(c) = session.partitions.get_mut(&k) else {
                    return !incremental;
                };
                let changed = c.told != Some(now);
                c.told = Some(now);
                let has_records = p.records.as_ref().is_some_and(|r| !r.is_empty());
                let keep = !incremental
                    || changed
                    || has_records
                    || p.error_code != 0
                    || p.preferred_read_replica.0 >= 0
                    || p.diverging_epoch.epoch >= 0
                    || named.contains(&k);
                if has_records {
                    served.push(k);
                }
                keep
            });
        }
        resp.responses.retain(|t| !t.partitions.is_empty());
        // Partitions that returned records are read last next time.
        if !served.is_empty() {
            let served: HashSet<Key> = served.into_iter().collect();
            let (mut rest, last): (Vec<Key>, Vec<Key>) =
                session.order.drain(..).partition(|k| !served.contains(k));
            rest.extend(last);
            session.order = rest;
        }
    }

    /// Forgets session `id` (its answer was emptied by a quota, or it failed whole).
    pub fn close(&self, id: i32) {
        if id != 0 {
            self.sessions.lock().remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_request::ForgottenTopic;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::protocol::StrBytes;

    fn topic(name: &str, partitions: &[(i32, i64)]) -> FetchTopic {
        FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(name.into())))
            .with_partitions(
                partitions
                    .iter()
                    .map(|(p, off)| {
                        FetchPartition::default()
                            .with_partition(*p)
                            .with_fetch_offset(*off)
                    })
                    .collect(),
            )
    }

    fn answer(req: &FetchRequest, hw: i64, data_on: &[i32]) -> FetchResponse {
        FetchResponse::default().with_responses(
            req.topics
                .iter()
                .map(|t| {
                    FetchableTopicResponse::default()
                        .with_topic(t.topic.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    let data = data_on.contains(&p.partition);
                                    PartitionData::default()
                                        .with_partition_index(p.partition)
                                        .with_high_watermark(if data { hw + 1 } else { hw })
                                        .with_last_stable_offset(hw)
                                        .with_records(Some(if data {
                                            bytes::Bytes::from_static(b"x")
                                        } else {
                                            bytes::Bytes::new()
                                        }))
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
    }

    fn partitions(resp: &FetchResponse) -> Vec<i32> {
        resp.responses
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.partition_index))
            .collect()
    }

    #[test]
    fn a_session_answers_only_what_changed_and_checks_its_epochs() {
        let s = FetchSessions::new(10);
        let mut req = FetchRequest::default()
            .with_session_epoch(0)
            .with_topics(vec![topic("t", &[(0, 0), (1, 0), (2, 0)])]);
        let step = s.begin(&mut req, 12, true).expect("full");
        let Step::Full(id, _) = step else {
            panic!("{step:?}")
        };
        let mut resp = answer(&req, 5, &[]);
        s.finish(&step, &mut resp);
        assert_eq!((resp.session_id, partitions(&resp)), (id, vec![0, 1, 2]));
        // Incremental, naming nothing: the fetch reads all three, the answer has only the
        // partition with records.
        let mut req = FetchRequest::default()
            .with_session_id(id)
            .with_session_epoch(1);
        let step = s.begin(&mut req, 12, true).expect("incremental");
        assert_eq!(req.topics[0].partitions.len(), 3);
        let mut resp = answer(&req, 5, &[1]);
        s.finish(&step, &mut resp);
        assert_eq!(partitions(&resp), vec![1]);
        // The client moves partition 1 on and forgets 2; the wrong epoch is refused.
        let mut stale = FetchRequest::default()
            .with_session_id(id)
            .with_session_epoch(1);
        assert_eq!(
            s.begin(&mut stale, 12, true),
            Err(INVALID_FETCH_SESSION_EPOCH)
        );
        let mut req = FetchRequest::default()
            .with_session_id(id)
            .with_session_epoch(2)
            .with_topics(vec![topic("t", &[(1, 6)])])
            .with_forgotten_topics_data(vec![ForgottenTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![2])]);
        let step = s.begin(&mut req, 12, true).expect("incremental");
        let offsets: Vec<(i32, i64)> = req.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition, p.fetch_offset))
            .collect();
        assert_eq!(offsets, vec![(0, 0), (1, 6)]);
        let mut resp = answer(&req, 5, &[]);
        s.finish(&step, &mut resp);
        // 1 was named (and its high watermark moved back to 5); 0 is unchanged.
        assert_eq!(partitions(&resp), vec![1]);
        // Closing; an unknown session.
        let mut close = FetchRequest::default()
            .with_session_id(id)
            .with_session_epoch(-1);
        assert_eq!(s.begin(&mut close, 12, true), Ok(Step::Sessionless));
        let mut gone = FetchRequest::default()
            .with_session_id(id)
            .with_session_epoch(3);
        assert_eq!(
            s.begin(&mut gone, 12, true),
            Err(FETCH_SESSION_ID_NOT_FOUND)
        );
    }

    #[test]
    fn partitions_that_returned_records_are_read_last_and_versions_do_not_mix() {
        let s = FetchSessions::new(10);
        let mut req = FetchRequest::default()
            .with_session_epoch(0)
            .with_topics(vec![topic("t", &[(0, 0), (1, 0), (2, 0)])]);
        let step = s.begin(&mut req, 12, true).expect("full");
        let mut resp = answer(&req, 5, &[0]);
        s.finish(&step, &mut resp);
        let Step::Full(id, _) = step else { panic!() };
        let mut req = FetchRequest::default()
            .with_session_id(id)
            .with_session_epoch(1);
        s.begin(&mut req, 12, true).expect("incremental");
        let order: Vec<i32> = req
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.partition))
            .collect();
        assert_eq!(order, vec![1, 2, 0]);
        // The same session continued at v13 (topics by id) is refused.
        let mut v13 = FetchRequest::default()
            .with_session_id(id)
            .with_session_epoch(2);
        assert_eq!(
            s.begin(&mut v13, 13, true),
            Err(FETCH_SESSION_TOPIC_ID_ERROR)
        );
    }

    #[test]
    fn no_sessions_before_v7_under_the_authorizer_or_without_slots_and_only_idle_ones_evicted() {
        let s = FetchSessions::new(1);
        let mut req = FetchRequest::default().with_session_epoch(0);
        assert_eq!(s.begin(&mut req, 6, true), Ok(Step::Sessionless));
        assert_eq!(s.begin(&mut req, 12, false), Ok(Step::Sessionless));
        let first = s.begin(&mut req, 12, true).expect("one");
        let Step::Full(first, _) = first else {
            panic!()
        };
        // The cache is full of a session in use: the next client fetches without one.
        let second = s.begin(&mut req, 12, true).expect("two");
        assert_eq!(second, Step::Sessionless);
        assert_eq!(s.len(), 1);
        // Idle long enough, it makes room.
        s.sessions.lock().get_mut(&first).expect("first").last_used -= EVICTABLE_AFTER;
        let third = s.begin(&mut req, 12, true).expect("three");
        assert!(matches!(third, Step::Full(..)));
        let mut old = FetchRequest::default()
            .with_session_id(first)
            .with_session_epoch(1);
        assert_eq!(s.begin(&mut old, 12, true), Err(FETCH_SESSION_ID_NOT_FOUND));
        assert!(FetchSessions::new(0)
            .begin(&mut req, 12, true)
            .is_ok_and(|s| s == Step::Sessionless));
    }
}
