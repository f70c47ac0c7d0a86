//! Small additions to the in-memory [`World`] that only the local model needs.

use crate::ops::testing::world::World;

impl World {
    /// Give a unit the address the model allocated for it (each model has its own
    /// `127.A.B.0/24`), updating the Juju-set keys (`private-address`, `ingress-address`,
    /// `egress-subnets`) in every bag of the unit so relation data and `network-get` agree
    /// with where the unit's processes really listen.
    pub fn set_unit_address(&mut self, unit: &str, address: &str) {
        let Some(u) = self.units.get_mut(unit) else {
            return;
        };
        u.address = address.to_string();
        for rel in self.relations.values_mut() {
            if let Some(bag) = rel.data.get_mut(unit) {
                for key in ["private-address", "ingress-address"] {
                    if bag.contains_key(key) {
                        bag.insert(key.to_string(), address.to_string());
                    }
                }
                if bag.contains_key("egress-subnets") {
                    bag.insert("egress-subnets".to_string(), format!("{address}/32"));
                }
            }
        }
    }
}
