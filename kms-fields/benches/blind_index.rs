//! Blind index computation per value: Argon2id default (t=3, m=4 MiB) and slow (t=4,
//! m=32 MiB), PBKDF2-HMAC-SHA256 default (10,000 iterations), and the (cached) per-index key
//! derivation (HKDF-SHA384 + HMAC-SHA256).
//!
//!     cargo bench -p kms-fields --bench blind_index

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use kms_fields::blind_index::{Algorithm, BlindIndex, IndexKey, MasterKey};

fn per_value(c: &mut Criterion) {
    let master = MasterKey::generate().unwrap();
    let mut g = c.benchmark_group("blind_index/per value");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    for (name, algorithm) in [
        ("argon2id default (t=3, m=4MiB)", Algorithm::ARGON2ID),
        ("argon2id slow (t=4, m=32MiB)", Algorithm::ARGON2ID_SLOW),
        ("pbkdf2-sha256 default (10k)", Algorithm::PBKDF2_SHA256),
    ] {
        let index = BlindIndex::builder("users", "email_bidx")
            .algorithm(algorithm)
            .build()
            .unwrap();
        index.index_key(&master).unwrap(); // warm the key cache, as a long-lived index would be
        g.bench_function(name, |b| {
            b.iter(|| {
                index
                    .compute(&master, black_box("ada.lovelace@example.org"))
                    .unwrap()
            })
        });
    }
    g.finish();
}

fn key_derivation(c: &mut Criterion) {
    let master = MasterKey::generate().unwrap();
    c.bench_function("blind_index/index key derivation (uncached)", |b| {
        b.iter(|| IndexKey::derive(&master, black_box("users"), black_box("email_bidx")).unwrap())
    });
}

criterion_group!(benches, per_value, key_derivation);
criterion_main!(benches);
