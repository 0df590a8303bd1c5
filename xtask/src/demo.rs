//! `cargo xtask demo` runs the live dashboard; `cargo xtask e2e` (part of `cargo xtask test`)
//! drives it in headless Chromium.
//!
//! Both build what they need first: the `gossip-wasm` npm package the page loads, and the
//! `web-demo` binary. The end-to-end test also installs, only when missing, Chromium (apt) and
//! its Node dependencies (npm, pinned by `web-demo/e2e/package-lock.json`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Result;

const CHROMIUM: &str = "/usr/bin/chromium";

/// The workspace root (xtask lives one level below it).
pub(crate) fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Builds the wasm package and the demo, then becomes the demo: Ctrl-C reaches it directly and
/// it stops every member before exiting. `args` go to `web-demo` (`--members N`, `--port P`,
/// `--bind IP`).
pub fn demo(args: &[String]) -> Result {
    build_wasm_package()?;
    // The dev profile: the workspace builds every dependency and the core optimized in it, so the
    // demo runs as fast, and shares its build with `cargo xtask test` instead of a second one.
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root())
        .args(["run", "--locked", "-p", "web-demo", "--"])
        .args(args);
    eprintln!(
        "xtask: $ cargo run --locked -p web-demo -- {}",
        args.join(" ")
    );
    eprintln!("xtask: the dashboard's URL follows once the cluster is up; Ctrl-C stops everything");
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Replace this process, so no parent is left to race the demo's graceful stop.
        let err = cmd.exec();
        Err(format!("cannot start cargo: {err}"))
    }
    #[cfg(not(unix))]
    {
        let status = cmd
            .status()
            .map_err(|e| format!("cannot start cargo: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("the demo failed ({status})"))
        }
    }
}

/// Installs what is missing, builds (the wasm package too, with `build_package`), and runs
/// `web-demo/e2e/dashboard.mjs`, which starts the demo on free ports, drives two tabs in headless
/// Chromium, saves `docs/dashboard.png` (and `dashboard-{390,1400,1920}.png`), and stops the demo
/// (also on failure).
pub fn e2e(build_package: bool) -> Result {
    // web-demo's own CLI test makes the workspace test build build the binary.
    crate::e2e::E2e {
        dir: "web-demo/e2e",
        script: "dashboard.mjs",
        env: "DEMO_CMD",
        bin: "debug/web-demo",
        what: "the dashboard",
    }
    .run(|| {
        if build_package {
            build_wasm_package()?;
        }
        Ok(())
    })
}

/// Installs what is missing, builds (the full wasm package too, with `build_package`), and runs
/// `gossip-server/examples/kv/e2e/kv.mjs`: the kv example's page in headless Chromium, a tab
/// admitted without the cluster key listing and setting keys that the native nodes see.
pub fn kv_e2e(build_package: bool) -> Result {
    crate::e2e::E2e {
        dir: "gossip-server/examples/kv/e2e",
        script: "kv.mjs",
        env: "KV_CMD",
        bin: "debug/examples/kv",
        what: "the kv page",
    }
    .run(|| {
        if build_package {
            crate::setup()?;
            crate::wasm::package_flavour(crate::wasm::Flavour::Full)?;
        }
        Ok(())
    })
}

/// The target directory cargo builds in.
pub(crate) fn target_dir() -> Result<PathBuf> {
    Ok(
        match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
            // Cargo takes a relative target dir from where it was started, as xtask was.
            Some(dir) if dir.is_relative() => std::env::current_dir()
                .map_err(|e| format!("no current directory: {e}"))?
                .join(dir),
            Some(dir) => dir,
            None => root().join("target"),
        },
    )
}

/// The npm package of `gossip-wasm` in `gossip-wasm/pkg` (what `cargo xtask wasm` builds), with
/// what building it needs on a fresh machine: the wasm32 target, Node.js and npm.
pub(crate) fn build_wasm_package() -> Result {
    crate::setup()?;
    ensure_node()?;
    crate::wasm::package().map(drop)
}

pub(crate) fn ensure_chromium() -> Result {
    if Path::new(CHROMIUM).exists() {
        return Ok(());
    }
    apt_install(&["chromium"])?;
    if Path::new(CHROMIUM).exists() {
        Ok(())
    } else {
        Err(format!("chromium was installed but {CHROMIUM} is missing"))
    }
}

pub(crate) fn ensure_node() -> Result {
    let has = |program: &str| {
        Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has("node") && has("npm") {
        return Ok(());
    }
    apt_install(&["nodejs", "npm"])
}

fn apt_install(packages: &[&str]) -> Result {
    run_in(&root(), "apt-get", &["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq"];
    args.extend_from_slice(packages);
    eprintln!("xtask: $ apt-get {}", args.join(" "));
    let status = Command::new("apt-get")
        .args(&args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("cannot start apt-get: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`apt-get {}` failed ({status})", args.join(" ")))
    }
}

pub(crate) fn run_in(dir: &Path, program: &str, args: &[&str]) -> Result {
    eprintln!(
        "xtask: $ (cd {}) {program} {}",
        dir.display(),
        args.join(" ")
    );
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .status()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed ({status})", args.join(" ")))
    }
}
