//! Table re-wrap throughput on Postgres (100k rows by default), with the test key and with the
//! local provider, beside a plain batched UPDATE of the same column over the same rows.
//!
//!     cargo bench -p kms-fields-tests --bench rewrap            # REWRAP_N=100000
//!
//! Needs Postgres (KMS_FIELDS_PG_URL, default 127.0.0.1:5432/test).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use kms_fields::provider::LocalKey;
use kms_fields::{KeySpec, Kms};
use kms_fields_diesel::rotation::{self, AttrSpec, TableOptions, TableSpec};
use kms_fields_tests::db::PgDb;

fn main() {
    let n: usize = std::env::var("REWRAP_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let (_db, mut conn) = PgDb::new();
    // n rows with a plaintext column, backfilled into encrypted form by each provider in turn
    conn.batch_execute(&format!(
        "INSERT INTO users (name) SELECT 'person' || g || '@example.org' FROM generate_series(1, {n}) g"
    ))
    .unwrap();
    let local = LocalKey::new()
        .with_key("bench", &[7u8; 32])
        .unwrap()
        .with_key("bench2", &[8u8; 32])
        .unwrap();
    let kms = Kms::builder().insecure_test_key().local(local).build();
    let attr = AttrSpec {
        column: "email_enc".into(),
        binary: false,
        associated_data: b"email".to_vec(),
        padding: None,
        kms_rails: None,
    };

    println!("## re-wrap of {n} rows on Postgres (batch 1000, concurrency 64)");
    println!("| provider | rows/s | seconds | plain batched UPDATE rows/s | ratio to the floor |");
    println!("|---|---:|---:|---:|---:|");
    for (label, v1, v2) in [
        ("test key", "insecure-test-key", "insecure-test-key"),
        ("local key", "local/bench", "local/bench2"),
    ] {
        conn.batch_execute("UPDATE users SET encrypted_kms_key = NULL, email_enc = NULL")
            .unwrap();
        let seed = TableSpec {
            attributes: vec![attr.clone()],
            ..TableSpec::new(
                "users",
                "User",
                "encrypted_kms_key",
                KeySpec::new().key_id(v1),
            )
        };
        let s =
            rotation::backfill_table(&mut conn, &kms, &seed, &["name"], TableOptions::default())
                .unwrap();
        assert_eq!(s.done as usize, n);
        let target = TableSpec::new(
            "users",
            "User",
            "encrypted_kms_key",
            KeySpec::new().key_id(v2).version(2).previous_version(1, v1),
        );
        let started = Instant::now();
        let s = rotation::rotate_table(&mut conn, &kms, &target, TableOptions::default()).unwrap();
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(s.done as usize, n);
        // the floor: the same column rewritten in id batches of 1000, no KMS, no per-row work
        let started = Instant::now();
        for start in (0..n).step_by(1000) {
            conn.batch_execute(&format!(
                "UPDATE users SET encrypted_kms_key = encrypted_kms_key || '' WHERE id > {start} AND id <= {}",
                start + 1000
            ))
            .unwrap();
        }
        let floor = started.elapsed().as_secs_f64();
        println!(
            "| {label} | {:.0} | {secs:.1} | {:.0} | {:.1}× |",
            n as f64 / secs,
            n as f64 / floor,
            secs / floor
        );
    }
    let count: i64 =
        diesel::sql_query("SELECT COUNT(*) AS n FROM users WHERE encrypted_kms_key LIKE 'v2:%'")
            .get_result::<Count>(&mut conn)
            .unwrap()
            .n;
    assert_eq!(count as usize, n);
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}
