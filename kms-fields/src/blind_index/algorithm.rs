//! The index functions (Argon2id, PBKDF2-HMAC-SHA256) and the output encodings.

use argon2::{Argon2, Params, Version};
use hmac::Hmac;
use sha2::Sha256;

use crate::encoding as b64;
use crate::error::{Error, Result};

use super::key::IndexKey;

/// The function that turns a value into its blind index, keyed by the [`IndexKey`] (used as
/// the salt). `#[non_exhaustive]`: the gem's legacy `argon2i` and `scrypt` may be added.
///
/// The presets are the blind_index gem's: [`ARGON2ID`](Self::ARGON2ID) (its default),
/// [`ARGON2ID_SLOW`](Self::ARGON2ID_SLOW) (`slow: true`), [`PBKDF2_SHA256`](Self::PBKDF2_SHA256)
/// (`algorithm: :pbkdf2_sha256`, also its `legacy: true` hash) and
/// [`PBKDF2_SHA256_SLOW`](Self::PBKDF2_SHA256_SLOW).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// Argon2id, version 0x13, one lane: password = the value, salt = the index key.
    Argon2id {
        /// Passes over memory (the gem's `cost: {t:}`), ≥ 1.
        t_cost: u32,
        /// Memory in KiB (the gem's `cost: {m:}` is log2 of this), ≥ 8.
        m_cost_kib: u32,
    },
    /// PBKDF2-HMAC-SHA256: password = the value, salt = the index key.
    Pbkdf2Sha256 {
        /// Iterations (the gem's `iterations` / `cost: {iterations:}`), ≥ 1.
        iterations: u32,
    },
}

impl Algorithm {
    /// Argon2id t = 3, m = 4 MiB (the gem's default: `t: 3, m: 12`).
    pub const ARGON2ID: Self = Self::argon2id(3, 1 << 12);
    /// Argon2id t = 4, m = 32 MiB (the gem's `slow: true`: `t: 4, m: 15`).
    pub const ARGON2ID_SLOW: Self = Self::argon2id(4, 1 << 15);
    /// PBKDF2-HMAC-SHA256 with 10,000 iterations (the gem's default for this algorithm).
    pub const PBKDF2_SHA256: Self = Self::pbkdf2_sha256(10_000);
    /// PBKDF2-HMAC-SHA256 with 100,000 iterations (with `slow: true`).
    pub const PBKDF2_SHA256_SLOW: Self = Self::pbkdf2_sha256(100_000);

    /// Argon2id with a custom cost: `t_cost` passes over `m_cost_kib` KiB of memory.
    pub const fn argon2id(t_cost: u32, m_cost_kib: u32) -> Self {
        Self::Argon2id { t_cost, m_cost_kib }
    }

    /// Argon2id with a cost written as the gem writes it: `cost: {t: t, m: m_log2}` means
    /// 2^`m_log2` KiB. The gem accepts t in 3..=10 and m in 3..=22; so does this.
    pub fn argon2id_gem_cost(t: u32, m_log2: u32) -> Result<Self> {
        if !(3..=10).contains(&t) {
            return Err(Error::config(format!(
                "blind index: argon2id t must be between 3 and 10, got {t}"
            )));
        }
        if !(3..=22).contains(&m_log2) {
            return Err(Error::config(format!(
                "blind index: argon2id m must be between 3 and 22 (log2 of KiB), got {m_log2}"
            )));
        }
        Ok(Self::argon2id(t, 1 << m_log2))
    }

    /// PBKDF2-HMAC-SHA256 with a custom iteration count.
    pub const fn pbkdf2_sha256(iterations: u32) -> Self {
        Self::Pbkdf2Sha256 { iterations }
    }

    /// The smallest output this algorithm can produce: the Argon2 specification (and the
    /// reference implementation the gem calls) refuses tags shorter than 4 bytes.
    pub const fn min_size(&self) -> usize {
        match self {
            Self::Argon2id { .. } => Params::MIN_OUTPUT_LEN,
            Self::Pbkdf2Sha256 { .. } => 1,
        }
    }

    /// Check the cost parameters (the output size is checked by the caller).
    pub(super) fn validate(&self) -> std::result::Result<(), String> {
        match *self {
            Self::Argon2id { t_cost, m_cost_kib } => {
                if t_cost < Params::MIN_T_COST {
                    return Err(format!("argon2id t_cost must be at least 1, got {t_cost}"));
                }
                let min_m = Params::MIN_M_COST;
                if m_cost_kib < min_m {
                    return Err(format!(
                        "argon2id m_cost_kib must be at least {min_m} KiB, got {m_cost_kib}"
                    ));
                }
                Ok(())
            }
            Self::Pbkdf2Sha256 { iterations } => {
                if iterations == 0 {
                    return Err("pbkdf2_sha256 iterations must be at least 1".to_owned());
                }
                Ok(())
            }
        }
    }

    /// Fill `out` (its length is the output size) with the index of `value` under `key`.
    pub(super) fn hash(&self, key: &IndexKey, value: &[u8], out: &mut [u8]) -> Result<()> {
        let started = std::time::Instant::now();
        let result = self.hash_inner(key, value, out);
        if cfg!(debug_assertions) {
            warn_if_unoptimised(self, started.elapsed());
        }
        result
    }

    /// Far more than this algorithm takes with its crates optimised (Argon2id: ~1 ms per MiB
    /// pass, PBKDF2-HMAC-SHA256: ~0.5 µs per iteration on one core of a small server), and less
    /// than it takes unoptimised (~25× slower).
    pub(super) fn unoptimised_threshold(&self) -> std::time::Duration {
        use std::time::Duration;
        match *self {
            Self::Argon2id { t_cost, m_cost_kib } => {
                let mib_passes = u64::from(t_cost) * u64::from(m_cost_kib) / 1024;
                Duration::from_millis((8 * mib_passes).max(50))
            }
            Self::Pbkdf2Sha256 { iterations } => {
                Duration::from_micros((5 * u64::from(iterations)).max(50_000))
            }
        }
    }

    fn hash_inner(&self, key: &IndexKey, value: &[u8], out: &mut [u8]) -> Result<()> {
        match *self {
            Self::Argon2id { t_cost, m_cost_kib } => {
                let params = Params::new(m_cost_kib, t_cost, 1, Some(out.len()))
                    .map_err(|e| Error::config(format!("blind index: argon2id parameters: {e}")))?;
                Argon2::new(argon2::Algorithm::Argon2id, Version::V0x13, params)
                    .hash_password_into(value, key.expose_secret(), out)
                    .map_err(|e| Error::config(format!("blind index: argon2id failed: {e}")))
            }
            Self::Pbkdf2Sha256 { iterations } => {
                pbkdf2::pbkdf2::<Hmac<Sha256>>(value, key.expose_secret(), iterations, out)
                    .map_err(|_| Error::config("blind index: pbkdf2 failed"))
            }
        }
    }
}

/// The hint of a debug build whose blind-index KDF crates are not optimised.
pub(super) const UNOPTIMISED_HINT: &str = "blind index: one index took far longer than its cost parameters should (the KDF crates argon2, blake2 and sha2 are compiled without optimisation in this debug build): add [profile.dev.package.argon2] opt-level = 3 (and the same for blake2 and sha2) to your Cargo.toml";

/// Warn once per process when an index took longer than [`Algorithm::unoptimised_threshold`]
/// (debug builds only): in a user's crate the KDF dependencies compile at opt-level 0 unless
/// their profile says otherwise, and indexes then take ~25× longer.
fn warn_if_unoptimised(algorithm: &Algorithm, elapsed: std::time::Duration) -> bool {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    warn_once(&WARNED, algorithm, elapsed)
}

fn warn_once(
    warned: &std::sync::atomic::AtomicBool,
    algorithm: &Algorithm,
    elapsed: std::time::Duration,
) -> bool {
    if elapsed > algorithm.unoptimised_threshold()
        && !warned.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        tracing::warn!(
            target: "kms_fields::blind_index",
            elapsed_ms = elapsed.as_millis() as u64,
            "{UNOPTIMISED_HINT}"
        );
        return true;
    }
    false
}

#[cfg(test)]
mod unoptimised_tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    /// Issue 17.2: a debug build whose KDF crates are unoptimised (~25× slower: the default
    /// Argon2id index ~300 ms instead of ~10 ms) warns once, naming the profile fix; an
    /// optimised one stays quiet.
    #[test]
    fn a_slow_index_warns_once() {
        let warned = AtomicBool::new(false);
        let a = Algorithm::ARGON2ID;
        assert_eq!(a.unoptimised_threshold(), Duration::from_millis(96));
        assert!(
            !warn_once(&warned, &a, Duration::from_millis(12)),
            "optimised"
        );
        assert!(
            warn_once(&warned, &a, Duration::from_millis(300)),
            "unoptimised"
        );
        assert!(!warn_once(&warned, &a, Duration::from_millis(300)), "once");
        let slow = Algorithm::ARGON2ID_SLOW;
        assert!(slow.unoptimised_threshold() > Duration::from_millis(500));
        let pbkdf2 = Algorithm::pbkdf2_sha256(100_000);
        assert_eq!(pbkdf2.unoptimised_threshold(), Duration::from_millis(500));
        assert!(UNOPTIMISED_HINT.contains("[profile.dev.package.argon2] opt-level = 3"));
    }
}

impl Default for Algorithm {
    /// [`Algorithm::ARGON2ID`], the gem's default.
    fn default() -> Self {
        Self::ARGON2ID
    }
}

/// How the index bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Encoding {
    /// Strict base64 (padded, no newline) in a text column — the gem's default (`pack("m0")`).
    #[default]
    Base64,
    /// The raw bytes in a binary column (`bytea`, `BLOB`) — the gem's `encode: false`.
    Raw,
    /// Base64 with a trailing newline, as the gem writes with `legacy: true` (`pack("m")`);
    /// only for reading and writing indexes made by blind_index 0.x.
    LegacyBase64,
}

impl Encoding {
    pub(super) fn encode(self, bytes: Vec<u8>) -> super::BidxValue {
        match self {
            Self::Base64 => super::BidxValue::Text(b64::strict_encode(&bytes)),
            Self::LegacyBase64 => super::BidxValue::Text(b64::mime_encode(&bytes)),
            Self::Raw => super::BidxValue::Binary(bytes),
        }
    }

    /// Whether the index is stored as text (`true`) or as bytes.
    pub const fn is_text(self) -> bool {
        !matches!(self, Self::Raw)
    }
}
