//! The identity file: a member's secret key kept on disk, so a restarted member comes back with
//! the same [`NodeId`](gossip_core::NodeId) (its id is its public key).
//!
//! The file holds one line of 64 hex digits (the Ed25519 secret), after `#` comment lines. It is
//! created on first start with mode 0600 and must stay private: on Unix a file readable or
//! writable by group or others is refused rather than used, since anyone who reads it can sign as
//! this member.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use gossip_core::Identity;
use zeroize::Zeroizing;

/// Longer than any identity file (a comment line and 64 hex digits): a bigger file is not one.
const MAX_LEN: u64 = 4096;

const HEADER: &str = "# gossip identity: this member's secret key. Anyone who reads it can sign as \
                      this member; keep it private (mode 0600).\n";

/// Why the identity file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityFileError {
    /// The file exists but could not be read (or its metadata could not).
    #[error("identity file {}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file did not exist and could not be created.
    #[error("identity file {}: cannot create: {source}", path.display())]
    Create {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file does not hold an identity (64 hex digits after `#` comment lines).
    #[error("identity file {}: not an identity (expected 64 hex digits)", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
    },
    /// Group or others may read or write the file: the secret may already be known to others.
    #[error(
        "identity file {}: mode {mode:o} lets group or others access it; `chmod 600` it (or \
         replace the identity if others may have read it)",
        path.display()
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Loads the identity in `path`, or creates the file with a new identity from `secret` when it
/// does not exist yet.
pub(crate) fn load_or_create(
    path: &Path,
    secret: impl FnOnce() -> Result<[u8; 32], crate::StartError>,
) -> Result<Identity, crate::StartError> {
    match load(path) {
        Ok(identity) => Ok(identity),
        Err(IdentityFileError::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            let identity = Identity::from_secret_bytes(secret()?);
            match create(path, &identity) {
                Ok(()) => Ok(identity),
                // Another process created it meanwhile: that one is the identity.
                Err(IdentityFileError::Create { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    Ok(load(path)?)
                }
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Reads the identity in `path`.
pub fn load(path: &Path) -> Result<Identity, IdentityFileError> {
    let read_err = |source| IdentityFileError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    check_mode(path, &file)?;
    let mut text = Zeroizing::new(String::new());
    file.take(MAX_LEN)
        .read_to_string(&mut text)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => IdentityFileError::Malformed {
                path: path.to_owned(),
            },
            _ => read_err(e),
        })?;
    parse(&text).ok_or_else(|| IdentityFileError::Malformed {
        path: path.to_owned(),
    })
}

fn parse(text: &str) -> Option<Identity> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let hex = lines.next()?;
    if lines.next().is_some() || hex.len() != 64 {
        return None;
    }
    let mut secret = Zeroizing::new([0u8; 32]);
    for (byte, pair) in secret.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        let digits = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(digits, 16).ok()?;
    }
    Some(Identity::from_secret_bytes(*secret))
}

#[cfg(unix)]
fn check_mode(path: &Path, file: &std::fs::File) -> Result<(), IdentityFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file
        .metadata()
        .map_err(|source| IdentityFileError::Read {
            path: path.to_owned(),
            source,
        })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(IdentityFileError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_: &Path, _: &std::fs::File) -> Result<(), IdentityFileError> {
    Ok(())
}

/// Writes a new file (never replacing one: `create_new`), private from its first byte.
fn create(path: &Path, identity: &Identity) -> Result<(), IdentityFileError> {
    let create_err = |source| IdentityFileError::Create {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(create_err)?;
    let secret = Zeroizing::new(identity.secret_bytes());
    let mut text = Zeroizing::new(String::with_capacity(HEADER.len() + 65));
    text.push_str(HEADER);
    for b in secret.iter() {
        text.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        text.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    text.push('\n');
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        // A half-written file would refuse every later start as malformed.
        let _ = std::fs::remove_file(path);
        return Err(create_err(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gossip-identity-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn created_private_then_loaded_as_the_same_identity() {
        let d = dir("roundtrip");
        let path = d.join("id");
        let first = load_or_create(&path, || Ok([7; 32])).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let again = load_or_create(&path, || panic!("must not generate again")).unwrap();
        assert_eq!(first.id(), again.id());
        assert_eq!(first.id(), Identity::from_secret_bytes([7; 32]).id());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn malformed_unreadable_and_shared_files_are_typed_errors() {
        let d = dir("errors");
        let write = |name: &str, body: &[u8]| {
            let p = d.join(name);
            std::fs::write(&p, body).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
            p
        };
        for (name, body) in [
            ("short", &b"abcd\n"[..]),
            ("nothex", &[b'z'; 64][..]),
            (
                "two",
                format!("{}\n{}\n", "a".repeat(64), "b".repeat(64)).as_bytes(),
            ),
            ("binary", &[0xff; 64][..]),
            ("huge", "0".repeat(10_000).as_bytes()),
            ("empty", b"# only a comment\n"),
            // Multi-byte characters cut by the 2-digit chunks must not panic.
            ("utf8", "é".repeat(32).as_bytes()),
        ] {
            let p = write(name, body);
            let e = load(&p).map(|i| i.id()).unwrap_err();
            assert!(
                matches!(e, IdentityFileError::Malformed { .. }),
                "{name}: {e}"
            );
            // Loading never replaces a bad file with a new identity.
            assert!(load_or_create(&p, || Ok([1; 32])).is_err(), "{name}");
        }
        let good = write(
            "good",
            format!("# c\n\n  {}  \n", "0a".repeat(32)).as_bytes(),
        );
        assert_eq!(
            load(&good).unwrap().id(),
            Identity::from_secret_bytes([10; 32]).id()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o640)).unwrap();
            let e = load(&good).map(|i| i.id()).unwrap_err();
            assert!(
                matches!(e, IdentityFileError::Permissions { mode: 0o640, .. }),
                "{e}"
            );
            assert!(e.to_string().contains("chmod 600"), "{e}");
        }
        // A directory where the file should be: unreadable, not created over.
        let e = load_or_create(&d, || Ok([1; 32])).unwrap_err();
        assert!(matches!(e, crate::StartError::Identity(_)), "{e}");
        // A missing parent directory: cannot create.
        let e = load_or_create(&d.join("no/such/dir"), || Ok([1; 32])).unwrap_err();
        assert!(
            matches!(
                e,
                crate::StartError::Identity(IdentityFileError::Create { .. })
            ),
            "{e}"
        );
        std::fs::remove_dir_all(d).unwrap();
    }
}
