//! Trust-on-first-use pins: which public key each peer (address or name) had before.
//! Pure: the caller reads and writes the file; the format is one `<name> <hex key>` per
//! line, with `#` comments and blank lines ignored.

use std::collections::BTreeMap;

use thiserror::Error;

/// Why a known-peers file or entry was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KnownPeersError {
    /// A line is not `<name> <64 hex digits>`.
    #[error("known peers line {line}: expected `<name> <64 hex digits>`")]
    BadLine {
        /// 1-based line number.
        line: usize,
    },
    /// A name is empty, has whitespace or starts with `#`.
    #[error("peer name {0:?} is empty, has whitespace or starts with '#'")]
    BadName(String),
}

/// What a pin check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinCheck {
    /// Never seen: pin it if the user agrees (after comparing the SAS, ideally).
    New,
    /// Same key as pinned.
    Match,
    /// A different key than pinned: a reinstall, or a man in the middle.
    Changed {
        /// The key pinned before.
        pinned: [u8; 32],
    },
}

/// The pin store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownPeers {
    pins: BTreeMap<String, [u8; 32]>,
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

/// A 32-byte key from 64 hex digits (either case).
pub fn key_from_hex(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nib = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nib(b[2 * i])? << 4) | nib(b[2 * i + 1])?;
    }
    Some(out)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('#') && !name.chars().any(char::is_whitespace)
}

impl KnownPeers {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the file format; a later line for the same name wins.
    pub fn parse(text: &str) -> Result<Self, KnownPeersError> {
        let mut pins = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(name), Some(hex), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(KnownPeersError::BadLine { line: i + 1 });
            };
            let key = key_from_hex(hex).ok_or(KnownPeersError::BadLine { line: i + 1 })?;
            pins.insert(name.to_owned(), key);
        }
        Ok(Self { pins })
    }

    /// The file format, sorted by name.
    pub fn to_text(&self) -> String {
        let mut s = String::from("# prattle known peers: <address-or-name> <public key>\n");
        for (name, key) in &self.pins {
            s.push_str(name);
            s.push(' ');
            s.push_str(&to_hex(key));
            s.push('\n');
        }
        s
    }

    /// Compares `key` with the pin for `name`.
    pub fn check(&self, name: &str, key: &[u8; 32]) -> PinCheck {
        match self.pins.get(name) {
            None => PinCheck::New,
            Some(p) if p == key => PinCheck::Match,
            Some(p) => PinCheck::Changed { pinned: *p },
        }
    }

    /// Pins (or re-pins) `name` to `key`.
    pub fn pin(&mut self, name: &str, key: [u8; 32]) -> Result<(), KnownPeersError> {
        if !valid_name(name) {
            return Err(KnownPeersError::BadName(name.to_owned()));
        }
        self.pins.insert(name.to_owned(), key);
        Ok(())
    }

    /// Forgets `name`.
    pub fn remove(&mut self, name: &str) -> Option<[u8; 32]> {
        self.pins.remove(name)
    }

    /// The key pinned for `name`.
    pub fn get(&self, name: &str) -> Option<&[u8; 32]> {
        self.pins.get(name)
    }

    /// Number of pins.
    pub fn len(&self) -> usize {
        self.pins.len()
    }

    /// Whether there are no pins.
    pub fn is_empty(&self) -> bool {
        self.pins.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_match_changed_and_round_trip() {
        let mut k = KnownPeers::new();
        let a = [1u8; 32];
        let b = [2u8; 32];
        assert_eq!(k.check("alice", &a), PinCheck::New);
        k.pin("alice", a).expect("valid name");
        k.pin("[::1]:4000", b).expect("valid name");
        assert_eq!(k.check("alice", &a), PinCheck::Match);
        assert_eq!(k.check("alice", &b), PinCheck::Changed { pinned: a });
        let text = k.to_text();
        assert_eq!(KnownPeers::parse(&text), Ok(k.clone()));
        assert!(k.pin("two words", a).is_err());
        assert!(k.pin("", a).is_err());
        assert!(k.pin("#x", a).is_err());
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let good = format!("# c\n\nbob {}\n", "AB".repeat(32));
        let k = KnownPeers::parse(&good).expect("valid");
        assert_eq!(k.get("bob"), Some(&[0xab; 32]));
        for bad in [
            "bob",
            "bob 12",
            "bob zz",
            &format!("bob {} extra", "00".repeat(32)),
        ] {
            let text = format!("# c\n{bad}\n");
            assert_eq!(
                KnownPeers::parse(&text),
                Err(KnownPeersError::BadLine { line: 2 })
            );
        }
        assert_eq!(key_from_hex(&"é".repeat(32)), None);
    }
}
