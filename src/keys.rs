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

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    }
    fs::rename(&tmp, path)
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
        match fs::read_to_string(&path) {
            Ok(text) => {
                let key = crate::net::secure::known_peers::key_from_hex(text.trim())
                    .ok_or_else(|| err("not 64 hex digits".into()))?;
                Identity::from_bytes(&key).map_err(|e| err(e.to_string()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = Identity::generate();
                let hex = crate::net::secure::known_peers::to_hex(&id.to_bytes());
                write_private(&path, &format!("{hex}\n")).map_err(|e| err(e.to_string()))?;
                Ok(id)
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
}
