//! Charm config, validated once per hook into typed values. An invalid option blocks the
//! unit with a message naming it; nothing is rendered or restarted from invalid config.

use std::collections::BTreeMap;

use serde_json::Value;

/// A config option that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct ConfigError {
    pub option: &'static str,
    pub reason: String,
}

/// The [`ConfigError::option`] of a problem with the TLS resources (`enable-tls=true` and
/// the certificates missing or unusable): its message is the reason alone, as the Python
/// charm's `Not enough certificates found`.
pub const TLS_RESOURCES: &str = "(tls resources)";

impl ConfigError {
    /// The status message: `invalid config option '<option>': <reason>`, or the reason
    /// alone for [`TLS_RESOURCES`].
    pub fn message(&self) -> String {
        if self.option == TLS_RESOURCES {
            self.reason.clone()
        } else {
            format!("invalid config option '{}': {}", self.option, self.reason)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Verbose,
    Notice,
    Warning,
}

impl LogLevel {
    pub fn as_str(&self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Verbose => "verbose",
            LogLevel::Notice => "notice",
            LogLevel::Warning => "warning",
        }
    }
}

const POLICIES: &[&str] = &[
    "noeviction",
    "allkeys-lru",
    "volatile-lru",
    "allkeys-lfu",
    "volatile-lfu",
    "allkeys-random",
    "volatile-random",
    "volatile-ttl",
];

/// The validated config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharmConfig {
    pub enable_tls: bool,
    /// The certificates when `enable-tls` is on: not an option, read from the resources by
    /// the charm after validation ([`crate::tls::load`]); `None` from [`CharmConfig::from_map`].
    pub tls: Option<crate::tls::TlsMaterial>,
    pub down_after_ms: u64,
    pub failover_timeout_ms: u64,
    /// Bytes, as Redis takes it (`0` = no limit); normalised to a plain number.
    pub maxmemory: u64,
    pub maxmemory_policy: &'static str,
    pub appendonly: bool,
    /// `(seconds, changes)` pairs; empty disables RDB snapshots.
    pub save: Vec<(u64, u64)>,
    pub log_level: LogLevel,
    pub cluster_domain: String,
    /// `min-replicas-to-write`: `None` is automatic (see [`CharmConfig::min_replicas_to_write`]).
    pub min_replicas_to_write: Option<u64>,
    /// `min-replicas-max-lag` in seconds (at least 1).
    pub min_replicas_max_lag: u64,
    /// `allow-no-auth`: Redis's default user takes any password (for old clients).
    pub allow_no_auth: bool,
    /// `password-rotation-grace`: seconds the old password stays accepted after the switch.
    pub password_rotation_grace: u64,
}

impl Default for CharmConfig {
    fn default() -> Self {
        CharmConfig::from_map(&BTreeMap::new()).expect("defaults are valid")
    }
}

fn get<'a>(map: &'a BTreeMap<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

fn boolean(
    map: &BTreeMap<String, Value>,
    key: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match get(map, key) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(ConfigError {
            option: key,
            reason: format!("expected true or false, got {other}"),
        }),
    }
}

fn int_range(
    map: &BTreeMap<String, Value>,
    key: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    // Bounds checked as signed values, so a negative input names the range, not a cast error.
    let n = int_range_signed(map, key, default as i64, min as i64, max as i64)?;
    Ok(n as u64)
}

/// Like [`int_range`] for options where a negative value has a meaning (`-1` = automatic).
fn int_range_signed(
    map: &BTreeMap<String, Value>,
    key: &'static str,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, ConfigError> {
    let v = match get(map, key) {
        None => return Ok(default),
        Some(v) => v,
    };
    let n = v.as_i64().ok_or_else(|| ConfigError {
        option: key,
        reason: format!("expected an integer, got {v}"),
    })?;
    if n < min || n > max {
        return Err(ConfigError {
            option: key,
            reason: format!("must be between {min} and {max}, got {n}"),
        });
    }
    Ok(n)
}

fn string<'a>(
    map: &'a BTreeMap<String, Value>,
    key: &'static str,
    default: &'a str,
) -> Result<&'a str, ConfigError> {
    match get(map, key) {
        None => Ok(default),
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(other) => Err(ConfigError {
            option: key,
            reason: format!("expected a string, got {other}"),
        }),
    }
}

/// `512mb` → bytes, with Redis's units (k/kb, m/mb, g/gb; k = 1000, kb = 1024).
pub fn parse_memory(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let factor = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(factor)
}

impl CharmConfig {
    /// The `min-replicas-to-write` Redis should use with `planned_units` units.
    /// `primary_without_replica` is true on a primary that has no replica in sync yet.
    ///
    /// Automatic (`-1`): one acknowledged replica once there are at least three units, so a
    /// primary cut off from every replica stops taking writes that a failover would discard;
    /// off with fewer units, where requiring a replica would stop writes whenever the only
    /// replica restarts. A primary that has never had a replica in sync (a fresh deployment,
    /// before the first full sync) keeps it off too, so it is writable as soon as it runs; the
    /// next converge or update-status turns it on.
    pub fn min_replicas_to_write(
        &self,
        planned_units: usize,
        primary_without_replica: bool,
    ) -> u64 {
        match self.min_replicas_to_write {
            Some(n) => n,
            None if planned_units >= 3 && !primary_without_replica => 1,
            None => 0,
        }
    }

    /// Validate `config-get --all` output.
    pub fn from_map(map: &BTreeMap<String, Value>) -> Result<CharmConfig, ConfigError> {
        // The certificates come from the resources (crate::tls), read by the charm.
        let enable_tls = boolean(map, "enable-tls", false)?;
        let down_after_ms = int_range(
            map,
            "sentinel-down-after-milliseconds",
            5000,
            100,
            3_600_000,
        )?;
        let failover_timeout_ms =
            int_range(map, "sentinel-failover-timeout", 30000, 1000, 86_400_000)?;
        let mm_raw = string(map, "maxmemory", "0")?;
        let maxmemory = parse_memory(mm_raw).ok_or_else(|| ConfigError {
            option: "maxmemory",
            reason: format!("expected bytes or a size like 512mb, got {mm_raw:?}"),
        })?;
        let policy_raw = string(map, "maxmemory-policy", "noeviction")?;
        let maxmemory_policy = POLICIES
            .iter()
            .find(|p| **p == policy_raw)
            .copied()
            .ok_or_else(|| ConfigError {
                option: "maxmemory-policy",
                reason: format!("must be one of {}, got {policy_raw:?}", POLICIES.join(", ")),
            })?;
        let appendonly = boolean(map, "appendonly", true)?;
        let save_raw = string(map, "save", "3600 1 300 100 60 10000")?;
        let nums: Result<Vec<u64>, _> = save_raw.split_whitespace().map(str::parse).collect();
        let save = match nums {
            Ok(n) if n.len() % 2 == 0 => n.chunks(2).map(|c| (c[0], c[1])).collect(),
            _ => {
                return Err(ConfigError {
                    option: "save",
                    reason: format!("expected pairs of \"seconds changes\", got {save_raw:?}"),
                })
            }
        };
        let log_raw = string(map, "log-level", "notice")?;
        let log_level = match log_raw {
            "debug" => LogLevel::Debug,
            "verbose" => LogLevel::Verbose,
            "notice" => LogLevel::Notice,
            "warning" => LogLevel::Warning,
            other => {
                return Err(ConfigError {
                    option: "log-level",
                    reason: format!("must be debug, verbose, notice or warning, got {other:?}"),
                })
            }
        };
        let domain = string(map, "cluster-domain", "cluster.local")?;
        let valid_domain = !domain.is_empty()
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !valid_domain {
            return Err(ConfigError {
                option: "cluster-domain",
                reason: format!("not a valid DNS domain: {domain:?}"),
            });
        }
        let mrw = int_range_signed(map, "min-replicas-to-write", -1, -1, 1000)?;
        let min_replicas_to_write = u64::try_from(mrw).ok();
        let min_replicas_max_lag = int_range(map, "min-replicas-max-lag", 10, 1, 3600)?;
        let allow_no_auth = boolean(map, "allow-no-auth", false)?;
        let password_rotation_grace =
            int_range(map, "password-rotation-grace", 300, 0, 30 * 86_400)?;
        Ok(CharmConfig {
            allow_no_auth,
            password_rotation_grace,
            min_replicas_to_write,
            min_replicas_max_lag,
            enable_tls,
            tls: None,
            down_after_ms,
            failover_timeout_ms,
            maxmemory,
            maxmemory_policy,
            appendonly,
            save,
            log_level,
            cluster_domain: domain.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn defaults_match_the_python_charm_timings() {
        let c = CharmConfig::default();
        assert_eq!(c.down_after_ms, 5000);
        assert_eq!(c.failover_timeout_ms, 30000);
        assert!(c.appendonly);
        assert_eq!(c.cluster_domain, "cluster.local");
        assert!(
            !c.allow_no_auth,
            "authentication is on unless asked otherwise"
        );
        assert_eq!(c.password_rotation_grace, 300);
    }

    #[test]
    fn password_options_are_validated() {
        let c = CharmConfig::from_map(&map(&[
            ("allow-no-auth", Value::Bool(true)),
            ("password-rotation-grace", Value::from(5)),
        ]))
        .unwrap();
        assert!(c.allow_no_auth);
        assert_eq!(c.password_rotation_grace, 5);
        let e = CharmConfig::from_map(&map(&[("password-rotation-grace", Value::from(-1))]))
            .unwrap_err();
        assert_eq!(e.option, "password-rotation-grace");
        let e = CharmConfig::from_map(&map(&[("allow-no-auth", Value::from("yes"))])).unwrap_err();
        assert_eq!(e.option, "allow-no-auth");
    }

    #[test]
    fn null_values_mean_default() {
        let c = CharmConfig::from_map(&map(&[("maxmemory", Value::Null)])).unwrap();
        assert_eq!(c.maxmemory, 0);
    }

    #[test]
    fn invalid_values_name_the_option() {
        let cases = [
            ("maxmemory", Value::from("lots")),
            ("maxmemory-policy", Value::from("random")),
            ("save", Value::from("60")),
            ("log-level", Value::from("loud")),
            ("cluster-domain", Value::from("bad domain")),
            ("sentinel-down-after-milliseconds", Value::from(5)),
            ("enable-tls", Value::from("yes")),
            ("min-replicas-to-write", Value::from(-2)),
            ("min-replicas-to-write", Value::from("one")),
            ("min-replicas-max-lag", Value::from(0)),
        ];
        for (k, v) in cases {
            let err = CharmConfig::from_map(&map(&[(k, v)])).unwrap_err();
            assert_eq!(err.option, k);
            assert!(err.to_string().contains(k));
        }
    }

    #[test]
    fn enable_tls_is_a_boolean_and_resource_problems_read_plainly() {
        let c = CharmConfig::from_map(&map(&[("enable-tls", Value::from(true))])).unwrap();
        assert!(c.enable_tls);
        assert!(c.tls.is_none(), "the certificates come from the resources");
        let e = ConfigError {
            option: TLS_RESOURCES,
            reason: "Not enough certificates found".into(),
        };
        assert_eq!(e.to_string(), "Not enough certificates found");
    }

    #[test]
    fn min_replicas_follow_the_topology_unless_set() {
        let auto = CharmConfig::default();
        assert_eq!(auto.min_replicas_max_lag, 10);
        assert_eq!(auto.min_replicas_to_write(1, false), 0);
        assert_eq!(auto.min_replicas_to_write(2, false), 0);
        assert_eq!(auto.min_replicas_to_write(3, false), 1);
        assert_eq!(auto.min_replicas_to_write(5, false), 1);
        assert_eq!(auto.min_replicas_to_write(3, true), 0);
        let fixed = CharmConfig::from_map(&map(&[
            ("min-replicas-to-write", Value::from(2)),
            ("min-replicas-max-lag", Value::from(3)),
        ]))
        .unwrap();
        assert_eq!(fixed.min_replicas_to_write(1, true), 2);
        assert_eq!(fixed.min_replicas_max_lag, 3);
        let off =
            CharmConfig::from_map(&map(&[("min-replicas-to-write", Value::from(0))])).unwrap();
        assert_eq!(off.min_replicas_to_write(3, false), 0);
    }

    #[test]
    fn memory_units_follow_redis() {
        assert_eq!(parse_memory("1kb"), Some(1024));
        assert_eq!(parse_memory("1k"), Some(1000));
        assert_eq!(parse_memory("2gb"), Some(2 * 1024 * 1024 * 1024));
        assert_eq!(parse_memory("0"), Some(0));
        assert_eq!(parse_memory("12xb"), None);
    }
}
