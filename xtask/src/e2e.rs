//! What the three headless-Chromium end-to-end tests (the dashboard, the chat example, the kv
//! example's page) share: install Chromium, Node and the test's npm dependencies when missing,
//! build, then run the test's Node script against a binary of the workspace test build.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Result;
use crate::demo::{ensure_chromium, ensure_node, root, run_in, target_dir};

/// One end-to-end test: a Node script in `dir` that starts the binary it is given.
pub(crate) struct E2e<'a> {
    /// The test's folder (its `package.json` pins `playwright-core`), relative to the workspace.
    pub dir: &'a str,
    /// The script to run there.
    pub script: &'a str,
    /// The environment variable through which the script receives the command to start (a JSON
    /// array).
    pub env: &'a str,
    /// The binary, relative to the target directory (for example `debug/examples/kv`).
    pub bin: &'a str,
    /// What is tested, for the error message.
    pub what: &'a str,
}

impl E2e<'_> {
    /// Installs what is missing, runs `build` (the wasm package the page loads, when the caller
    /// has not just built it), builds the workspace's tests, and runs the script.
    pub(crate) fn run(&self, build: impl FnOnce() -> Result) -> Result {
        ensure_chromium()?;
        ensure_node()?;
        let dir = root().join(self.dir);
        if !dir
            .join("node_modules/playwright-core/package.json")
            .exists()
        {
            run_in(&dir, "npm", &["ci", "--no-audit", "--no-fund"])?;
        }
        build()?;
        // The workspace test build compiles every binary and example: after `cargo test
        // --workspace` this is a no-op, where `cargo build -p ...` would unify features
        // differently and compile the dependencies a second time.
        run_in(
            &root(),
            "cargo",
            &["test", "--workspace", "--locked", "--no-run"],
        )?;
        // The test starts the binary just built (not `cargo run`, which could rebuild meanwhile).
        let bin = self.binary()?;
        eprintln!("xtask: $ (cd {}) node {}", dir.display(), self.script);
        let status = Command::new("node")
            .arg(self.script)
            .current_dir(&dir)
            .env(self.env, command_json(&bin))
            .status()
            .map_err(|e| format!("cannot start node: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{}'s end-to-end test failed ({status})", self.what))
        }
    }

    fn binary(&self) -> Result<PathBuf> {
        let bin = target_dir()?.join(format!("{}{}", self.bin, std::env::consts::EXE_SUFFIX));
        if bin.exists() {
            Ok(bin)
        } else {
            Err(format!(
                "{} is missing after `cargo test --workspace --no-run`",
                bin.display()
            ))
        }
    }
}

/// The one-element JSON array of strings the scripts parse their command from.
fn command_json(bin: &Path) -> String {
    let escaped = bin
        .to_string_lossy()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!("[\"{escaped}\"]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_with_quotes_and_backslashes_stays_one_json_string() {
        assert_eq!(
            command_json(Path::new(r#"/t/a "b"\c"#)),
            r#"["/t/a \"b\"\\c"]"#
        );
    }
}
