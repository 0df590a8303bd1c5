//! Every Rust snippet in `README.md` and `gossip-server/README.md` compiles as it is pasted: each
//! becomes a fresh crate outside this workspace, with the `[dependencies]` of the TOML block shown
//! before it (the gossip crates pointed at this checkout), and `cargo check --offline` must pass.
//!
//! The crate starts from a copy of the workspace's Cargo.lock, so nothing new is resolved: after
//! the build, every package in its lock must be one the workspace lock holds.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const READMES: &[&str] = &["README.md", "gossip-server/README.md"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// A Rust snippet and the dependencies listed for it.
#[derive(Debug)]
struct Snippet {
    name: String,
    dependencies: String,
    code: String,
}

/// The fenced blocks of a Markdown file: (info string, body).
fn fences(markdown: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in markdown.lines() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(info)) => open = Some((info.trim().to_owned(), String::new())),
            (Some(_), Some(_)) => out.extend(open.take()),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

/// The Rust snippets of a README, each with the TOML `[dependencies]` block nearest before it.
fn snippets(readme: &str) -> Vec<Snippet> {
    let text = std::fs::read_to_string(root().join(readme)).expect("the README");
    let stem = readme.trim_end_matches(".md").replace(['/', '.'], "-");
    let mut dependencies = None;
    let mut out = Vec::new();
    for (info, body) in fences(&text) {
        let lang = info.split(',').next().unwrap_or("");
        if lang == "toml" && body.contains("[dependencies]") {
            dependencies = Some(body);
        } else if lang == "rust" {
            let name = format!("snippet-{}-{}", stem.to_lowercase(), out.len() + 1);
            let dependencies = dependencies.clone().unwrap_or_else(|| {
                panic!("{readme}: Rust snippet {name} has no [dependencies] block before it")
            });
            out.push(Snippet {
                name,
                dependencies,
                code: body,
            });
        }
    }
    out
}

/// `gossip-server = "0.1"` becomes `gossip-server = { path = "<checkout>/gossip-server", version = "0.1" }`.
fn local(dependencies: &str) -> String {
    dependencies
        .lines()
        .map(|line| {
            let Some((name, value)) = line.split_once('=') else {
                return line.to_owned();
            };
            let name = name.trim();
            if !name.starts_with("gossip-") {
                return line.to_owned();
            }
            let path = root().join(name);
            assert!(path.join("Cargo.toml").exists(), "no crate {name} here");
            let value = value.split('#').next().unwrap_or("").trim();
            let path = path.display().to_string().replace('\\', "/");
            match value.strip_prefix('{') {
                Some(rest) => format!("{name} = {{ path = \"{path}\", {}", rest.trim_start()),
                None => format!("{name} = {{ path = \"{path}\", version = {value} }}"),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `(name, version)` of every package a Cargo.lock holds.
fn locked(lock: &Path) -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(lock).expect("a Cargo.lock");
    let mut out = BTreeSet::new();
    let mut name = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_owned());
        } else if let Some(v) = line.strip_prefix("version = ")
            && let Some(n) = name.take()
        {
            out.insert((n, v.trim_matches('"').to_owned()));
        }
    }
    out
}

fn target_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_relative() { root().join(t) } else { t })
        .unwrap_or_else(|| root().join("target"));
    // Not the workspace's own directory: the cargo running this test may hold its lock.
    target.join("readme-snippets")
}

#[test]
fn the_readme_snippets_compile_as_fresh_crates() {
    let snippets: Vec<Snippet> = READMES.iter().flat_map(|r| snippets(r)).collect();
    assert!(
        snippets.len() >= 2,
        "expected the axum snippets of both READMEs, found {snippets:#?}"
    );
    let workspace_lock = locked(&root().join("Cargo.lock"));
    let target = target_dir();
    for s in &snippets {
        assert!(
            s.code.contains("fn main()"),
            "{}: a snippet must be a whole program",
            s.name
        );
        let dir = target.join("crates").join(&s.name);
        std::fs::create_dir_all(dir.join("src")).unwrap();
        let manifest = format!(
            "[package]\nname = \"{}\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
             # Its own workspace, not a member of the one it sits under.\n[workspace]\n\n{}\n",
            s.name,
            local(&s.dependencies)
        );
        std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
        std::fs::write(dir.join("src/main.rs"), &s.code).unwrap();
        std::fs::copy(root().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
        let out = Command::new(env!("CARGO"))
            // `check`: the snippets' types and APIs are what drifts; linking would only cost disk and time.
            .args(["check", "--offline", "--quiet"])
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", target.join("target"))
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .expect("cargo starts");
        assert!(
            out.status.success(),
            "{} ({}) does not compile:\n{}\n--- manifest ---\n{}",
            s.name,
            dir.display(),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default()
        );
        let new: Vec<_> = locked(&dir.join("Cargo.lock"))
            .into_iter()
            .filter(|p| p.0 != s.name && !workspace_lock.contains(p))
            .collect();
        assert!(
            new.is_empty(),
            "{} resolved packages the workspace lock does not hold: {new:?}",
            s.name
        );
    }
}

#[test]
fn fences_and_dependency_rewriting() {
    let md = "text\n```toml\n[dependencies]\ngossip-server = \"0.1\" # note\ngossip-core = { version = \"0.1\", features = [\"fast\"] }\ntokio = \"1\"\n```\n\n```rust,no_run\nfn main() {}\n```\n";
    let f = fences(md);
    assert_eq!(f.len(), 2);
    assert_eq!(f[1], ("rust,no_run".into(), "fn main() {}\n".into()));
    let deps = local(&f[0].1);
    let server = root().join("gossip-server").display().to_string();
    let core = root().join("gossip-core").display().to_string();
    assert!(
        deps.contains(&format!(
            "gossip-server = {{ path = \"{server}\", version = \"0.1\" }}"
        )),
        "{deps}"
    );
    assert!(
        deps.contains(&format!(
            "gossip-core = {{ path = \"{core}\", version = \"0.1\", features = [\"fast\"] }}"
        )),
        "{deps}"
    );
    assert!(deps.contains("tokio = \"1\""), "{deps}");
}
