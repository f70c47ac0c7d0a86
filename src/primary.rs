//! Who is primary. Sentinel is the source of truth; the peer databag's `leader-host` only
//! records it for clients. A (re)starting unit asks the other units' sentinels first, so a
//! restarted former primary never comes back as a second primary.

use std::collections::BTreeMap;

use crate::literals::SENTINEL_PORT;
use crate::redis_client::{value_to_string, RedisConn};

/// The sentinels' answer about the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SentinelView {
    /// A majority of the sentinels that answered name this host.
    Agreed(String),
    /// Sentinels answered but disagree (a failover is probably running).
    Disagree(BTreeMap<String, usize>),
    /// No sentinel answered.
    Unreachable,
}

/// Ask each host's sentinel `SENTINEL GET-MASTER-ADDR-BY-NAME <name>`.
pub fn ask_sentinels(hosts: &[String], name: &str, sentinel_password: &str) -> SentinelView {
    let mut votes: BTreeMap<String, usize> = BTreeMap::new();
    let mut answered = 0usize;
    for host in hosts {
        let answer = RedisConn::connect(host, SENTINEL_PORT, Some(sentinel_password))
            .and_then(|mut c| c.command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name]));
        match answer {
            Ok(redis::Value::Array(items)) if !items.is_empty() => {
                answered += 1;
                *votes.entry(value_to_string(&items[0])).or_default() += 1;
            }
            Ok(_) => answered += 1,
            Err(e) => tracing::debug!(%host, error = %e, "sentinel did not answer"),
        }
    }
    decide(votes, answered)
}

/// A strict majority of the answers wins.
pub fn decide(votes: BTreeMap<String, usize>, answered: usize) -> SentinelView {
    if answered == 0 {
        return SentinelView::Unreachable;
    }
    match votes.iter().max_by_key(|(_, n)| **n) {
        Some((host, n)) if *n * 2 > answered => SentinelView::Agreed(host.clone()),
        _ => SentinelView::Disagree(votes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_of_answers_decides() {
        let mut v = BTreeMap::new();
        v.insert("a".to_string(), 2);
        v.insert("b".to_string(), 1);
        assert_eq!(decide(v.clone(), 3), SentinelView::Agreed("a".into()));
        assert!(matches!(decide(v, 4), SentinelView::Disagree(_)));
        assert_eq!(decide(BTreeMap::new(), 0), SentinelView::Unreachable);
    }
}
