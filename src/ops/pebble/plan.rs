//! Pebble's layer rules, shared by the in-memory Pebble and the local model's server so both
//! combine layers exactly as real Pebble does (contract 4.4).
//!
//! - `override: replace` swaps the whole entry;
//! - `override: merge` replaces scalars that the new layer sets, appends `after`/`before`/
//!   `requires`, and merges the maps (`environment`, `on-check-failure`, http `headers`,
//!   exec `environment`); for log targets, appends `services` and merges `labels`.

use super::types::{Check, Layer, Plan, Service};

/// A layer Pebble would reject.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("layer {label:?} must define \"override\" for service {service:?}")]
    ServiceOverride { label: String, service: String },
    #[error("layer {label:?} must define \"override\" for check {check:?}")]
    CheckOverride { label: String, check: String },
    #[error("layer {label:?} has invalid \"override\" value {value:?} for {name:?}")]
    BadOverride {
        label: String,
        name: String,
        value: String,
    },
    #[error("plan must define \"command\" for service {0:?}")]
    MissingCommand(String),
    #[error("service {0:?} does not exist")]
    UnknownDependency(String),
}

/// Check a layer as `POST /v1/layers` does before accepting it.
pub fn validate_layer(label: &str, layer: &Layer) -> Result<(), PlanError> {
    let check_override =
        |name: &str, value: &Option<String>, missing: PlanError| match value.as_deref() {
            None | Some("") => Err(missing),
            Some("merge") | Some("replace") => Ok(()),
            Some(other) => Err(PlanError::BadOverride {
                label: label.to_string(),
                name: name.to_string(),
                value: other.to_string(),
            }),
        };
    for (name, svc) in &layer.services {
        check_override(
            name,
            &svc.r#override,
            PlanError::ServiceOverride {
                label: label.to_string(),
                service: name.clone(),
            },
        )?;
    }
    for (name, chk) in &layer.checks {
        check_override(
            name,
            &chk.r#override,
            PlanError::CheckOverride {
                label: label.to_string(),
                check: name.clone(),
            },
        )?;
    }
    Ok(())
}

/// Check a combined plan: every service has a command and known dependencies.
pub fn validate_plan(plan: &Plan) -> Result<(), PlanError> {
    for (name, svc) in &plan.services {
        if svc.command.as_deref().unwrap_or("").trim().is_empty() {
            return Err(PlanError::MissingCommand(name.clone()));
        }
        for dep in svc.after.iter().chain(&svc.before).chain(&svc.requires) {
            if !plan.services.contains_key(dep) {
                return Err(PlanError::UnknownDependency(dep.clone()));
            }
        }
    }
    Ok(())
}

fn set<T: Clone>(base: &mut Option<T>, overlay: &Option<T>) {
    if overlay.is_some() {
        base.clone_from(overlay);
    }
}

fn merge_service(base: &mut Service, overlay: &Service) {
    set(&mut base.summary, &overlay.summary);
    set(&mut base.description, &overlay.description);
    set(&mut base.r#override, &overlay.r#override);
    set(&mut base.command, &overlay.command);
    set(&mut base.startup, &overlay.startup);
    base.after.extend(overlay.after.iter().cloned());
    base.before.extend(overlay.before.iter().cloned());
    base.requires.extend(overlay.requires.iter().cloned());
    base.environment.extend(
        overlay
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    set(&mut base.user, &overlay.user);
    set(&mut base.user_id, &overlay.user_id);
    set(&mut base.group, &overlay.group);
    set(&mut base.group_id, &overlay.group_id);
    set(&mut base.working_dir, &overlay.working_dir);
    set(&mut base.on_success, &overlay.on_success);
    set(&mut base.on_failure, &overlay.on_failure);
    base.on_check_failure.extend(
        overlay
            .on_check_failure
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    set(&mut base.backoff_delay, &overlay.backoff_delay);
    set(&mut base.backoff_factor, &overlay.backoff_factor);
    set(&mut base.backoff_limit, &overlay.backoff_limit);
    set(&mut base.kill_delay, &overlay.kill_delay);
}

fn merge_check(base: &mut Check, overlay: &Check) {
    set(&mut base.r#override, &overlay.r#override);
    set(&mut base.level, &overlay.level);
    set(&mut base.startup, &overlay.startup);
    set(&mut base.period, &overlay.period);
    set(&mut base.timeout, &overlay.timeout);
    set(&mut base.threshold, &overlay.threshold);
    match (&mut base.http, &overlay.http) {
        (Some(b), Some(o)) => {
            b.url.clone_from(&o.url);
            b.headers
                .extend(o.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        (b, o) => set(b, o),
    }
    set(&mut base.tcp, &overlay.tcp);
    match (&mut base.exec, &overlay.exec) {
        (Some(b), Some(o)) => {
            let env = std::mem::take(&mut b.environment);
            *b = o.clone();
            let mut merged = env;
            merged.extend(o.environment.iter().map(|(k, v)| (k.clone(), v.clone())));
            b.environment = merged;
        }
        (b, o) => set(b, o),
    }
}

/// A log target with `override: merge` on top of an existing one: scalars it sets replace,
/// `services` are appended (later `-x` / `-all` entries remove, see
/// [`super::types::LogTarget::logs_to`]), `labels` are merged. `None` when the overlay
/// replaces the entry (or either side is not a target's shape): the overlay is taken whole.
fn merge_log_target(
    base: &serde_yaml::Value,
    overlay: &serde_yaml::Value,
) -> Option<serde_yaml::Value> {
    use super::types::LogTarget;
    let over = LogTarget::from_value(overlay)?;
    if over.r#override.as_deref() != Some("merge") {
        return None;
    }
    let mut merged = LogTarget::from_value(base)?;
    set(&mut merged.r#override, &over.r#override);
    set(&mut merged.target_type, &over.target_type);
    set(&mut merged.location, &over.location);
    merged.services.extend(over.services.iter().cloned());
    merged
        .labels
        .extend(over.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    Some(merged.to_value())
}

/// Apply `overlay` on top of `base` with Pebble's override rules.
pub fn merge_layer(base: &mut Layer, overlay: &Layer) {
    set(&mut base.summary, &overlay.summary);
    set(&mut base.description, &overlay.description);
    for (name, svc) in &overlay.services {
        match (svc.r#override.as_deref(), base.services.get_mut(name)) {
            (Some("merge"), Some(existing)) => merge_service(existing, svc),
            _ => {
                base.services.insert(name.clone(), svc.clone());
            }
        }
    }
    for (name, chk) in &overlay.checks {
        match (chk.r#override.as_deref(), base.checks.get_mut(name)) {
            (Some("merge"), Some(existing)) => merge_check(existing, chk),
            _ => {
                base.checks.insert(name.clone(), chk.clone());
            }
        }
    }
    for (name, target) in &overlay.log_targets {
        let merged = base
            .log_targets
            .get(name)
            .and_then(|existing| merge_log_target(existing, target));
        base.log_targets
            .insert(name.clone(), merged.unwrap_or_else(|| target.clone()));
    }
}

/// The combined plan of ordered, labelled layers.
pub fn combine_plan(layers: &[(String, Layer)]) -> Plan {
    let mut plan = Plan::default();
    for (_, layer) in layers {
        merge_layer(&mut plan, layer);
    }
    // The plan itself carries no layer metadata.
    plan.summary = None;
    plan.description = None;
    plan
}

/// Add a layer to an ordered list the way `POST /v1/layers` does: with `combine`, merge
/// into the layer of the same label (or append); without, a duplicate label is an error.
pub fn add_layer(
    layers: &mut Vec<(String, Layer)>,
    label: &str,
    layer: &Layer,
    combine: bool,
) -> Result<(), AddLayerError> {
    validate_layer(label, layer).map_err(AddLayerError::Invalid)?;
    match layers.iter_mut().find(|(l, _)| l == label) {
        Some(_) if !combine => Err(AddLayerError::Exists(label.to_string())),
        Some((_, existing)) => {
            merge_layer(existing, layer);
            Ok(())
        }
        None => {
            layers.push((label.to_string(), layer.clone()));
            Ok(())
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddLayerError {
    #[error(transparent)]
    Invalid(PlanError),
    #[error("layer {0:?} already exists")]
    Exists(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(over: &str, command: &str) -> Service {
        Service {
            r#override: Some(over.into()),
            command: Some(command.into()),
            ..Service::default()
        }
    }

    #[test]
    fn merge_appends_lists_merges_maps_and_replaces_scalars() {
        let mut base = Layer::default();
        let mut a = svc("replace", "redis-server a");
        a.after = vec!["x".into()];
        a.environment.insert("A".into(), "1".into());
        base.services.insert("redis".into(), a);
        let mut overlay = Layer::default();
        let mut b = svc("merge", "redis-server b");
        b.after = vec!["y".into()];
        b.environment.insert("B".into(), "2".into());
        overlay.services.insert("redis".into(), b);
        merge_layer(&mut base, &overlay);
        let s = &base.services["redis"];
        assert_eq!(s.command.as_deref(), Some("redis-server b"));
        assert_eq!(s.after, vec!["x".to_string(), "y".to_string()]);
        assert_eq!(s.environment.len(), 2);
    }

    #[test]
    fn replace_swaps_the_whole_entry() {
        let mut base = Layer::default();
        let mut a = svc("replace", "one");
        a.user = Some("redis".into());
        base.services.insert("s".into(), a);
        let mut overlay = Layer::default();
        overlay.services.insert("s".into(), svc("replace", "two"));
        merge_layer(&mut base, &overlay);
        assert_eq!(base.services["s"].user, None);
        assert_eq!(base.services["s"].command.as_deref(), Some("two"));
    }

    #[test]
    fn add_layer_rejects_duplicates_without_combine_and_missing_override() {
        let mut layers = Vec::new();
        let mut l = Layer::default();
        l.services.insert("s".into(), svc("replace", "a"));
        add_layer(&mut layers, "base", &l, false).unwrap();
        assert_eq!(
            add_layer(&mut layers, "base", &l, false),
            Err(AddLayerError::Exists("base".into()))
        );
        add_layer(&mut layers, "base", &l, true).unwrap();
        assert_eq!(layers.len(), 1);
        let mut bad = Layer::default();
        bad.services.insert("t".into(), Service::default());
        assert!(matches!(
            add_layer(&mut layers, "bad", &bad, true),
            Err(AddLayerError::Invalid(PlanError::ServiceOverride { .. }))
        ));
    }

    #[test]
    fn log_targets_merge_services_and_labels_or_are_replaced_whole() {
        use crate::ops::pebble::LogTarget;
        let t = |over: &str, loc: Option<&str>, services: &[&str], labels: &[(&str, &str)]| {
            LogTarget {
                r#override: Some(over.into()),
                target_type: Some("loki".into()),
                location: loc.map(str::to_string),
                services: services.iter().map(|s| s.to_string()).collect(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }
            .to_value()
        };
        let mut base = Layer::default();
        base.log_targets.insert(
            "l".into(),
            t(
                "replace",
                Some("http://a/p"),
                &["svc1", "svc2"],
                &[("a", "1")],
            ),
        );
        let mut merge = Layer::default();
        merge
            .log_targets
            .insert("l".into(), t("merge", None, &["-svc1"], &[("b", "2")]));
        merge_layer(&mut base, &merge);
        let got = LogTarget::from_value(&base.log_targets["l"]).unwrap();
        assert_eq!(got.location.as_deref(), Some("http://a/p"));
        assert_eq!(got.services, ["svc1", "svc2", "-svc1"]);
        assert!(!got.logs_to("svc1") && got.logs_to("svc2"));
        assert_eq!(got.labels.len(), 2);
        let mut replace = Layer::default();
        replace
            .log_targets
            .insert("l".into(), t("replace", Some("(removed)"), &["-all"], &[]));
        merge_layer(&mut base, &replace);
        let got = LogTarget::from_value(&base.log_targets["l"]).unwrap();
        assert_eq!(got.services, ["-all"]);
        assert!(got.labels.is_empty());
    }

    #[test]
    fn later_layers_win_in_the_combined_plan() {
        let mut one = Layer::default();
        one.services.insert("s".into(), svc("replace", "a"));
        let mut two = Layer::default();
        two.services.insert("s".into(), svc("merge", "b"));
        let plan = combine_plan(&[("1".into(), one), ("2".into(), two)]);
        assert_eq!(plan.services["s"].command.as_deref(), Some("b"));
        assert!(validate_plan(&plan).is_ok());
    }
}
