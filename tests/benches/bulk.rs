//! Bulk-read throughput against the bound set by how many KMS calls may be in flight, and the
//! per-record cost of the library itself.
//!
//!     KMS_FIELDS_MOTO_URL=http://127.0.0.1:5005 cargo bench -p kms-fields-tests --bench bulk
//!
//! Environment: BULK_N (records, default 10000), BULK_N_SERIAL (records for concurrency 1,
//! default 1000 — 10,000 would take 50 s for the same rate), MOTO_N (default 2000).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use kms_fields::cipher::{self, AttributeOptions, Backend};
use kms_fields::provider::TestKey;
use kms_fields::{DataKey, Kms, ProviderKind, bulk};
use kms_fields_diesel::KmsKey;
use kms_fields_tests::LatencyProvider;
use kms_fields_tests::models::{RAILS_KEY_ID, User};
use kms_fields_tests::schema::users;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fresh(u: &User) -> User {
    User {
        encrypted_kms_key: KmsKey::from_stored(u.encrypted_kms_key.stored().map(str::to_owned)),
        encrypted_kms_key_phone: KmsKey::from_stored(
            u.encrypted_kms_key_phone.stored().map(str::to_owned),
        ),
        ..u.clone()
    }
}

/// `n` sealed records with one key each.
fn records(kms: &Kms, n: usize) -> Vec<User> {
    let mut v: Vec<User> = (1..=n as i32)
        .map(|i| {
            let mut u = User {
                id: Some(i),
                ..Default::default()
            };
            u.set_email_blocking(kms, Some("someone@example.org"))
                .unwrap();
            u
        })
        .collect();
    let r = kms_fields::blocking::block_on(bulk::seal_many(kms, &mut v, 128)).unwrap();
    assert!(r.iter().all(|x| x.is_ok()));
    v
}

fn bulk_read(kms: &Kms, recs: &[User], concurrency: usize) -> f64 {
    let loaded: Vec<User> = recs.iter().map(fresh).collect();
    let started = Instant::now();
    let r = kms_fields::blocking::block_on(bulk::unlock_many(kms, &loaded, concurrency)).unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert!(r.iter().all(|x| x.is_ok()));
    loaded.len() as f64 / secs
}

fn main() {
    // criterion-style filters are passed by `cargo bench`; this binary runs everything
    let n = env("BULK_N", 10_000);
    let n_serial = env("BULK_N_SERIAL", 1_000);
    let latency = Duration::from_millis(5);

    println!(
        "## bulk read, test key behind {} ms injected latency",
        latency.as_millis()
    );
    println!("| concurrency | records | records/s | bound (concurrency / latency) | ratio |");
    println!("|---:|---:|---:|---:|---:|");
    let plain = Kms::new();
    let recs = records(&plain, n);
    for c in [1usize, 16, 64, 256] {
        let kms = Kms::builder()
            .insecure_test_key()
            .provider(
                ProviderKind::Test,
                Arc::new(LatencyProvider::fixed(TestKey, latency)),
            )
            .build();
        let count = if c == 1 { n_serial } else { n };
        let rate = bulk_read(&kms, &recs[..count], c);
        let bound = c as f64 / latency.as_secs_f64();
        println!(
            "| {c} | {count} | {rate:.0} | {bound:.0} | {:.2} |",
            rate / bound
        );
    }

    if let Ok(url) = std::env::var("KMS_FIELDS_MOTO_URL") {
        let m = env("MOTO_N", 2_000);
        let key_id = kms_fields_tests::moto_key();
        let _ = RAILS_KEY_ID.set(key_id.clone());
        let kms = kms_fields_tests::moto_kms();
        let spec = kms_fields::KeySpec::new().key_id(&key_id);
        // records wrapped by the moto key (the User model's key id is the test key, so wrap
        // through the Kms API with the moto key spec and store the result in the key column)
        let mut recs: Vec<User> = records(&plain, m);
        let wraps: Vec<String> = kms_fields::blocking::block_on(async {
            use futures::StreamExt;
            futures::stream::iter(recs.iter())
                .map(|u| {
                    let key = u.encrypted_kms_key.cached_key().unwrap().clone();
                    let id = u.id.unwrap();
                    let (kms, spec) = (&kms, &spec);
                    async move {
                        let ctx = kms_fields::EncryptionContext::for_model("User", id);
                        kms.wrap_data_key(spec, None, &key, &move |_| Ok(Some(ctx.clone())))
                            .await
                            .unwrap()
                    }
                })
                .buffered(64)
                .collect()
                .await
        })
        .unwrap();
        for (u, w) in recs.iter_mut().zip(wraps) {
            u.encrypted_kms_key = KmsKey::from_stored(Some(w));
        }
        // the same keys as RailsUser records (model key spec = the moto key): bulk::unlock_many
        let rails: Vec<kms_fields_tests::models::RailsUser> = recs
            .iter()
            .map(|u| kms_fields_tests::models::RailsUser {
                id: u.id,
                // unlock unwraps the keys of records with something to read
                address_enc: Some(vec![0]),
                encrypted_kms_key: KmsKey::from_stored(
                    u.encrypted_kms_key.stored().map(str::to_owned),
                ),
            })
            .collect();
        println!(
            "\n## bulk read against moto over HTTP ({url}, no injected latency), {m} records, bulk::unlock_many"
        );
        println!("| concurrency | records/s | bound (concurrency × serial rate) | ratio |");
        println!("|---:|---:|---:|---:|");
        let unwraps = |c: usize| {
            let loaded: Vec<kms_fields_tests::models::RailsUser> = rails
                .iter()
                .map(|u| kms_fields_tests::models::RailsUser {
                    encrypted_kms_key: KmsKey::from_stored(
                        u.encrypted_kms_key.stored().map(str::to_owned),
                    ),
                    ..u.clone()
                })
                .collect();
            let started = Instant::now();
            let r = kms_fields::blocking::block_on(bulk::unlock_many(&kms, &loaded, c)).unwrap();
            assert!(
                r.iter().all(|x| x.is_ok()),
                "{:?}",
                r.iter().find(|x| x.is_err())
            );
            m as f64 / started.elapsed().as_secs_f64()
        };
        let serial = unwraps(1);
        println!(
            "| 1 | {serial:.0} | {serial:.0} | 1.00 |  ({:.2} ms per call)",
            1000.0 / serial
        );
        for c in [16usize, 64, 256] {
            let rate = unwraps(c);
            let bound = serial * c as f64;
            println!("| {c} | {rate:.0} | {bound:.0} | {:.2} |", rate / bound);
        }
    } else {
        println!("\n(KMS_FIELDS_MOTO_URL unset: skipping the moto run)");
    }

    // per-record CPU cost on SQLite with the test key: create + read back 2 attributes
    println!("\n## per-record cost on SQLite (test key, in-memory database)");
    let records_n = 5_000;
    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    use diesel_migrations::MigrationHarness;
    conn.run_pending_migrations(kms_fields_migrations::SQLITE)
        .unwrap();
    let kms = Kms::new();
    let started = Instant::now();
    for i in 0..records_n {
        let mut u = User::default();
        u.set_email_blocking(&kms, Some(&format!("user{i}@example.org")))
            .unwrap();
        u.set_phone_blocking(&kms, Some("+1 555 0100")).unwrap();
        kms_fields_diesel::insert(&mut conn, &kms, users::table, &mut u).unwrap();
    }
    let create = started.elapsed().as_secs_f64() / records_n as f64 * 1e6;
    let started = Instant::now();
    let rows: Vec<User> = users::table
        .select(User::as_select())
        .load(&mut conn)
        .unwrap();
    for u in &rows {
        u.email_blocking(&kms).unwrap();
        u.phone_blocking(&kms).unwrap();
    }
    let read = started.elapsed().as_secs_f64() / records_n as f64 * 1e6;
    // the same rows without encryption, as the floor
    let started = Instant::now();
    for i in 0..records_n {
        diesel::insert_into(users::table)
            .values((
                users::email_enc.eq(format!("user{i}@example.org")),
                users::phone_enc.eq("+1 555 0100"),
            ))
            .execute(&mut conn)
            .unwrap();
    }
    let plain_create = started.elapsed().as_secs_f64() / records_n as f64 * 1e6;
    println!("| step | µs/record | plain (no encryption) µs/record |");
    println!("|---|---:|---:|");
    println!(
        "| create (2 attributes, 2 keys, after-insert flow) | {create:.1} | {plain_create:.1} |"
    );
    println!("| load + read 2 attributes (2 Decrypts) | {read:.1} | |");

    // AES-256-GCM throughput on a 16 MiB buffer
    println!("\n## AES-256-GCM throughput (16 MiB, encrypt)");
    let key = DataKey::generate().unwrap();
    let data = vec![0x5au8; 16 << 20];
    for backend in Backend::all() {
        let started = Instant::now();
        let rounds = 8;
        for _ in 0..rounds {
            std::hint::black_box(
                cipher::encrypt_with_nonce(
                    *backend,
                    &key,
                    &[1; 12],
                    &data,
                    AttributeOptions::lockbox(),
                )
                .unwrap(),
            );
        }
        let gbs = (data.len() * rounds) as f64 / started.elapsed().as_secs_f64() / 1e9;
        println!("| {backend:?} | {gbs:.2} GB/s |");
    }
    println!("(compare: openssl speed -evp aes-256-gcm -bytes 16384)");
}
