//! The model as a charm sees it during one hook, with every hook-tool answer cached.
//!
//! Each hook-tool call costs a process and an RPC in Juju, so the model reads config once,
//! leadership once, goal-state once, each databag once, and skips relation writes that would
//! not change anything. Writes update the cache, so a handler reads its own writes.

use std::cell::{OnceCell, RefCell};
use std::collections::BTreeMap;

use super::context::{Event, JujuContext};
use super::hookcmds::{GoalState, HookResult, HookTools};

/// Cached, typed access to the hook tools for one dispatch.
pub struct Model<'a> {
    tools: &'a dyn HookTools,
    ctx: &'a JujuContext,
    leader: OnceCell<bool>,
    config: OnceCell<BTreeMap<String, serde_json::Value>>,
    goal: OnceCell<GoalState>,
    relation_ids: RefCell<BTreeMap<String, Vec<u32>>>,
    units: RefCell<BTreeMap<u32, Vec<String>>>,
    bags: RefCell<BTreeMap<(u32, String), BTreeMap<String, String>>>,
}

impl<'a> Model<'a> {
    pub fn new(tools: &'a dyn HookTools, ctx: &'a JujuContext) -> Self {
        Self {
            tools,
            ctx,
            leader: OnceCell::new(),
            config: OnceCell::new(),
            goal: OnceCell::new(),
            relation_ids: RefCell::default(),
            units: RefCell::default(),
            bags: RefCell::default(),
        }
    }

    /// The raw hook tools, for calls the model does not wrap (actions, secrets, ports).
    pub fn tools(&self) -> &'a dyn HookTools {
        self.tools
    }

    pub fn context(&self) -> &'a JujuContext {
        self.ctx
    }

    pub fn unit_name(&self) -> &str {
        &self.ctx.unit_name
    }

    pub fn app_name(&self) -> &str {
        &self.ctx.app_name
    }

    /// `is-leader`, asked once per hook (a `true` holds for 30 s, longer than our hooks).
    pub fn is_leader(&self) -> HookResult<bool> {
        cached(&self.leader, || self.tools.is_leader())
    }

    /// Every config option (unset ones as null), read once.
    pub fn config(&self) -> HookResult<&BTreeMap<String, serde_json::Value>> {
        if self.config.get().is_none() {
            let value = self.tools.config_get()?;
            let _ = self.config.set(value);
        }
        Ok(self.config.get().expect("just set"))
    }

    pub fn goal_state(&self) -> HookResult<&GoalState> {
        if self.goal.get().is_none() {
            let value = self.tools.goal_state()?;
            let _ = self.goal.set(value);
        }
        Ok(self.goal.get().expect("just set"))
    }

    /// ops's `planned_units()`: goal-state units that are not dying.
    pub fn planned_units(&self) -> HookResult<usize> {
        Ok(self.goal_state()?.planned_units())
    }

    /// Relation ids of an endpoint. During `-relation-broken` the broken relation is hidden,
    /// as ops does, so code never writes to a relation that is going away.
    pub fn relation_ids(&self, endpoint: &str) -> HookResult<Vec<u32>> {
        if let Some(ids) = self.relation_ids.borrow().get(endpoint) {
            return Ok(ids.clone());
        }
        let mut ids = self.tools.relation_ids(endpoint)?;
        if let (Event::RelationBroken { endpoint: ep }, Some(rel)) =
            (&self.ctx.event, &self.ctx.relation)
        {
            if ep == endpoint {
                ids.retain(|id| *id != rel.id);
            }
        }
        self.relation_ids
            .borrow_mut()
            .insert(endpoint.to_string(), ids.clone());
        Ok(ids)
    }

    /// The first relation of an endpoint (peer relations have at most one).
    pub fn relation_id(&self, endpoint: &str) -> HookResult<Option<u32>> {
        Ok(self.relation_ids(endpoint)?.first().copied())
    }

    /// Remote units in scope. In `-departed`/`-broken` hooks ops adds the remote unit back;
    /// we do not, because the charm should treat it as gone.
    pub fn relation_units(&self, relation_id: u32) -> HookResult<Vec<String>> {
        if let Some(units) = self.units.borrow().get(&relation_id) {
            return Ok(units.clone());
        }
        let units = self.tools.relation_list(relation_id)?;
        self.units.borrow_mut().insert(relation_id, units.clone());
        Ok(units)
    }

    /// A databag: `owner` is a unit name, or an app name with `app = true`.
    pub fn relation_data(
        &self,
        relation_id: u32,
        owner: &str,
        app: bool,
    ) -> HookResult<BTreeMap<String, String>> {
        let key = (relation_id, bag_key(owner, app));
        if let Some(bag) = self.bags.borrow().get(&key) {
            return Ok(bag.clone());
        }
        let bag = self.tools.relation_get(relation_id, owner, app)?;
        self.bags.borrow_mut().insert(key, bag.clone());
        Ok(bag)
    }

    /// Write keys to our own unit bag (or app bag with `app`); `""` deletes. Keys whose value
    /// would not change are not sent; nothing at all is sent when nothing changes.
    pub fn update_relation_data(
        &self,
        relation_id: u32,
        app: bool,
        changes: &BTreeMap<String, String>,
    ) -> HookResult<bool> {
        let owner = if app {
            self.ctx.app_name.clone()
        } else {
            self.ctx.unit_name.clone()
        };
        let current = self.relation_data(relation_id, &owner, app)?;
        let delta: BTreeMap<String, String> = changes
            .iter()
            .filter(|(k, v)| match current.get(*k) {
                Some(old) => old != *v,
                None => !v.is_empty(),
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if delta.is_empty() {
            return Ok(false);
        }
        self.tools.relation_set(relation_id, &delta, app)?;
        let mut bags = self.bags.borrow_mut();
        let bag = bags.entry((relation_id, bag_key(&owner, app))).or_default();
        for (k, v) in delta {
            if v.is_empty() {
                bag.remove(&k);
            } else {
                bag.insert(k, v);
            }
        }
        Ok(true)
    }
}

fn bag_key(owner: &str, app: bool) -> String {
    if app {
        format!("app:{owner}")
    } else {
        owner.to_string()
    }
}

fn cached<T: Copy>(cell: &OnceCell<T>, f: impl FnOnce() -> HookResult<T>) -> HookResult<T> {
    if let Some(v) = cell.get() {
        return Ok(*v);
    }
    let v = f()?;
    let _ = cell.set(v);
    Ok(v)
}
