//! Where this install keeps its identity key and the keys of peers it has met, in the
//! user's config directory. Pure file IO around the secure channel's types.

use std::fs;
use std::path::{Path, PathBuf};

use crate::net::secure::{Identity, KnownPeers};

/// Why the key files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// No config directory could be found or made.
    #[error("cannot use config directory {path}: {reason}; give a writable one with --config-dir")]
    Dir {
        /// The directory.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The identity file is unreadable or corrupt.
    #[error("identity key {path} is unusable: {reason}; move it away to make a new one (peers will see a new key)")]
    Identity {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// The config directory with the key files.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

fn default_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|d| d.join("prattle"))
}

/// A file next to `path` that no other writer (process or thread) uses, with `text`, readable
/// by the user only.
fn private_temp(path: &Path, text: &str) -> std::io::Result<PathBuf> {
    let tmp = path.with_extension(format!(
        "tmp.{}.{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    fs::write(&tmp, text)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    }
    Ok(tmp)
}

/// Replaces `path` with `text` in one step: a reader sees the old file or the new one.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = private_temp(path, text)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// Creates `path` with `text` unless it exists, in one step; false when another writer made it
/// first (two peers started at once with one config directory).
fn create_private(path: &Path, text: &str) -> std::io::Result<bool> {
    let tmp = private_temp(path, text)?;
    let made = match fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        // a file system without hard links: the last writer wins
        Err(_) => fs::rename(&tmp, path).map(|()| true),
    };
    let _ = fs::remove_file(&tmp);
    made
}

impl KeyStore {
    /// Opens `dir`, or the user's config directory (`$XDG_CONFIG_HOME/prattle`), creating it.
    pub fn open(dir: Option<&Path>) -> Result<Self, KeyStoreError> {
        let dir = dir
            .map(Path::to_path_buf)
            .or_else(default_dir)
            .ok_or_else(|| KeyStoreError::Dir {
                path: "(none)".into(),
                reason: "neither XDG_CONFIG_HOME nor HOME is set".into(),
            })?;
        fs::create_dir_all(&dir).map_err(|e| KeyStoreError::Dir {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self { dir })
    }

    /// This install's identity: read from `identity`, or made and saved on first use.
    pub fn identity(&self) -> Result<Identity, KeyStoreError> {
        let path = self.dir.join("identity");
        let err = |reason: String| KeyStoreError::Identity {
            path: path.display().to_string(),
            reason,
        };
        let read = || -> Result<Identity, KeyStoreError> {
            let text = fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
            let key = crate::net::secure::known_peers::key_from_hex(text.trim())
                .ok_or_else(|| err("not 64 hex digits".into()))?;
            Identity::from_bytes(&key).map_err(|e| err(e.to_string()))
        };
        match fs::metadata(&path) {
            Ok(_) => read(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = Identity::generate();
                let hex = crate::net::secure::known_peers::to_hex(&id.to_bytes());
                match create_private(&path, &format!("{hex}\n")) {
                    Ok(true) => Ok(id),
                    // another process made it a moment ago: use that one
                    Ok(false) => read(),
                    Err(e) => Err(err(e.to_string())),
                }
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// Where the keys of known peers are kept.
    pub fn known_peers_path(&self) -> PathBuf {
        self.dir.join("known_peers")
    }

    /// The keys of peers met before; an unreadable file is reported and treated as empty.
    pub fn known_peers(&self) -> KnownPeers {
        match fs::read_to_string(self.known_peers_path()) {
            Ok(text) => KnownPeers::parse(&text).unwrap_or_else(|e| {
                tracing::warn!(
                    "{}: {e}; starting from an empty list",
                    self.known_peers_path().display()
                );
                KnownPeers::new()
            }),
            Err(_) => KnownPeers::new(),
        }
    }

    /// Saves the known peers.
    pub fn save_known_peers(&self, peers: &KnownPeers) {
        if let Err(e) = write_private(&self.known_peers_path(), &peers.to_text()) {
            tracing::warn!("cannot save {}: {e}", self.known_peers_path().display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("prattle-keys-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = KeyStore::open(Some(&dir)).expect("store");
        let a = store.identity().expect("made");
        let b = store.identity().expect("read back");
        assert_eq!(a.public(), b.public());
        fs::write(dir.join("identity"), "zz").expect("corrupt it");
        assert!(store.identity().is_err());
        let mut peers = store.known_peers();
        peers.pin("127.0.0.1:1", a.public()).expect("pin");
        store.save_known_peers(&peers);
        assert_eq!(store.known_peers().get("127.0.0.1:1"), Some(&a.public()));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn peers_started_at_once_share_one_identity() {
        // two peers launched together with one config directory both found no key; each wrote
        // `identity.tmp` and one renamed it away under the other, which then failed to start
        for round in 0..20 {
            let dir = std::env::temp_dir()
                .join(format!("prattle-keys-race-{}-{round}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            let store = KeyStore::open(Some(&dir)).expect("store");
            let start = std::sync::Arc::new(std::sync::Barrier::new(8));
            let made: Vec<_> = (0..8)
                .map(|_| {
                    let (store, start) = (store.clone(), std::sync::Arc::clone(&start));
                    std::thread::spawn(move || {
                        start.wait();
                        store.identity().map(|id| id.public())
                    })
                })
                .collect();
            let keys: Vec<_> = made
                .into_iter()
                .map(|t| t.join().expect("join").expect("an identity for every peer"))
                .collect();
            assert!(
                keys.iter().all(|k| *k == keys[0]),
                "one key in round {round}"
            );
            assert_eq!(
                store.identity().expect("read back").public(),
                keys[0],
                "the key on disk"
            );
            let left: Vec<_> = fs::read_dir(&dir)
                .expect("dir")
                .filter_map(Result::ok)
                .map(|e| e.file_name())
                .collect();
            assert_eq!(
                left,
                vec![std::ffi::OsString::from("identity")],
                "no temp files"
            );
            let _ = fs::remove_dir_all(&dir);
        }
    }
}
