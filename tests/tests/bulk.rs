//! Bulk operations and the decrypt cache.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use diesel::prelude::*;
use futures::StreamExt;
use kms_fields::provider::TestKey;
use kms_fields::{DecryptCache, ErrorKind, Kms, KmsModel, SaveFlow, bulk};
use kms_fields_tests::LatencyProvider;
use kms_fields_tests::db::{MysqlDb, PgDb, SqliteDb};
use kms_fields_tests::models::User;
use kms_fields_tests::schema::users;

/// `n` sealed in-memory users with ids 1..=n (as if loaded), each with its own key.
fn users(n: i32) -> Vec<User> {
    let kms = Kms::new();
    let mut v: Vec<User> = (1..=n)
        .map(|i| {
            let mut u = User {
                id: Some(i),
                ..Default::default()
            };
            u.set_email_blocking(&kms, Some(&format!("user{i}@example.org")))
                .unwrap();
            u
        })
        .collect();
    assert!(
        kms_fields::blocking::block_on(bulk::seal_many(&kms, &mut v, 64))
            .unwrap()
            .iter()
            .all(|r| r.is_ok())
    );
    v.into_iter().map(fresh).collect()
}

/// The record as a fresh load would give it (no cached key).
fn fresh(u: User) -> User {
    User {
        encrypted_kms_key: kms_fields_diesel::KmsKey::from_stored(
            u.encrypted_kms_key.stored().map(str::to_owned),
        ),
        encrypted_kms_key_phone: kms_fields_diesel::KmsKey::from_stored(
            u.encrypted_kms_key_phone.stored().map(str::to_owned),
        ),
        ..u
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_results_equal_the_serial_path_for_1000_records() {
    let records = users(1000);
    let serial_kms = Kms::new();
    let mut serial = Vec::new();
    for u in records.iter().cloned().map(fresh) {
        serial.push(u.email(&serial_kms).await.unwrap());
    }
    let kms = Kms::new();
    let results = bulk::unlock_many(&kms, &records, 64).await;
    assert!(results.iter().all(|r| r.is_ok()));
    assert_eq!(kms.stats().decrypts(), 1000, "one Decrypt per record key");
    let mut bulk_values = Vec::new();
    for u in &records {
        bulk_values.push(u.email(&kms).await.unwrap());
    }
    assert_eq!(
        kms.stats().decrypts(),
        1000,
        "reads after unlock make no KMS call"
    );
    assert_eq!(bulk_values, serial);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_failing_record_among_100_leaves_99_results_in_order() {
    let mut records = users(100);
    records[37].id = Some(9999); // its context no longer matches: Decrypt fails
    let kms = Kms::new();
    let results = bulk::unlock_many(&kms, &records, 16).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 99);
    assert_eq!(
        results[37].as_ref().unwrap_err().kind(),
        ErrorKind::DecryptionFailed
    );
    for (i, u) in records.iter().enumerate().filter(|(i, _)| *i != 37) {
        assert_eq!(
            u.email(&kms).await.unwrap().unwrap(),
            format!("user{}@example.org", i + 1)
        );
    }
}

/// On tokio's paused clock (virtual time, advanced only when every task waits): 200 calls of
/// 5 ms with 16 in flight take exactly ceil(200 / 16) = 13 rounds of 5 ms, whatever the load
/// of the machine; serially they would take 1 s.
#[test]
fn concurrency_is_bounded_and_used() {
    let records = users(200);
    let latency = Arc::new(LatencyProvider::fixed(TestKey, Duration::from_millis(5)));
    let kms = Kms::builder()
        .insecure_test_key()
        .provider(kms_fields::ProviderKind::Test, latency.clone())
        .build();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let elapsed = rt.block_on(async {
        let started = tokio::time::Instant::now();
        let results = bulk::unlock_many(&kms, &records, 16).await;
        assert!(results.iter().all(|r| r.is_ok()));
        started.elapsed()
    });
    assert_eq!(latency.peak.load(Ordering::SeqCst), 16, "bounded, and used");
    // virtual time: 13 rounds of 5 ms (each timer rounds up to the clock's 1 ms tick)
    assert!(
        elapsed >= Duration::from_millis(65) && elapsed <= Duration::from_millis(13 * 6),
        "{elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn seal_many_reports_per_record_failures() {
    let kms = Kms::new();
    let mut records: Vec<User> = (0..10)
        .map(|i| {
            let mut u = User {
                id: (i != 4).then_some(i),
                ..Default::default()
            };
            u.set_email_blocking(&kms, Some("x")).unwrap();
            u
        })
        .collect();
    let results = bulk::seal_many(&kms, &mut records, 4).await;
    assert_eq!(
        results[4].as_ref().unwrap_err().kind(),
        ErrorKind::MissingId
    );
    assert!(
        records[4].encrypted_kms_key.is_pending(),
        "the failed record keeps its pending key"
    );
    assert_eq!(results.iter().filter(|r| matches!(r, Ok(1))).count(), 9);
}

#[tokio::test(flavor = "multi_thread")]
async fn unlock_stream_keeps_order() {
    let records = users(50);
    let kms = Kms::builder()
        .insecure_test_key()
        .test_key(LatencyProvider::uniform(
            TestKey,
            Duration::from_millis(1),
            Duration::from_millis(8),
        ))
        .build();
    let out: Vec<(User, kms_fields::Result<()>)> =
        bulk::unlock_stream(&kms, futures::stream::iter(records), 8)
            .collect()
            .await;
    let ids: Vec<i32> = out
        .iter()
        .map(|(u, r)| {
            assert!(r.is_ok());
            u.id.unwrap()
        })
        .collect();
    assert_eq!(ids, (1..=50).collect::<Vec<_>>());
}

/// Hits with a TTL no test run comes near (an hour), so a loaded machine cannot expire an
/// entry between two reads; expiry with a 1 ms TTL and a 50 ms sleep, which can only be longer
/// than asked (moka reads the monotonic clock, not tokio's, so paused time does not apply).
#[tokio::test(flavor = "multi_thread")]
async fn cache_hit_makes_no_call_and_ttl_expiry_makes_one() {
    let records = users(3);
    let kms = Kms::builder()
        .insecure_test_key()
        .decrypt_cache(DecryptCache::new(100, Duration::from_secs(3600)))
        .build();
    records[0].clone().email(&kms).await.unwrap();
    assert_eq!(kms.stats().decrypts(), 1);
    // a fresh load of the same row: served by the cache
    let again = fresh(records[0].clone());
    assert_eq!(
        again.email(&kms).await.unwrap().unwrap(),
        "user1@example.org"
    );
    assert_eq!(kms.stats().decrypts(), 1, "cache hit: no KMS call");
    // another record is another key
    fresh(records[1].clone()).email(&kms).await.unwrap();
    assert_eq!(kms.stats().decrypts(), 2);

    let short = Kms::builder()
        .insecure_test_key()
        .decrypt_cache(DecryptCache::new(100, Duration::from_millis(1)))
        .build();
    fresh(records[0].clone()).email(&short).await.unwrap();
    assert_eq!(short.stats().decrypts(), 1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    fresh(records[0].clone()).email(&short).await.unwrap();
    assert_eq!(short.stats().decrypts(), 2, "after the TTL: one new call");
}

/// A test-key provider of another "account": its permission check refuses every unwrap.
#[derive(Debug)]
struct DeniesUnwrap;

#[async_trait::async_trait]
impl kms_fields::Provider for DeniesUnwrap {
    fn kind(&self) -> kms_fields::ProviderKind {
        kms_fields::ProviderKind::Test
    }
    async fn wrap(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: Option<&kms_fields::EncryptionContext>,
    ) -> kms_fields::Result<Vec<u8>> {
        kms_fields::Provider::wrap(&TestKey, key_id, plaintext, context).await
    }
    async fn unwrap(
        &self,
        _: &str,
        _: &[u8],
        _: Option<&kms_fields::EncryptionContext>,
    ) -> kms_fields::Result<zeroize::Zeroizing<Vec<u8>>> {
        Err(kms_fields::Error::new(
            ErrorKind::AccessDenied,
            "this client may not decrypt",
        ))
    }
}

/// Issue 19.5: one cache shared by two clients of the same provider kind (two accounts) keys
/// its entries by provider instance, so the second client's own permission check still runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_shared_cache_never_skips_another_clients_permission_check() {
    let records = users(1);
    let cache = DecryptCache::new(100, Duration::from_secs(3600));
    let allowed = Kms::builder()
        .insecure_test_key()
        .decrypt_cache(cache.clone())
        .build();
    let denied = Kms::builder()
        .insecure_test_key()
        .test_key(DeniesUnwrap)
        .decrypt_cache(cache.clone())
        .build();
    fresh(records[0].clone()).email(&allowed).await.unwrap();
    assert_eq!(allowed.stats().decrypts(), 1);
    let e = fresh(records[0].clone()).email(&denied).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert_eq!(
        denied.stats().decrypts(),
        1,
        "the denied client made its own call"
    );
    // the allowed client still hits its entry
    fresh(records[0].clone()).email(&allowed).await.unwrap();
    assert_eq!(allowed.stats().decrypts(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_is_bounded_by_entries() {
    let records = users(20);
    let cache = DecryptCache::new(5, Duration::from_secs(60));
    let kms = Kms::builder()
        .insecure_test_key()
        .decrypt_cache(cache.clone())
        .build();
    for r in &records {
        fresh(r.clone()).email(&kms).await.unwrap();
    }
    cache.run_pending_tasks().await;
    assert!(cache.entry_count() <= 5, "{} entries", cache.entry_count());
    assert_eq!(kms.stats().decrypts(), 20);
    // reading all 20 again: at most the 5 kept are hits, the evicted ones are fetched again
    for r in &records {
        fresh(r.clone()).email(&kms).await.unwrap();
    }
    assert!(kms.stats().decrypts() >= 35, "{}", kms.stats().decrypts());
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_reads_of_one_key_share_one_call() {
    let records = users(1);
    let kms = Kms::builder()
        .insecure_test_key()
        .test_key(LatencyProvider::fixed(TestKey, Duration::from_millis(50)))
        .decrypt_cache(DecryptCache::new(100, Duration::from_secs(60)))
        .build();
    let copies: Vec<User> = (0..40).map(|_| fresh(records[0].clone())).collect();
    let reads = futures::future::join_all(copies.iter().map(|u| u.email(&kms))).await;
    assert!(
        reads
            .iter()
            .all(|r| r.as_ref().unwrap().as_deref() == Some("user1@example.org"))
    );
    assert_eq!(kms.stats().decrypts(), 1);
    // a wrong context is not served from the cache entry of the right one
    let mut other = fresh(records[0].clone());
    other.id = Some(2);
    assert_eq!(
        other.email(&kms).await.unwrap_err().kind(),
        ErrorKind::DecryptionFailed
    );
    assert_eq!(kms.stats().decrypts(), 2);
}

macro_rules! insert_many_suite {
    ($name:ident, $db:ty, $flow:expr) => {
        #[test]
        fn $name() {
            let (_db, mut conn) = <$db>::new();
            let kms = Kms::new();
            let mut batch: Vec<User> = (0..25)
                .map(|i| {
                    let mut u = User::default();
                    u.set_email_blocking(&kms, Some(&format!("bulk{i}@example.org")))
                        .unwrap();
                    u.set_phone_blocking(&kms, Some(&format!("{i}"))).unwrap();
                    u
                })
                .collect();
            assert_eq!(
                kms_fields_diesel::insert_many(&mut conn, &kms, users::table, &mut batch, 8)
                    .unwrap(),
                $flow
            );
            assert_eq!(kms.stats().encrypts(), 50);
            let rows: Vec<User> = users::table
                .order(users::id)
                .select(User::as_select())
                .load(&mut conn)
                .unwrap();
            assert_eq!(rows.len(), 25);
            let reader = Kms::new();
            let results =
                kms_fields::blocking::block_on(bulk::unlock_many(&reader, &rows, 8)).unwrap();
            assert!(results.iter().all(|r| r.is_ok()));
            for (row, sent) in rows.iter().zip(&batch) {
                assert_eq!(row.id, sent.id);
                assert_eq!(
                    row.email_blocking(&reader).unwrap(),
                    sent.email_blocking(&kms).unwrap()
                );
            }
            assert_eq!(reader.stats().decrypts(), 50);
            // all or nothing: a failing batch writes nothing and leaves keys pending
            let mut bad: Vec<User> = (0..3)
                .map(|_| {
                    let mut u = User::default();
                    u.set_email_blocking(&kms, Some("y")).unwrap();
                    u
                })
                .collect();
            bad[1].id = Some(rows[0].id.unwrap()); // duplicate primary key
            assert!(
                kms_fields_diesel::insert_many(&mut conn, &kms, users::table, &mut bad, 8).is_err()
            );
            assert_eq!(
                users::table.count().get_result::<i64>(&mut conn).unwrap(),
                25
            );
            assert!(bad.iter().all(|u| u.encrypted_kms_key.is_pending()));
            assert_eq!(bad[0].id, None);
        }
    };
}

insert_many_suite!(
    postgres_insert_many_prefetches_ids_in_one_query,
    PgDb,
    SaveFlow::Prefetch
);
insert_many_suite!(
    sqlite_insert_many_in_one_transaction,
    SqliteDb,
    SaveFlow::AfterInsert
);
insert_many_suite!(
    mysql_insert_many_in_one_transaction,
    MysqlDb,
    SaveFlow::AfterInsert
);

#[test]
fn the_user_model_is_a_kms_model() {
    assert_eq!(<User as KmsModel>::KEYS.len(), 2);
}
