//! Audit events and call counts.
//!
//! Every KMS call made through [`Kms`](crate::Kms) emits one `tracing` event at `INFO` with
//! target `kms_fields::audit` and the fields `operation`, `provider`, `key_id`, `context`
//! (canonical JSON; contexts name records, not secrets), `elapsed_us` and `outcome`
//! (`ok` or the error kind). Plaintexts and data keys are never part of an event.
//!
//! [`CallStats`] counts calls per provider and operation, so tests can assert "one Encrypt,
//! zero Decrypt" the way kms_encrypted's tests do.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::provider::ProviderKind;

/// A KMS operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Wrap (KMS `Encrypt`).
    Encrypt,
    /// Unwrap (KMS `Decrypt`).
    Decrypt,
    /// Native re-wrap (AWS `ReEncrypt`, Vault `rewrap`).
    ReEncrypt,
}

impl Operation {
    const ALL: [Operation; 3] = [Operation::Encrypt, Operation::Decrypt, Operation::ReEncrypt];

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Encrypt => "encrypt",
            Operation::Decrypt => "decrypt",
            Operation::ReEncrypt => "reencrypt",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const KINDS: [ProviderKind; 5] = [
    ProviderKind::Test,
    ProviderKind::Local,
    ProviderKind::Aws,
    ProviderKind::Vault,
    ProviderKind::Gcp,
];

fn kind_index(kind: ProviderKind) -> usize {
    KINDS.iter().position(|k| *k == kind).unwrap_or(0)
}

/// Counts of KMS calls (attempted, successful or not) per provider and operation.
#[derive(Default)]
pub struct CallStats {
    counts: [[AtomicU64; 3]; 5],
}

impl CallStats {
    pub(crate) fn record(&self, kind: ProviderKind, op: Operation) {
        self.counts[kind_index(kind)][op.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Calls of `op` to `kind`.
    pub fn count_for(&self, kind: ProviderKind, op: Operation) -> u64 {
        self.counts[kind_index(kind)][op.index()].load(Ordering::Relaxed)
    }

    /// Calls of `op` to any provider.
    pub fn count(&self, op: Operation) -> u64 {
        KINDS.iter().map(|k| self.count_for(*k, op)).sum()
    }

    /// `Encrypt` calls to any provider.
    pub fn encrypts(&self) -> u64 {
        self.count(Operation::Encrypt)
    }

    /// `Decrypt` calls to any provider.
    pub fn decrypts(&self) -> u64 {
        self.count(Operation::Decrypt)
    }

    /// Native re-encrypt calls to any provider.
    pub fn reencrypts(&self) -> u64 {
        self.count(Operation::ReEncrypt)
    }

    /// Set every counter to zero.
    pub fn reset(&self) {
        for row in &self.counts {
            for c in row {
                c.store(0, Ordering::Relaxed);
            }
        }
    }
}

impl fmt::Debug for CallStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for kind in KINDS {
            for op in Operation::ALL {
                let n = self.count_for(kind, op);
                if n > 0 {
                    m.entry(&format_args!("{kind}.{}", op.as_str()), &n);
                }
            }
        }
        m.finish()
    }
}
