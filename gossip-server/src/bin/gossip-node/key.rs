//! The cluster key: where it came from (so an error can say which flag, variable or file to fix)
//! and `gossip-node keygen`.

use std::path::{Path, PathBuf};

use gossip_core::ClusterKey;

/// What a key must look like, in every error about one.
pub const FORMAT: &str =
    "expected 64 hex digits or base64 of 32 bytes (`gossip-node keygen` prints a new one)";

/// Where the key text came from.
#[derive(Debug, Clone)]
pub enum Source {
    Flag(String),
    Env(String),
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
    #[error("--key-file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Reads and parses the key.
pub fn load(source: &Source) -> Result<ClusterKey, KeyError> {
    match source {
        Source::Flag(text) => text.parse().map_err(|_| KeyError::Flag),
        Source::Env(text) => text.parse().map_err(|_| KeyError::Env),
        Source::File(path) => read(path),
    }
}

fn read(path: &Path) -> Result<ClusterKey, KeyError> {
    // A key file is 44 to 65 bytes; refuse to slurp something huge by mistake.
    const MAX_LEN: u64 = 4096;
    use std::io::Read;
    let read_err = |source| KeyError::Read {
        path: path.to_owned(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(read_err)?
        .take(MAX_LEN)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    text.parse().map_err(|_| KeyError::File(path.to_owned()))
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
        let flag = load(&Source::Flag("nope".into())).unwrap_err().to_string();
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
    fn generated_keys_parse_and_differ() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(load(&Source::Flag(a.clone())).is_ok());
        assert_ne!(a, b);
    }
}
