//! The `kv` example, run as a user runs it: the same code (`examples/kv/store.rs`, included
//! below) with three real nodes on 127.0.0.1 and a script on its input, checking every line it
//! prints. Cargo gives integration tests no path to example binaries, so the test drives the
//! example's own module instead of a process.

#[path = "../examples/kv/store.rs"]
mod store;

const SCRIPT: &str = "\
put 0 color blue
put 1 size large
sync
get 2 color
get 0 size
put 2 color green
sync
get 0 color
get 1 color
list 1
delete 0 color
sync
get 2 color
list 0
get 1 missing
get 7 color
frobnicate
# the end
quit
put 0 never run
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kv_example_replicates_puts_and_deletes_across_three_nodes() {
    let nodes = store::cluster(3).await.expect("three nodes on loopback");
    let handles = nodes.clone();
    let mut out = Vec::new();
    store::run(nodes, SCRIPT.as_bytes(), &mut out)
        .await
        .expect("the script runs");
    let out = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    let synced = |l: &str| l.starts_with("synced in ");
    assert_eq!(lines.len(), 18, "{out}");
    assert_eq!(lines[..2], ["ok", "ok"], "{out}");
    assert!(synced(lines[2]), "{out}");
    assert_eq!(lines[3..5], ["blue", "large"], "{out}");
    assert_eq!(lines[5], "ok", "{out}");
    assert!(synced(lines[6]), "{out}");
    // Node 2's later write supersedes node 0's on every node.
    assert_eq!(
        lines[7..10],
        ["green", "green", "[color=green size=large]"],
        "{out}"
    );
    assert_eq!(lines[10], "ok", "{out}");
    assert!(synced(lines[11]), "{out}");
    // Node 0's delete hides node 2's value.
    assert_eq!(lines[12..15], ["(none)", "[size=large]", "(none)"], "{out}");
    assert_eq!(lines[15], "error: no node 7 (0-2)", "{out}");
    assert!(lines[16].starts_with("unknown command"), "{out}");
    assert_eq!(lines[17], "# the end", "{out}");
    // `quit` stopped it: the nodes are shut down and the last line never ran.
    assert!(handles.iter().all(gossip_server::Gossip::is_stopped));
}

#[test]
fn foreign_values_under_the_prefix_are_ignored() {
    // Another member may write anything under `kv/`: the store decodes or skips, never panics.
    for bytes in [
        &b""[..],
        b"1234567",
        b"12345678",
        b"12345678\x02x",
        b"12345678\x00x",
    ] {
        assert!(store::decode_for_test(bytes).is_none(), "{bytes:?}");
    }
    assert!(store::decode_for_test(b"12345678\x01").is_some());
    assert!(store::decode_for_test(b"12345678\x00").is_some());
}
