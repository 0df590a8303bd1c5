//! Checks of the replicated state over the whole simulated cluster.

use gossip_core::state::StateValue;

use crate::Sim;

impl Sim {
    /// Whether every running node holds exactly each running owner's own map (keys, values and
    /// versions), and no map of an owner that is not running.
    pub fn state_converged(&self) -> bool {
        let up = self.up();
        let owners: Vec<(gossip_core::NodeId, Vec<StateValue>)> = up
            .iter()
            .map(|&o| {
                let id = self.id(o);
                (id, self.nodes[o].node.state_entries(&id))
            })
            .collect();
        up.iter().all(|&i| {
            let node = &self.nodes[i].node;
            owners
                .iter()
                .all(|(id, map)| node.state_entries(id) == *map)
                && node
                    .state_owners()
                    .iter()
                    .all(|o| owners.iter().any(|(id, _)| id == o))
        })
    }

    /// Tombstones held by running nodes, all owners.
    pub fn state_tombstones(&self) -> usize {
        self.up()
            .iter()
            .map(|&i| self.nodes[i].node.state_stats().tombstones)
            .sum()
    }
}
