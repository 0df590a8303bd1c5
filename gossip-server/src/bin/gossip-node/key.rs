//! Cluster keys: where they came from (so an error can say which flag, variable or file to fix),
//! re-reading the key file on SIGHUP, the `key` stdin commands and `gossip-node keygen`.

use std::path::{Path, PathBuf};

use gossip_core::ClusterKey;
use gossip_core::keyring::MAX_KEYS;
use gossip_server::Gossip;
use serde_json::json;

use crate::Printer;

/// What a key must look like, in every error about one.
pub const FORMAT: &str =
    "expected 64 hex digits or base64 of 32 bytes (`gossip-node keygen` prints a new one)";

/// Where the key text came from.
#[derive(Debug, Clone)]
pub enum Source {
    /// `--key`, repeated: the first encrypts, the others are accepted.
    Flag(Vec<String>),
    Env(String),
    /// One key per line (`#` comments allowed): the first encrypts, the others are accepted.
    File(PathBuf),
}

/// Why there is no usable key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("--key: not a cluster key: {FORMAT}")]
    Flag,
    #[error("GOSSIP_KEY: not a cluster key: {FORMAT}")]
    Env,
    #[error("--key-file {}: not a cluster key: {FORMAT}", .0.display())]
    File(PathBuf),
    #[error("--key-file {}: holds no key", .0.display())]
    Empty(PathBuf),
    #[error("{0}: more than {MAX_KEYS} keys")]
    TooMany(String),
    #[error("--key-file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Reads and parses the keys, the primary first.
pub fn load(source: &Source) -> Result<Vec<ClusterKey>, KeyError> {
    let keys = match source {
        Source::Flag(texts) => texts
            .iter()
            .map(|t| t.parse().map_err(|_| KeyError::Flag))
            .collect::<Result<Vec<_>, _>>()?,
        Source::Env(text) => vec![text.parse().map_err(|_| KeyError::Env)?],
        Source::File(path) => read(path)?,
    };
    if keys.len() > MAX_KEYS {
        let what = match source {
            Source::File(p) => format!("--key-file {}", p.display()),
            _ => "--key".into(),
        };
        return Err(KeyError::TooMany(what));
    }
    Ok(keys)
}

fn read(path: &Path) -> Result<Vec<ClusterKey>, KeyError> {
    // Eight keys with comments fit easily; refuse to slurp something huge by mistake.
    const MAX_LEN: u64 = 4096;
    use std::io::Read;
    let read_err = |source| KeyError::Read {
        path: path.to_owned(),
        source,
    };
    let mut text = zeroize::Zeroizing::new(String::new());
    std::fs::File::open(path)
        .map_err(read_err)?
        .take(MAX_LEN)
        .read_to_string(&mut text)
        .map_err(|_| KeyError::File(path.to_owned()))?;
    let keys = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.parse().map_err(|_| KeyError::File(path.to_owned())))
        .collect::<Result<Vec<ClusterKey>, _>>()?;
    if keys.is_empty() {
        return Err(KeyError::Empty(path.to_owned()));
    }
    Ok(keys)
}

/// Re-reads the key file (on SIGHUP) and replaces the node's keys with its keys. A file that
/// does not parse changes nothing.
pub async fn reload(gossip: &Gossip, out: Printer, source: Option<&Source>) {
    let result = match source {
        Some(source @ Source::File(_)) => match load(source) {
            Ok(keys) => gossip.set_keys(keys).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        _ => Err("SIGHUP re-reads --key-file, and this node has none".into()),
    };
    match result {
        Ok(n) => out.line(
            json!({"event": "keys", "command": "reload", "keys": n}),
            format!("ok: key file re-read, {n} keys"),
        ),
        Err(e) => out.line(
            json!({"event": "error", "command": "reload", "error": e}),
            format!("error: key reload: {e}"),
        ),
    }
}

/// `keys`, `key add KEY`, `key use KEY`, `key remove KEY`.
pub async fn command(gossip: &Gossip, out: Printer, verb: &str, rest: &str) -> Result<(), String> {
    let (action, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let parse = || {
        text.trim()
            .parse::<ClusterKey>()
            .map_err(|_| format!("not a cluster key: {FORMAT}"))
    };
    let n = match (verb, action) {
        ("keys", "") => gossip.key_count().await,
        ("key", "add") => gossip.add_key(parse()?).await,
        ("key", "use") => gossip.use_key(parse()?).await,
        ("key", "remove") => gossip.remove_key(parse()?).await,
        _ => return Err("usage: keys | key add|use|remove KEY".into()),
    }
    .map_err(|e| e.to_string())?;
    let command = if verb == "keys" { "keys" } else { action };
    out.line(
        json!({"event": "keys", "command": command, "keys": n}),
        format!("ok: {command}: {n} keys"),
    );
    Ok(())
}

/// A new random key in the form `--key` takes.
pub fn generate() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let key = ClusterKey::from_bytes(bytes);
    bytes.fill(0);
    Ok(key.to_hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_source_and_the_format() {
        let flag = load(&Source::Flag(vec!["nope".into()]))
            .unwrap_err()
            .to_string();
        assert!(
            flag.starts_with("--key:") && flag.contains("64 hex digits"),
            "{flag}"
        );
        let env = load(&Source::Env("12ab".into())).unwrap_err().to_string();
        assert!(
            env.starts_with("GOSSIP_KEY:") && env.contains("base64"),
            "{env}"
        );
        let missing = Path::new("/nonexistent/gossip.key");
        let file = load(&Source::File(missing.into())).unwrap_err().to_string();
        assert!(file.contains("/nonexistent/gossip.key"), "{file}");
    }

    #[test]
    fn a_key_file_holds_the_primary_first_then_accepted_keys() {
        let dir = std::env::temp_dir().join(format!("gossip-keyfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        let (a, b) = ("aa".repeat(32), "bb".repeat(32));
        std::fs::write(&path, format!("# new key first\n{b}\n\n  {a}  \n")).unwrap();
        let keys = load(&Source::File(path.clone())).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0], b.parse().unwrap());
        assert_eq!(keys[1], a.parse().unwrap());
        for bad in [
            "# nothing\n".to_string(),
            format!("{a}\nshort\n"),
            format!("{a}\n").repeat(MAX_KEYS + 1),
        ] {
            std::fs::write(&path, bad).unwrap();
            let e = load(&Source::File(path.clone())).unwrap_err().to_string();
            assert!(e.contains(path.to_str().unwrap()), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn generated_keys_parse_and_differ() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(load(&Source::Flag(vec![a.clone()])).is_ok());
        assert_ne!(a, b);
    }
}
