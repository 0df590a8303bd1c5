//! `cargo xtask wasm`: the npm package of `gossip-wasm`, its size budget, and its tests.
//!
//! The package is built from the `wasm-release` profile (opt-level "z", LTO, one codegen unit,
//! abort on panic), bound with wasm-bindgen (`--target web`, name and producers sections
//! removed) and shrunk with `wasm-opt -Oz --converge`. One `.wasm` serves both entries:
//! browsers load it with `fetch`, Node.js reads it from disk (its `fetch` cannot load `file:`
//! URLs).

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{Result, output, run};

/// Fail above this many gzipped bytes (the goal, recorded in docs/BENCHMARKS.md, is 120 KB).
const MAX_GZIP_BYTES: u64 = 200 * 1024;
/// The full flavour's budget (`pkg-full/`: the default package plus the replicated state, key
/// ownership and named endpoints, about 46 KB more; docs/BENCHMARKS.md, "Browser package size").
const MAX_FULL_GZIP_BYTES: u64 = 240 * 1024;

/// One build of the npm package: the default one, or the full one with the cargo features the
/// default budget has no room for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// `gossip-wasm/pkg/`, npm name `gossip-wasm`.
    Default,
    /// `gossip-wasm/pkg-full/`, npm name `gossip-wasm-full`: features `state`, `ownership` and
    /// `endpoints`.
    Full,
}

impl Flavour {
    fn dir(self) -> &'static str {
        match self {
            Flavour::Default => "gossip-wasm/pkg",
            Flavour::Full => "gossip-wasm/pkg-full",
        }
    }

    fn npm_name(self) -> &'static str {
        match self {
            Flavour::Default => "gossip-wasm",
            Flavour::Full => "gossip-wasm-full",
        }
    }

    fn features(self) -> &'static str {
        match self {
            Flavour::Default => "",
            Flavour::Full => "state,ownership,endpoints",
        }
    }

    fn budget(self) -> u64 {
        match self {
            Flavour::Default => MAX_GZIP_BYTES,
            Flavour::Full => MAX_FULL_GZIP_BYTES,
        }
    }
}
const PROFILE: &str = "wasm-release";
/// Features of the `.wasm` rustc emits for wasm32-unknown-unknown, so wasm-opt accepts them.
const WASM_FEATURES: &[&str] = &[
    "--enable-bulk-memory",
    "--enable-nontrapping-float-to-int",
    "--enable-sign-ext",
    "--enable-mutable-globals",
    "--enable-reference-types",
    "--enable-multivalue",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn have(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The `wasm-bindgen` crate's version in Cargo.lock, which the CLI must equal. The manifest's
/// range is a caret one; the lock decides.
fn wasm_bindgen_version() -> Result<String> {
    let lock = root().join("Cargo.lock");
    let text =
        fs::read_to_string(&lock).map_err(|e| format!("cannot read {}: {e}", lock.display()))?;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasm-bindgen\""
            && let Some(v) = lines
                .next()
                .and_then(|l| l.strip_prefix("version = \""))
                .and_then(|l| l.strip_suffix('"'))
        {
            return Ok(v.to_owned());
        }
    }
    Err(format!("no wasm-bindgen package in {}", lock.display()))
}

/// Installs what the package and its tests need, each only when missing.
pub fn setup() -> Result {
    let wasm_bindgen = wasm_bindgen_version()?;
    let version = output("wasm-bindgen", &["--version"]).unwrap_or_default();
    if !version.split_whitespace().any(|w| w == wasm_bindgen) {
        // No --locked: the CLI's own lockfile wants a webpki-roots the registry here lacks.
        run(
            "cargo",
            &["install", "wasm-bindgen-cli", "--version", &wasm_bindgen],
        )?;
    }
    let missing: Vec<&str> = [
        ("/usr/bin/chromium", "chromium"),
        ("/usr/bin/chromedriver", "chromium-driver"),
        ("/usr/bin/wasm-opt", "binaryen"),
    ]
    .into_iter()
    .filter(|(bin, _)| !Path::new(bin).exists())
    .map(|(_, pkg)| pkg)
    .collect();
    if !missing.is_empty() {
        run("apt-get", &["update", "-qq"])?;
        let mut args = vec!["install", "-y", "-qq"];
        args.extend(&missing);
        let status = Command::new("apt-get")
            .args(&args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| format!("cannot start apt-get: {e}"))?;
        if !status.success() {
            return Err(format!("apt-get install {} failed", missing.join(" ")));
        }
    }
    if !have("node", "--version") || !have("npm", "--version") {
        run("apt-get", &["update", "-qq"])?;
        let status = Command::new("apt-get")
            .args(["install", "-y", "-qq", "nodejs", "npm"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| format!("cannot start apt-get: {e}"))?;
        if !status.success() || !have("node", "--version") {
            return Err("node and npm are needed for the package tests".into());
        }
    }
    Ok(())
}

/// What `package` built.
pub struct Package {
    /// Which build.
    pub flavour: Flavour,
    /// The package folder.
    pub dir: PathBuf,
    /// The optimized `.wasm` in it.
    pub wasm: PathBuf,
}

/// `cargo xtask wasm`: builds `gossip-wasm/pkg/`.
pub fn package() -> Result<Package> {
    package_flavour(Flavour::Default)
}

/// `cargo xtask wasm [--full]`: builds `gossip-wasm/pkg/` or `gossip-wasm/pkg-full/`.
pub fn package_flavour(flavour: Flavour) -> Result<Package> {
    setup()?;
    let root = root();
    let started = Instant::now();
    let mut args = vec![
        "build",
        "--locked",
        "-p",
        "gossip-wasm",
        "--lib",
        "--target",
        crate::WASM_TARGET,
        "--profile",
        PROFILE,
    ];
    if !flavour.features().is_empty() {
        args.extend(["--features", flavour.features()]);
    }
    run("cargo", &args)?;
    let target_dir = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let raw = target_dir
        .join(crate::WASM_TARGET)
        .join(PROFILE)
        .join("gossip_wasm.wasm");
    let pkg = root.join(flavour.dir());
    if pkg.exists() {
        fs::remove_dir_all(&pkg).map_err(|e| format!("cannot clear {}: {e}", pkg.display()))?;
    }
    // wasm-opt runs before wasm-bindgen: binaryen 108 (Debian's) breaks the externref table
    // wasm-bindgen adds (Node: "WebAssembly.Table.set(): Argument 1 is invalid").
    let unopt = fs::metadata(&raw).map_err(|e| e.to_string())?.len();
    fs::create_dir_all(&pkg).map_err(|e| e.to_string())?;
    let opt = pkg.join("opt.wasm");
    let (raw_s, opt_s) = (
        raw.to_string_lossy().into_owned(),
        opt.to_string_lossy().into_owned(),
    );
    // `--converge` repeats the -Oz passes until the module stops shrinking: about 650 B
    // gzipped for a longer wasm-opt run (docs/BENCHMARKS.md, "Browser package size").
    let mut args = vec!["-Oz", "--converge", "--strip-debug", "--strip-producers"];
    args.extend(WASM_FEATURES);
    args.extend(["-o", &opt_s, &raw_s]);
    run("wasm-opt", &args)?;
    let web = pkg.join("web");
    run(
        "wasm-bindgen",
        &[
            "--target",
            "web",
            "--out-dir",
            &web.to_string_lossy(),
            "--out-name",
            "gossip_wasm",
            "--remove-name-section",
            "--remove-producers-section",
            &opt_s,
        ],
    )?;
    fs::remove_file(&opt).map_err(|e| e.to_string())?;
    drop_dispose_types(&web.join("gossip_wasm.d.ts"))?;
    let wasm = web.join("gossip_wasm_bg.wasm");

    let npm = root.join("gossip-wasm/npm");
    for file in [
        "README.md",
        "index.js",
        "node.js",
        "api.js",
        "require.cjs",
        "index.d.ts",
    ] {
        copy(&npm.join(file), &pkg.join(file))?;
    }
    fs::create_dir_all(pkg.join("example")).map_err(|e| e.to_string())?;
    copy(
        &npm.join("example/index.html"),
        &pkg.join("example/index.html"),
    )?;
    for file in ["LICENSE-MIT", "LICENSE-APACHE"] {
        copy(&root.join(file), &pkg.join(file))?;
    }
    if flavour == Flavour::Full {
        // The full flavour exports the replicated state's types too.
        let extra = fs::read_to_string(npm.join("full.d.ts")).map_err(|e| e.to_string())?;
        let index = pkg.join("index.d.ts");
        let mut text = fs::read_to_string(&index).map_err(|e| e.to_string())?;
        text.push_str(&extra);
        fs::write(&index, text).map_err(|e| e.to_string())?;
    }
    fs::write(pkg.join("package.json"), package_json(flavour.npm_name()))
        .map_err(|e| e.to_string())?;

    let size = fs::metadata(&wasm).map_err(|e| e.to_string())?.len();
    let gz = gzip_size(&wasm)?;
    eprintln!(
        "xtask: gossip-wasm package in {} ({:.1?}): .wasm {} B from cargo, {} B after wasm-opt and wasm-bindgen, {} B gzipped",
        pkg.display(),
        started.elapsed(),
        unopt,
        size,
        gz
    );
    Ok(Package {
        flavour,
        dir: pkg,
        wasm,
    })
}

/// Removes the `[Symbol.dispose](): void;` members wasm-bindgen declares on every class: typing
/// them makes every TypeScript user add the `ESNext.Disposable` lib (`Symbol.dispose` is not in
/// ES2022 or DOM). The method itself stays where the engine has `Symbol.dispose`; `free()` is the
/// typed way to release a handle early.
fn drop_dispose_types(dts: &Path) -> Result {
    let text =
        fs::read_to_string(dts).map_err(|e| format!("cannot read {}: {e}", dts.display()))?;
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| l.trim() != "[Symbol.dispose](): void;")
        .collect();
    fs::write(dts, kept.join("\n") + "\n")
        .map_err(|e| format!("cannot write {}: {e}", dts.display()))
}

fn copy(from: &Path, to: &Path) -> Result {
    fs::copy(from, to)
        .map(drop)
        .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
}

fn package_json(name: &str) -> String {
    format!(
        r#"{{
  "name": "{name}",
  "version": "{version}",
  "description": "A browser tab (or Node.js process) as a full member of a gossip cluster",
  "license": "MIT OR Apache-2.0",
  "type": "module",
  "main": "./node.js",
  "browser": "./index.js",
  "types": "./index.d.ts",
  "exports": {{
    ".": {{
      "types": "./index.d.ts",
      "require": "./require.cjs",
      "node": "./node.js",
      "default": "./index.js"
    }},
    "./gossip_wasm_bg.wasm": "./web/gossip_wasm_bg.wasm",
    "./package.json": "./package.json"
  }},
  "files": [
    "index.js",
    "node.js",
    "api.js",
    "require.cjs",
    "index.d.ts",
    "web/gossip_wasm.js",
    "web/gossip_wasm.d.ts",
    "web/gossip_wasm_bg.wasm",
    "web/gossip_wasm_bg.wasm.d.ts",
    "example/index.html",
    "README.md",
    "LICENSE-MIT",
    "LICENSE-APACHE"
  ],
  "sideEffects": true,
  "engines": {{ "node": ">=20" }},
  "peerDependencies": {{ "ws": ">=8" }},
  "peerDependenciesMeta": {{ "ws": {{ "optional": true }} }},
  "keywords": ["gossip", "swim", "membership", "cluster", "webassembly", "websocket"]
}}
"#,
        version = env!("CARGO_PKG_VERSION")
    )
}

/// Bytes of `gzip -9` output.
fn gzip_size(path: &Path) -> Result<u64> {
    let out = Command::new("gzip")
        .args(["-9", "-c"])
        .arg(path)
        .output()
        .map_err(|e| format!("cannot start gzip: {e}"))?;
    if !out.status.success() {
        return Err(format!("gzip {} failed", path.display()));
    }
    Ok(out.stdout.len() as u64)
}

/// The longest run of hex digits in `text`: a cluster key is written as 64 of them.
fn longest_hex_run(text: &str) -> usize {
    text.split(|c: char| !c.is_ascii_hexdigit())
        .map(str::len)
        .max()
        .unwrap_or(0)
}

/// Whether `html` passes a `clusterKey` option (a page that does hands the key to every reader).
fn passes_cluster_key(html: &str) -> bool {
    html.match_indices("clusterKey")
        .any(|(at, word)| html[at + word.len()..].trim_start().starts_with(':'))
}

/// The package holds no cluster key: no text file has a key-length hex literal, and the example
/// page joins by admission (it passes no `clusterKey`).
pub fn check_no_key(dir: &Path) -> Result {
    let mut pending = vec![dir.to_path_buf()];
    let mut scanned = 0;
    while let Some(path) = pending.pop() {
        for entry in fs::read_dir(&path).map_err(|e| format!("{}: {e}", path.display()))? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let text_file = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["js", "cjs", "mjs", "ts", "html", "md", "json"].contains(&e));
            if !text_file {
                continue;
            }
            let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            scanned += 1;
            if longest_hex_run(&text) >= 64 {
                return Err(format!(
                    "{} holds a hex literal as long as a cluster key",
                    path.display()
                ));
            }
            if path.extension().is_some_and(|e| e == "html") && passes_cluster_key(&text) {
                return Err(format!(
                    "{} passes a clusterKey: a page must join by admission",
                    path.display()
                ));
            }
        }
    }
    if scanned == 0 {
        return Err(format!("no text file in {}", dir.display()));
    }
    eprintln!("xtask: no cluster key in the {scanned} text files of the package");
    Ok(())
}

/// The size budget and the import check.
pub fn check(pkg: &Package) -> Result {
    check_no_key(&pkg.dir)?;
    let gz = gzip_size(&pkg.wasm)?;
    let budget = pkg.flavour.budget();
    if gz > budget {
        return Err(format!(
            "{} is {gz} B gzipped, over the {budget} B budget",
            pkg.wasm.display()
        ));
    }
    let bytes = fs::read(&pkg.wasm).map_err(|e| e.to_string())?;
    let modules = import_modules(&bytes)?;
    if modules.iter().any(|m| m == "env") {
        return Err(format!(
            "{} imports from \"env\" (something links a C or libc symbol): {modules:?}",
            pkg.wasm.display()
        ));
    }
    eprintln!("xtask: .wasm is {gz} B gzipped (budget {budget}); imports only from {modules:?}");
    Ok(())
}

/// The module names of a `.wasm`'s imports (import section, id 2).
fn import_modules(wasm: &[u8]) -> Result<Vec<String>> {
    let bad = || "not a valid .wasm file".to_string();
    if wasm.get(..8) != Some(b"\0asm\x01\0\0\0".as_slice()) {
        return Err(bad());
    }
    let mut at = 8;
    let mut modules = Vec::new();
    while at < wasm.len() {
        let id = wasm[at];
        at += 1;
        let len = leb(wasm, &mut at).ok_or_else(bad)? as usize;
        let end = at
            .checked_add(len)
            .filter(|&e| e <= wasm.len())
            .ok_or_else(bad)?;
        if id == 2 {
            let mut p = at;
            let count = leb(wasm, &mut p).ok_or_else(bad)?;
            for _ in 0..count {
                let module = name(wasm, &mut p).ok_or_else(bad)?;
                let _field = name(wasm, &mut p).ok_or_else(bad)?;
                let kind = *wasm.get(p).ok_or_else(bad)?;
                p += 1;
                match kind {
                    0 => drop(leb(wasm, &mut p).ok_or_else(bad)?), // function: type index
                    1 => {
                        p += 1; // table: reference type, then limits
                        limits(wasm, &mut p).ok_or_else(bad)?;
                    }
                    2 => limits(wasm, &mut p).ok_or_else(bad)?, // memory
                    3 => p += 2,                                // global: type, mutability
                    4 => p += 1 + leb_len(wasm, p + 1).ok_or_else(bad)?, // tag
                    _ => return Err(bad()),
                }
                if !modules.contains(&module) {
                    modules.push(module);
                }
            }
        }
        at = end;
    }
    Ok(modules)
}

fn leb(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn leb_len(b: &[u8], at: usize) -> Option<usize> {
    let mut p = at;
    leb(b, &mut p)?;
    Some(p - at)
}

fn name(b: &[u8], at: &mut usize) -> Option<String> {
    let len = leb(b, at)? as usize;
    let s = b.get(*at..at.checked_add(len)?)?;
    *at += len;
    Some(String::from_utf8_lossy(s).into_owned())
}

fn limits(b: &[u8], at: &mut usize) -> Option<()> {
    let flags = *b.get(*at)?;
    *at += 1;
    leb(b, at)?;
    if flags & 1 != 0 {
        leb(b, at)?;
    }
    Some(())
}

/// `tsc --noEmit --strict` over the package's types (gossip-wasm/tests/types): `good.ts` must
/// compile (its `@ts-expect-error` lines are mistakes the types must catch), and each `bad*.ts`
/// must fail, naming what it misuses. No `ESNext.Disposable` or other newer lib: ES2022 and DOM.
pub fn check_types(pkg: &Package) -> Result {
    let dir = root().join("gossip-wasm/tests/types");
    if !dir.join("node_modules/typescript/package.json").exists() {
        eprintln!("xtask: $ (cd {}) npm ci", dir.display());
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .map_err(|e| format!("cannot start npm: {e}"))?;
        if !status.success() {
            return Err("npm ci (typescript) failed".into());
        }
    }
    let index = pkg.dir.join("index.d.ts");
    if !index.exists() {
        return Err(format!("{} is missing", index.display()));
    }
    let tsc = |file: &str| -> Result<(bool, String)> {
        let out = Command::new("node")
            .arg(dir.join("node_modules/typescript/bin/tsc"))
            .args([
                "--noEmit",
                "--strict",
                "--lib",
                "ES2022,DOM",
                "--target",
                "ES2022",
                "--module",
                "ESNext",
                "--moduleResolution",
                "Bundler",
                file,
            ])
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("cannot start node: {e}"))?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    };
    if pkg.flavour == Flavour::Full {
        eprintln!(
            "xtask: tsc --noEmit --strict good-full.ts (in {})",
            dir.display()
        );
        let (ok, out) = tsc("good-full.ts")?;
        if !ok {
            return Err(format!(
                "the full package's types reject good-full.ts:\n{out}"
            ));
        }
        return Ok(());
    }
    eprintln!(
        "xtask: tsc --noEmit --strict good.ts (in {})",
        dir.display()
    );
    let (ok, out) = tsc("good.ts")?;
    if !ok {
        return Err(format!("the package's types reject good.ts:\n{out}"));
    }
    for (file, must_name) in [
        ("bad.ts", "\"memberjoined\""),
        ("bad-init.ts", "initSync"),
        ("bad-replay.ts", "replay"),
    ] {
        eprintln!("xtask: tsc --noEmit --strict {file} (must fail)");
        let (ok, out) = tsc(file)?;
        if ok {
            return Err(format!(
                "the package's types accept {file}, which must not compile"
            ));
        }
        if !out
            .lines()
            .any(|l| l.starts_with(file) && l.contains(must_name))
        {
            return Err(format!(
                "{file} failed to compile, but not on {must_name}:\n{out}"
            ));
        }
    }
    Ok(())
}

/// `npm pack`, then install the tarball in a fresh folder and import it from Node.js.
pub fn pack_and_import(pkg: &Package, extra: &[(&str, &str)]) -> Result {
    let tmp = std::env::temp_dir().join(format!("gossip-wasm-pack-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| e.to_string())?;
    }
    fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    let packed = Command::new("npm")
        .args(["pack", "--silent", "--pack-destination"])
        .arg(&tmp)
        .current_dir(&pkg.dir)
        .output()
        .map_err(|e| format!("cannot start npm: {e}"))?;
    if !packed.status.success() {
        return Err(format!(
            "npm pack failed: {}",
            String::from_utf8_lossy(&packed.stderr)
        ));
    }
    let tarball = String::from_utf8_lossy(&packed.stdout).trim().to_owned();
    let tarball = tmp.join(tarball.lines().last().unwrap_or_default());
    let app = tmp.join("app");
    fs::create_dir_all(&app).map_err(|e| e.to_string())?;
    fs::write(
        app.join("package.json"),
        r#"{ "name": "app", "version": "1.0.0", "private": true, "type": "module" }"#,
    )
    .map_err(|e| e.to_string())?;
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--offline"])
        .arg(&tarball)
        .current_dir(&app)
        .status()
        .map_err(|e| format!("cannot start npm: {e}"))?;
    if !status.success() {
        return Err(format!("npm install {} failed", tarball.display()));
    }
    let tests = root().join("gossip-wasm/tests/node");
    let result = match pkg.flavour {
        Flavour::Default => node_tests(&tests, &app, extra),
        Flavour::Full => full_node_tests(&tests, &app, extra),
    };
    let _ = fs::remove_dir_all(&tmp);
    result
}

/// The scripts of gossip-wasm/tests/node, run in `app` (where the packed package is installed):
/// first without `ws` (require() and the missing-WebSocket error), then against the cluster of
/// `extra` with Node's own WebSocket, then with `ws` installed and no global WebSocket.
fn node_tests(tests: &Path, app: &Path, extra: &[(&str, &str)]) -> Result {
    let node = |args: &[&str], with_cluster: bool| -> Result {
        eprintln!("xtask: $ node {} (in {})", args.join(" "), app.display());
        let mut cmd = Command::new("node");
        cmd.args(args).current_dir(app);
        if with_cluster {
            cmd.envs(extra.iter().copied());
        }
        let status = cmd
            .status()
            .map_err(|e| format!("cannot start node: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("the Node.js test {} failed", args.join(" ")))
        }
    };
    for script in [
        "require.test.cjs",
        "no-websocket.mjs",
        "package.mjs",
        "api.mjs",
        "ws.mjs",
    ] {
        copy(&tests.join(script), &app.join(script))?;
    }
    node(&["require.test.cjs"], false)?;
    node(&["no-websocket.mjs"], false)?;
    node(&["--experimental-websocket", "package.mjs"], true)?;
    node(&["--experimental-websocket", "api.mjs"], true)?;
    if !tests.join("node_modules/ws/package.json").exists() {
        eprintln!("xtask: $ (cd {}) npm ci", tests.display());
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(tests)
            .status()
            .map_err(|e| format!("cannot start npm: {e}"))?;
        if !status.success() {
            return Err("npm ci (ws) failed".into());
        }
    }
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--offline"])
        .arg(tests.join("node_modules/ws"))
        .current_dir(app)
        .status()
        .map_err(|e| format!("cannot start npm: {e}"))?;
    if !status.success() {
        return Err("npm install ws into the test app failed".into());
    }
    node(&["ws.mjs"], true)
}

/// The full flavour's scripts (`state.mjs`, then `endpoints.mjs`), against the cluster of
/// `extra` (started with the admission hook: `endpoints.mjs` joins tabs without the key too).
fn full_node_tests(tests: &Path, app: &Path, extra: &[(&str, &str)]) -> Result {
    for script in ["state.mjs", "endpoints.mjs"] {
        copy(&tests.join(script), &app.join(script))?;
        eprintln!(
            "xtask: $ node --experimental-websocket {script} (in {})",
            app.display()
        );
        let status = Command::new("node")
            .args(["--experimental-websocket", script])
            .current_dir(app)
            .envs(extra.iter().copied())
            .status()
            .map_err(|e| format!("cannot start node: {e}"))?;
        if !status.success() {
            return Err(format!("the Node.js test {script} (full flavour) failed"));
        }
    }
    Ok(())
}

/// `cargo xtask wasm-node [--full]`: builds the package, starts a native cluster and runs the
/// Node.js tests of the packed package against it (the Node.js part of `cargo xtask test`,
/// alone).
pub fn node(flavour: Flavour) -> Result {
    let pkg = package_flavour(flavour)?;
    let harness = build_harness()?;
    node_tests_on_fresh_cluster(&pkg, &harness)
}

/// The Node.js tests of the packed package, against a fresh native cluster (with the admission
/// hook for the full flavour, whose endpoint test joins tabs without the cluster key; the default
/// flavour's tests check that a wrong token is refused, which the hook would decide instead).
fn node_tests_on_fresh_cluster(pkg: &Package, harness: &Path) -> Result {
    let hook: &[&str] = match pkg.flavour {
        Flavour::Default => &[],
        Flavour::Full => &["admit"],
    };
    let cluster = Plan::new()?.start_with(harness, hook)?;
    let seeds = cluster.seeds.join(",");
    pack_and_import(
        pkg,
        &[
            ("GOSSIP_SEEDS", &seeds),
            ("GOSSIP_KEY", &cluster.key),
            ("GOSSIP_TOKEN", &cluster.token),
        ],
    )
}

/// `cargo test` of gossip-wasm for wasm32 in headless Chromium, with `extra` arguments and env.
fn browser_tests(what: &str, args: &[&str], env: &[(&str, &str)]) -> Result {
    let root = root();
    let webdriver = root.join("gossip-wasm/tests/webdriver.json");
    eprintln!("xtask: browser tests ({what}) in headless Chromium");
    let status = Command::new("cargo")
        .args([
            "test",
            "--locked",
            "-p",
            "gossip-wasm",
            "--target",
            crate::WASM_TARGET,
        ])
        .args(args)
        .envs(env.iter().copied())
        .env("CHROMEDRIVER", "/usr/bin/chromedriver")
        .env(
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
            "wasm-bindgen-test-runner",
        )
        .env("WASM_BINDGEN_TEST_WEBDRIVER_JSON", &webdriver)
        .env("WASM_BINDGEN_TEST_TIMEOUT", "120")
        .status()
        .map_err(|e| format!("cannot start cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the browser tests of gossip-wasm ({what}) failed"))
    }
}

/// Ports, key and token for a `wasm-cluster`, chosen before the browser test is compiled with
/// them (a browser test cannot read the environment at run time).
struct Plan {
    ports: Vec<u16>,
    key: String,
    token: String,
}

impl Plan {
    fn new() -> Result<Plan> {
        // Free now, bound by the harness once the test is built: a small window, on loopback only.
        let listeners: Vec<TcpListener> = (0..3)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<std::io::Result<_>>()
            .map_err(|e| format!("cannot find free ports: {e}"))?;
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<std::io::Result<_>>()
            .map_err(|e| e.to_string())?;
        Ok(Plan {
            ports,
            key: hex(&random_bytes(32)?),
            token: format!("t{}", hex(&random_bytes(8)?)),
        })
    }

    fn seeds(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("ws://127.0.0.1:{p}/gossip/ws"))
            .collect()
    }

    fn env(&self) -> [(&'static str, String); 3] {
        [
            ("GOSSIP_WASM_SEEDS", self.seeds().join(",")),
            ("GOSSIP_WASM_KEY", self.key.clone()),
            ("GOSSIP_WASM_TOKEN", self.token.clone()),
        ]
    }

    /// Starts the harness and waits until its nodes see each other.
    fn start(self, bin: &Path) -> Result<Cluster> {
        self.start_with(bin, &[])
    }

    /// [`Plan::start`] with `extra` arguments for the harness (`admit`: an admission hook).
    fn start_with(self, bin: &Path, extra: &[&str]) -> Result<Cluster> {
        let ports_arg = self
            .ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut child = Command::new(bin)
            .args([&ports_arg, &self.key, &self.token])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.trim() == "ready" {
                    let _ = tx.send(());
                }
            }
        });
        let cluster = Cluster {
            child,
            seeds: self.seeds(),
            key: self.key,
            token: self.token,
        };
        rx.recv_timeout(Duration::from_secs(90))
            .map_err(|_| "the native cluster did not become ready within 90 s".to_string())?;
        eprintln!("xtask: native cluster ready at {}", cluster.seeds.join(" "));
        Ok(cluster)
    }
}

/// A running `wasm-cluster` (3 native nodes); stopped when dropped.
struct Cluster {
    child: Child,
    seeds: Vec<String>,
    key: String,
    token: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Closing stdin asks the harness to stop; a stuck one is killed after 10 s.
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds the native harness; returns its path.
///
/// The same cargo invocation as the workspace test step (which builds `tests`' binaries for its
/// integration tests), so after that step this is a no-op: `cargo build -p tests` alone unifies
/// features differently and compiled tokio, hickory and rand a second time, which cost minutes and
/// the disk space a CI run once ran out of.
pub fn build_harness() -> Result<PathBuf> {
    run("cargo", &["test", "--workspace", "--locked", "--no-run"])?;
    let target_dir = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target"));
    Ok(target_dir.join("debug/wasm-cluster"))
}

/// The least-privilege test of a member without the cluster key (tests/admitted.rs) in headless
/// Chromium, against a fresh native cluster: its tab revokes and expires admissions and is
/// refused by the hook, which the other browser test must not meet.
fn admitted_browser_test(harness: &Path) -> Result {
    let plan = Plan::new()?;
    let env = plan.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let args = ["--features", "cluster-test", "--test", "admitted"];
    browser_tests(
        "admitted: build",
        &[&args[..], &["--no-run"]].concat(),
        &env,
    )?;
    let _cluster = plan.start_with(harness, &["admit"])?;
    browser_tests("admitted members against a native cluster", &args, &env)
}

/// `cargo xtask wasm-admitted`: only the least-privilege browser test (and what it needs).
pub fn admitted() -> Result {
    setup()?;
    let harness = build_harness()?;
    admitted_browser_test(&harness)
}

/// The browser driver's tests that run on a real clock: in headless Chromium (alone and against
/// a native cluster, the keyless tab's least privilege) and in Node.js against fresh clusters,
/// for both package flavours (built by the caller, as is the `wasm-cluster` harness).
pub fn live_tests(pkg: &Package, full: &Package, harness: &Path) -> Result {
    browser_tests("no server", &["--lib"], &[])?;
    {
        let plan = Plan::new()?;
        let env = plan.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let args = ["--features", "cluster-test", "--test", "cluster"];
        // Build first: the harness must not idle (or time out) while the test compiles.
        browser_tests("build", &[&args[..], &["--no-run"]].concat(), &env)?;
        let _cluster = plan.start(harness)?;
        browser_tests("against a native cluster", &args, &env)?;
    }
    // Fresh clusters: the browser test killed one of the first one's nodes.
    admitted_browser_test(harness)?;
    node_tests_on_fresh_cluster(pkg, harness)?;
    node_tests_on_fresh_cluster(full, harness)
}

/// Everything `cargo xtask test` checks about the browser driver.
pub fn test() -> Result {
    let started = Instant::now();
    run(
        "cargo",
        &[
            "clippy",
            "--locked",
            "-p",
            "gossip-wasm",
            "--all-targets",
            "--all-features",
            "--target",
            crate::WASM_TARGET,
            "--",
            "-D",
            "warnings",
        ],
    )?;
    // The error codes of the full flavour's features, natively (the workspace tests build
    // gossip-wasm without them).
    run(
        "cargo",
        &[
            "test",
            "--locked",
            "-p",
            "gossip-wasm",
            "--lib",
            "--features",
            Flavour::Full.features(),
        ],
    )?;
    let pkg = package()?;
    check_types(&pkg)?;
    // The full flavour (replicated state, ownership): its own build and types.
    let full = package_flavour(Flavour::Full)?;
    check_types(&full)?;
    let harness = build_harness()?;
    live_tests(&pkg, &full, &harness)?;
    // Last, so a size regression still shows every functional result first.
    check(&pkg)?;
    check(&full)?;
    eprintln!(
        "xtask: gossip-wasm checks passed in {:.0?}",
        started.elapsed()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_key_literals_and_key_options() {
        let key = "ab".repeat(32);
        assert_eq!(longest_hex_run(&format!("const k = \"{key}\";")), 64);
        assert!(longest_hex_run("function deadbeef() { return 0x1234; }") < 64);
        assert!(passes_cluster_key("GossipNode.create({ clusterKey: k })"));
        assert!(passes_cluster_key("{clusterKey : k}"));
        assert!(!passes_cluster_key(
            "<!-- `clusterKey` is for trusted clients -->"
        ));
        let dir = std::env::temp_dir().join(format!("xtask-nokey-{}", std::process::id()));
        fs::create_dir_all(dir.join("example")).unwrap();
        fs::write(dir.join("index.js"), "export const x = 1;").unwrap();
        fs::write(dir.join("example/index.html"), "create({ seeds })").unwrap();
        assert!(check_no_key(&dir).is_ok());
        fs::write(dir.join("example/index.html"), "create({ clusterKey: v })").unwrap();
        assert!(check_no_key(&dir).unwrap_err().contains("clusterKey"));
        fs::write(dir.join("example/index.html"), "ok").unwrap();
        fs::write(dir.join("index.js"), format!("const k = '{key}';")).unwrap();
        assert!(check_no_key(&dir).unwrap_err().contains("hex literal"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_lock_names_the_wasm_bindgen_cli_version() {
        let v = wasm_bindgen_version().unwrap();
        assert!(v.starts_with("0.2."), "{v}");
    }

    #[test]
    fn finds_import_modules() {
        // A module importing one function "env"."f" and one memory "js"."mem".
        let wasm = [
            0, b'a', b's', b'm', 1, 0, 0, 0, // header
            1, 4, 1, 0x60, 0, 0, // type section: () -> ()
            2, 19, 2, // import section, 2 imports
            3, b'e', b'n', b'v', 1, b'f', 0, 0, // env.f: function type 0
            2, b'j', b's', 3, b'm', b'e', b'm', 2, 0, 1, // js.mem: memory min 1
        ];
        assert_eq!(import_modules(&wasm).unwrap(), ["env", "js"]);
        assert!(import_modules(&wasm[..20]).is_err());
        assert!(import_modules(b"nope").is_err());
    }
}
