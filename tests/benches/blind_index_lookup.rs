//! Login by email on a 100k-row Postgres table: computing the blind index of the typed email
//! (Argon2id, the gem's default and slow cost) and the indexed `SELECT … WHERE email_bidx = $1`.
//!
//!     cargo bench -p kms-fields-tests --bench blind_index_lookup   # BIDX_N=100000
//!
//! The 100k rows' index values are random 32-byte strings (computing 100k Argon2id indexes
//! would take ~10 minutes and makes no difference to the lookup); 100 rows are real records
//! saved through the model, which are the ones looked up. Needs Postgres (KMS_FIELDS_PG_URL).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use kms_fields::Kms;
use kms_fields::blind_index::{Algorithm, BlindIndex, MasterKey};
use kms_fields_tests::db::PgDb;
use kms_fields_tests::models::Person;
use kms_fields_tests::schema::people;

fn per_op(total: Duration, n: u32) -> String {
    let us = total.as_secs_f64() * 1e6 / n as f64;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

fn main() {
    let n: usize = std::env::var("BIDX_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let (_db, mut conn) = PgDb::new();
    conn.batch_execute(&format!(
        "INSERT INTO people (email_enc, email_bidx) \
         SELECT 'x', encode(sha256(g::text::bytea), 'base64') FROM generate_series(1, {n}) g; ANALYZE people"
    ))
    .unwrap();
    let master = MasterKey::generate().unwrap();
    let kms = Kms::builder()
        .insecure_test_key()
        .blind_index_key(master.clone())
        .blind_index_key_named("v2", MasterKey::generate().unwrap())
        .build();
    let mut emails = Vec::new();
    for i in 0..100 {
        let email = format!("user{i}@example.org");
        let mut p = Person::default();
        p.set_email_blocking(&kms, Some(&email)).unwrap();
        kms_fields_diesel::insert(&mut conn, &kms, people::table, &mut p).unwrap();
        emails.push(email);
    }
    println!("## login by email: {n} + 100 rows in Postgres, unique index on email_bidx");
    println!("| step | per lookup |");
    println!("|---|---:|");
    for (label, alg) in [
        ("Argon2id default (t=3, 4 MiB)", Algorithm::ARGON2ID),
        ("Argon2id slow (t=4, 32 MiB)", Algorithm::ARGON2ID_SLOW),
    ] {
        let index = BlindIndex::builder("people", "email_bidx")
            .algorithm(alg)
            .build()
            .unwrap();
        let rounds = if alg == Algorithm::ARGON2ID { 100 } else { 20 };
        let started = Instant::now();
        for e in emails.iter().take(rounds) {
            std::hint::black_box(index.compute_text(&master, e).unwrap());
        }
        println!(
            "| index of the typed email, {label} | {} |",
            per_op(started.elapsed(), rounds as u32)
        );
    }
    let wanted: Vec<String> = emails
        .iter()
        .map(|e| Person::email_bidx(&kms, e).unwrap())
        .collect();
    let started = Instant::now();
    let rounds = 2000;
    for i in 0..rounds {
        let p: Person = people::table
            .filter(people::email_bidx.eq(&wanted[i % wanted.len()]))
            .select(Person::as_select())
            .first(&mut conn)
            .unwrap();
        std::hint::black_box(p);
    }
    println!(
        "| `SELECT … WHERE email_bidx = $1` (indexed) | {} |",
        per_op(started.elapsed(), rounds as u32)
    );
    let reader = Kms::new();
    let started = Instant::now();
    for i in 0..rounds {
        let p: Person = people::table
            .filter(people::email_bidx.eq(&wanted[i % wanted.len()]))
            .select(Person::as_select())
            .first(&mut conn)
            .unwrap();
        std::hint::black_box(p.email_blocking(&reader).unwrap());
    }
    println!(
        "| the same + decrypt the email (test key) | {} |",
        per_op(started.elapsed(), rounds as u32)
    );
    let started = Instant::now();
    for e in emails.iter().take(100) {
        let w = Person::email_bidx(&kms, e).unwrap();
        let p: Person = people::table
            .filter(people::email_bidx.eq(w))
            .select(Person::as_select())
            .first(&mut conn)
            .unwrap();
        std::hint::black_box(p);
    }
    println!(
        "| whole login lookup (default index + SELECT) | {} |",
        per_op(started.elapsed(), 100)
    );
}
