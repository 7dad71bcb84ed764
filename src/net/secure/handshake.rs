//! Cryptographic pieces of the handshake: the identity key, Noise state builders, the
//! SPAKE2 glue for code mode, the SAS commitment and the SAS itself.

use blake2::{Blake2s256, Digest};
use rand::rngs::{OsRng, StdRng};
use rand::{CryptoRng, RngCore, SeedableRng};
use snow::params::{DHChoice, NoiseParams};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::{Builder, HandshakeState};
use spake2::{Ed25519Group, Password, Spake2};
use zeroize::Zeroize;

use super::wire::{Mode, COMMIT_LEN};
use super::words::WORDS;
use super::SecureError;

/// Noise prologue: both sides must agree on it, so it pins the protocol version.
const PROLOGUE: &[u8] = b"prattle-secure-v1";
/// Trust-on-first-use handshake.
const NOISE_TOFU: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
/// Code-mode handshake: the SPAKE2 key enters as a PSK at the end of msg2, so the initiator
/// detects a wrong code on msg2 and the responder (which never gets msg3) via a REJECT.
const NOISE_CODE: &str = "Noise_XXpsk2_25519_ChaChaPoly_BLAKE2s";
/// Where the PSK sits in `XXpsk2`.
pub const PSK_POSITION: usize = 2;
/// SPAKE2 identities: roles are known, so the asymmetric variant is used.
const SPAKE_ID_A: &[u8] = b"prattle-initiator";
const SPAKE_ID_B: &[u8] = b"prattle-responder";

/// A SPAKE2 exchange in progress.
pub type SpakeState = Spake2<Ed25519Group>;

/// An install's long-term X25519 key pair: the Noise static key.
pub struct Identity {
    private: [u8; 32],
    public: [u8; 32],
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never print the private half
        f.debug_struct("Identity")
            .field("public", &super::known_peers::to_hex(&self.public))
            .finish_non_exhaustive()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            private: self.private,
            public: self.public,
        }
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        self.private.zeroize();
    }
}

impl Identity {
    /// A new random identity from the operating system's RNG.
    pub fn generate() -> Self {
        Self::generate_with(&mut OsRng)
    }

    /// A new random identity from `rng`.
    pub fn generate_with(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        loop {
            let mut k = [0u8; 32];
            rng.fill_bytes(&mut k);
            if let Ok(id) = Self::from_bytes(&k) {
                k.zeroize();
                return id;
            }
        }
    }

    /// Loads a private key saved with [`Identity::to_bytes`].
    pub fn from_bytes(private: &[u8; 32]) -> Result<Self, SecureError> {
        if private.iter().all(|&b| b == 0) {
            // an all-zero key is what an unwritten or truncated key file reads as
            return Err(SecureError::ZeroIdentity);
        }
        let mut dh = DefaultResolver
            .resolve_dh(&DHChoice::Curve25519)
            .ok_or(SecureError::Unsupported)?;
        dh.set(private);
        let public: [u8; 32] = dh
            .pubkey()
            .try_into()
            .map_err(|_| SecureError::Unsupported)?;
        Ok(Self {
            private: *private,
            public,
        })
    }

    /// The private key, for saving (keep the file private).
    pub fn to_bytes(&self) -> [u8; 32] {
        self.private
    }

    /// The public key peers see and pin.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }
}

/// snow's resolver with our RNG, so an endpoint's randomness is injectable and tests are
/// reproducible; primitives come from snow's pure-Rust default resolver.
struct SeededResolver {
    seed: [u8; 32],
}

struct SnowRng(StdRng);

impl Random for SnowRng {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(SnowRng(StdRng::from_seed(self.seed))))
    }
    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }
    fn resolve_hash(&self, choice: &snow::params::HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &snow::params::CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

/// A Noise handshake state for `mode` and role, its ephemeral key drawn from `rng`.
pub fn noise_state(
    mode: Mode,
    initiator: bool,
    identity: &Identity,
    rng: &mut StdRng,
) -> Result<HandshakeState, SecureError> {
    let name = match mode {
        Mode::Tofu => NOISE_TOFU,
        Mode::Code => NOISE_CODE,
    };
    let params: NoiseParams = name.parse()?;
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let builder = Builder::with_resolver(params, Box::new(SeededResolver { seed }))
        .prologue(PROLOGUE)?
        .local_private_key(&identity.private)?;
    let hs = if initiator {
        builder.build_initiator()?
    } else {
        builder.build_responder()?
    };
    seed.zeroize();
    Ok(hs)
}

/// Starts SPAKE2 over `code`; returns the state and the message to send.
pub fn spake_start(code: &str, initiator: bool, rng: &mut StdRng) -> (SpakeState, Vec<u8>) {
    let pw = Password::new(code.as_bytes());
    let a = spake2::Identity::new(SPAKE_ID_A);
    let b = spake2::Identity::new(SPAKE_ID_B);
    if initiator {
        Spake2::<Ed25519Group>::start_a_with_rng(&pw, &a, &b, rng)
    } else {
        Spake2::<Ed25519Group>::start_b_with_rng(&pw, &a, &b, rng)
    }
}

/// Finishes SPAKE2 with the peer's message and derives the Noise PSK from its key.
pub fn spake_finish(state: SpakeState, theirs: &[u8]) -> Result<[u8; 32], SecureError> {
    // a wrong code does not fail here: it yields a different PSK, which fails Noise
    let mut key = state.finish(theirs)?;
    let psk = hash(&[b"prattle-psk-v1", &key]);
    key.zeroize();
    Ok(psk)
}

fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Commitment to the initiator's SAS nonce, sent in msg1 and opened in msg3.
pub fn commit(nonce: &[u8; 32]) -> [u8; COMMIT_LEN] {
    hash(&[b"prattle-commit-v1", nonce])
}

/// The short authentication string: four words (32 bits) from the msg2 hash and the nonce.
pub fn sas(h2: &[u8], nonce: &[u8; 32]) -> String {
    // The nonce is committed in msg1 and revealed only in msg3, after msg2 is fixed, and
    // the hash after msg2 does not depend on msg3: a man in the middle cannot grind his
    // keys or messages to make the two sides' strings match; each try succeeds with 2^-32.
    let d = hash(&[b"prattle-sas-v1", h2, nonce]);
    d[..4]
        .iter()
        // ok: a u8 indexes a 256-entry array
        .map(|&b| WORDS[usize::from(b)])
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_and_rejects_zero() {
        let id = Identity::generate();
        let again = Identity::from_bytes(&id.to_bytes()).expect("valid key");
        assert_eq!(id.public(), again.public());
        assert_ne!(id.public(), [0; 32]);
        assert!(matches!(
            Identity::from_bytes(&[0; 32]),
            Err(SecureError::ZeroIdentity)
        ));
        assert!(!format!("{id:?}").contains(&super::super::known_peers::to_hex(&id.to_bytes())));
    }

    #[test]
    fn spake_agrees_only_on_the_same_code() {
        let mut rng = StdRng::seed_from_u64(3);
        let (a, ma) = spake_start("7-crossword-pelican", true, &mut rng);
        let (b, mb) = spake_start("7-crossword-pelican", false, &mut rng);
        assert_eq!(ma.len(), super::super::wire::SPAKE_LEN);
        let ka = spake_finish(a, &mb).expect("a");
        let kb = spake_finish(b, &ma).expect("b");
        assert_eq!(ka, kb);
        let (a, ma) = spake_start("7-crossword-pelican", true, &mut rng);
        let (b, mb) = spake_start("7-crossword-pelicans", false, &mut rng);
        assert_ne!(
            spake_finish(a, &mb).expect("a"),
            spake_finish(b, &ma).expect("b")
        );
    }
}
