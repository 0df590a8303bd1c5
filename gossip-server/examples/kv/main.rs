//! A replicated key-value store over three nodes on loopback, driven by commands on stdin:
//!
//! ```text
//! cargo run -p gossip-server --example kv               # type commands; `help` lists them
//! cargo run -p gossip-server --example kv -- --demo     # a built-in script, then it stops
//! printf 'put 0 color blue\nsync\nget 2 color\n' | cargo run -p gossip-server --example kv
//! cargo xtask wasm --full && cargo run -p gossip-server --example kv -- --serve 127.0.0.1:8090
//! ```
//!
//! It ends at `quit` or at the end of its input. How the store works: `store.rs`. With
//! `--serve ADDR` it also serves a small page (`page.rs`) on which a browser tab, admitted by
//! node 0 without the cluster key, lists and sets the same keys through the JavaScript state API
//! of `gossip-wasm-full`; the commands on stdin keep working meanwhile.

mod page;
mod store;

/// What `--demo` runs: writes on different nodes, reads everywhere after `sync`.
const DEMO: &str = "\
# put on node 0, read on node 2
put 0 color blue
sync
get 2 color
# a later write on node 1 supersedes it everywhere
put 1 color green
put 2 size large
sync
list 0
# a delete on node 2 hides node 1's value
delete 2 color
sync
get 0 color
list 1
";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let serve = args
        .iter()
        .position(|a| a == "--serve")
        .map(|i| args.get(i + 1).map_or("127.0.0.1:8090", String::as_str));
    let Some(addr) = serve else {
        return cli(store::cluster(3).await?).await;
    };
    let nodes = store::cluster_with(3, Some(page::admission())).await?;
    let bound = page::serve(&nodes, addr.parse()?).await?;
    println!("kv page: http://{bound}/");
    cli(nodes).await
}

async fn cli(nodes: Vec<gossip_server::Gossip>) -> Result<(), Box<dyn std::error::Error>> {
    let stdout = tokio::io::stdout();
    if std::env::args().any(|a| a == "--demo") {
        store::run(nodes, DEMO.as_bytes(), stdout).await
    } else {
        let stdin = tokio::io::BufReader::new(tokio::io::stdin());
        store::run(nodes, stdin, stdout).await
    }
}
