//! Leader election among three nodes in one process: one is elected, it is killed, the two
//! others (still a majority of the three voters) elect one of themselves; then the program
//! ends. The steps are in `demo.rs`; docs/ELECTION.md explains the election.
//!
//! ```text
//! cargo run -p gossip-server --example leader_election
//! ```

mod demo;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    demo::run(&mut std::io::stdout()).await
}
