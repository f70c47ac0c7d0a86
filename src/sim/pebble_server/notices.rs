//! Notices: custom ones recorded through `POST /v1/notices`, deduplicated by
//! (user, type, key) the way Pebble does (occurrences counted, last data kept).

use super::time::rfc3339;
use crate::ops::pebble::Notice;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// Notices expire after a week unless they occur again (Pebble's default).
const EXPIRE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// Maximum total size of a notice's data.
const MAX_DATA: usize = 4096;

/// One stored notice.
#[derive(Debug, Clone)]
pub struct NoticeRec {
    pub id: u64,
    pub user_id: Option<u32>,
    pub notice_type: String,
    pub key: String,
    pub first: SystemTime,
    pub last: SystemTime,
    pub last_repeated: SystemTime,
    pub occurrences: u64,
    pub last_data: BTreeMap<String, String>,
    pub repeat_after: Option<Duration>,
    /// Bumped each time the notice is (re)recorded as a repeat: lets the model see a
    /// repeated key as a new event although its id stays the same.
    pub repeat_seq: u64,
}

impl NoticeRec {
    pub fn to_wire(&self) -> Notice {
        Notice {
            id: self.id.to_string(),
            user_id: self.user_id,
            notice_type: self.notice_type.clone(),
            key: self.key.clone(),
            first_occurred: rfc3339(self.first),
            last_occurred: rfc3339(self.last),
            last_repeated: rfc3339(self.last_repeated),
            occurrences: self.occurrences,
            last_data: self.last_data.clone(),
            repeat_after: self.repeat_after.map(go_duration_string),
            expire_after: Some(go_duration_string(EXPIRE_AFTER)),
        }
    }
}

/// Go's `time.Duration.String()` for whole milliseconds and up (`1h0m0s`, `500ms`).
pub fn go_duration_string(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m) = (ms / 3_600_000, (ms / 60_000) % 60);
    let s = (ms % 60_000) as f64 / 1000.0;
    let secs = if s.fract() == 0.0 {
        format!("{}s", s as u64)
    } else {
        format!("{}s", format!("{s:.3}").trim_end_matches('0'))
    };
    if h > 0 {
        format!("{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{m}m{secs}")
    } else {
        secs
    }
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.split('-').all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Pebble's custom key rule:
/// `^[a-z0-9]+(-[a-z0-9]+)*(\.[a-z0-9]+(-[a-z0-9]+)*)+(/[a-z0-9]+(-[a-z0-9]+)*)+$`.
pub fn valid_custom_key(key: &str) -> bool {
    let mut segs = key.split('/');
    let Some(domain) = segs.next() else {
        return false;
    };
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 || !labels.iter().all(|l| is_label(l)) {
        return false;
    }
    let path: Vec<&str> = segs.collect();
    !path.is_empty() && path.iter().all(|p| is_label(p))
}

/// Why a notice was refused (the message is the API's 400 text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoticeError {
    #[error("invalid type {0:?}; only \"custom\" notices may be added")]
    Type(String),
    #[error("key must be 256 bytes or less")]
    KeyTooLong,
    #[error("invalid custom notice key {0:?}: must be in the form \"example.com/path\"")]
    Key(String),
    #[error("total size of data must be 4096 bytes or less")]
    DataTooLarge,
}

/// Filters of `GET /v1/notices`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub types: Vec<String>,
    pub keys: Vec<String>,
    pub after: Option<SystemTime>,
    /// `None`: every user's notices (admin with `users=all`); `Some(uid)`: that user's and
    /// public ones.
    pub user: Option<u32>,
}

/// The daemon's notices.
#[derive(Debug, Default)]
pub struct NoticeStore {
    next_id: u64,
    next_seq: u64,
    notices: Vec<NoticeRec>,
}

impl NoticeStore {
    /// Record a custom notice (validated); returns its id.
    pub fn add_custom(
        &mut self,
        user_id: Option<u32>,
        key: &str,
        data: BTreeMap<String, String>,
        repeat_after: Option<Duration>,
    ) -> Result<u64, NoticeError> {
        if key.len() > 256 {
            return Err(NoticeError::KeyTooLong);
        }
        if !valid_custom_key(key) {
            return Err(NoticeError::Key(key.into()));
        }
        if data.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > MAX_DATA {
            return Err(NoticeError::DataTooLarge);
        }
        Ok(self.record(user_id, "custom", key, data, repeat_after))
    }

    /// Record an occurrence of any notice type.
    pub fn record(
        &mut self,
        user_id: Option<u32>,
        notice_type: &str,
        key: &str,
        data: BTreeMap<String, String>,
        repeat_after: Option<Duration>,
    ) -> u64 {
        let now = SystemTime::now();
        self.expire(now);
        if let Some(n) = self
            .notices
            .iter_mut()
            .find(|n| n.user_id == user_id && n.notice_type == notice_type && n.key == key)
        {
            n.occurrences += 1;
            n.last = now;
            n.last_data = data;
            let repeat = match n.repeat_after.or(repeat_after) {
                None => true,
                Some(ra) => now.duration_since(n.last_repeated).unwrap_or_default() >= ra,
            };
            n.repeat_after = repeat_after;
            if repeat {
                n.last_repeated = now;
                self.next_seq += 1;
                n.repeat_seq = self.next_seq;
            }
            return n.id;
        }
        self.next_id += 1;
        self.next_seq += 1;
        self.notices.push(NoticeRec {
            id: self.next_id,
            user_id,
            notice_type: notice_type.into(),
            key: key.into(),
            first: now,
            last: now,
            last_repeated: now,
            occurrences: 1,
            last_data: data,
            repeat_after,
            repeat_seq: self.next_seq,
        });
        self.next_id
    }

    fn expire(&mut self, now: SystemTime) {
        self.notices
            .retain(|n| now.duration_since(n.last).unwrap_or_default() < EXPIRE_AFTER);
    }

    /// Matching notices in the order they were last repeated.
    pub fn query(&self, f: &Filter) -> Vec<Notice> {
        let mut v: Vec<&NoticeRec> = self
            .notices
            .iter()
            .filter(|n| f.types.is_empty() || f.types.contains(&n.notice_type))
            .filter(|n| f.keys.is_empty() || f.keys.contains(&n.key))
            .filter(|n| f.after.is_none_or(|a| n.last_repeated > a))
            .filter(|n| match f.user {
                None => true,
                Some(uid) => n.user_id.is_none() || n.user_id == Some(uid),
            })
            .collect();
        v.sort_by_key(|n| (n.last_repeated, n.id));
        v.into_iter().map(NoticeRec::to_wire).collect()
    }

    pub fn get(&self, id: u64) -> Option<&NoticeRec> {
        self.notices.iter().find(|n| n.id == id)
    }

    /// Custom notices (any user) whose id is above `after_id`.
    pub fn custom_after_id(&self, after_id: u64) -> Vec<Notice> {
        let mut v: Vec<&NoticeRec> = self
            .notices
            .iter()
            .filter(|n| n.notice_type == "custom" && n.id > after_id)
            .collect();
        v.sort_by_key(|n| n.id);
        v.into_iter().map(NoticeRec::to_wire).collect()
    }

    /// Custom notices (any user) first recorded or repeated after `cursor`, with the new
    /// cursor: unlike ids, this catches a key that occurs again.
    pub fn custom_since(&self, cursor: u64) -> (Vec<Notice>, u64) {
        let mut v: Vec<&NoticeRec> = self
            .notices
            .iter()
            .filter(|n| n.notice_type == "custom" && n.repeat_seq > cursor)
            .collect();
        v.sort_by_key(|n| n.repeat_seq);
        let next = v.last().map(|n| n.repeat_seq).unwrap_or(cursor);
        (v.into_iter().map(NoticeRec::to_wire).collect(), next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_keys_follow_pebbles_regex() {
        assert!(valid_custom_key("example.com/x"));
        assert!(valid_custom_key("canonical.com/redis-k8s/switch-master"));
        assert!(!valid_custom_key("example/x"));
        assert!(!valid_custom_key("example.com"));
        assert!(!valid_custom_key("Example.com/x"));
        assert!(!valid_custom_key("ex--ample.com/x"));
        assert!(!valid_custom_key("example.com/x/"));
    }

    #[test]
    fn same_key_dedups_and_repeats_bump_the_cursor() {
        let mut s = NoticeStore::default();
        let a = s
            .add_custom(Some(0), "example.com/a", BTreeMap::new(), None)
            .unwrap();
        let (_, c1) = s.custom_since(0);
        let mut d = BTreeMap::new();
        d.insert("k".to_string(), "v".to_string());
        let b = s
            .add_custom(Some(0), "example.com/a", d.clone(), None)
            .unwrap();
        assert_eq!(a, b);
        let all = s.query(&Filter::default());
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].occurrences, 2);
        assert_eq!(all[0].last_data, d);
        let (again, c2) = s.custom_since(c1);
        assert_eq!(again.len(), 1);
        assert!(c2 > c1);
        assert!(s.custom_after_id(a).is_empty());
        // Another user's notice is separate and hidden from user 0 without users=all.
        s.add_custom(Some(102), "example.com/a", BTreeMap::new(), None)
            .unwrap();
        assert_eq!(
            s.query(&Filter {
                user: Some(0),
                ..Filter::default()
            })
            .len(),
            1
        );
        assert_eq!(s.query(&Filter::default()).len(), 2);
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration_string(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration_string(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration_string(Duration::from_millis(90_500)), "1m30.5s");
    }
}
