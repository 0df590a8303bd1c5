//! The `leader_election` example, run as a user runs it: the same code
//! (`examples/leader_election/demo.rs`, included below) on real sockets, checking what it prints.
//! Cargo gives integration tests no path to example binaries, so the test drives the example's
//! own module instead of a process.

#[path = "../examples/leader_election/demo.rs"]
mod demo;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_election_example_elects_twice() {
    let mut out = Vec::new();
    demo::run(&mut out).await.expect("the example runs");
    let out = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let first = lines[0].split(' ').next().unwrap();
    assert!(["alpha", "bravo", "charlie"].contains(&first), "{out}");
    assert!(lines[0].contains(" leads (term "), "{out}");
    assert_eq!(lines[1], format!("{first} crashed"), "{out}");
    let second = lines[2].split(' ').next().unwrap();
    assert_ne!(second, first, "{out}");
    assert!(lines[2].ends_with("elected by 2 of the 3 voters"), "{out}");
}
