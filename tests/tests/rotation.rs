//! Rotation at scale: table re-wrap and data-key rotation in batches, concurrent writers, two
//! rotations at once, resumability, backfill, rate limits and progress.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use kms_fields::{KeySpec, Kms, bulk};
use kms_fields_diesel::rotation::{self, Progress, RotationMode, TableOptions, TableSpec};
use kms_fields_tests::db::{PgDb, SqliteDb, TestDb};
use kms_fields_tests::models::{User, UserV2};
use kms_fields_tests::schema::users;
use kms_fields_tests::seed_users;

fn v2_table() -> TableSpec {
    TableSpec::of_model(UserV2::KMS_KEY).unwrap()
}

/// Every row decrypts through the v2 model (bulk unlock, then each attribute).
macro_rules! all_readable {
    ($conn:expr) => {{
        let rows: Vec<UserV2> = users::table
            .select(UserV2::as_select())
            .load($conn)
            .unwrap();
        let kms = Kms::new();
        let results = kms_fields::blocking::block_on(bulk::unlock_many(&kms, &rows, 64)).unwrap();
        assert!(
            results.iter().all(|r| r.is_ok()),
            "{:?}",
            results.iter().find(|r| r.is_err())
        );
        for r in &rows {
            r.email_blocking(&kms).unwrap();
        }
        rows.len()
    }};
}

macro_rules! ten_thousand {
    ($name:ident, $db:ty) => {
        #[test]
        fn $name() {
            let (_db, mut conn) = <$db>::new();
            seed_users(&mut conn, 10_000);
            let kms = Kms::new();
            let mut seen: Vec<Progress> = Vec::new();
            let mut report = |p: &Progress| seen.push(*p);
            let summary = rotation::rotate_table(
                &mut conn,
                &kms,
                &v2_table(),
                TableOptions {
                    batch_size: 1000,
                    progress: Some(&mut report),
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(summary.done, 10_000);
            assert!(summary.errors.is_empty());
            assert_eq!(seen.len(), 10);
            assert_eq!(seen.last().unwrap().done, 10_000);
            assert!(seen.iter().all(|p| p.total == 10_000));
            assert!(seen.windows(2).all(|w| w[0].done < w[1].done));
            assert_eq!(
                kms.stats().decrypts() + kms.stats().encrypts(),
                20_000,
                "test key: unwrap + wrap per row"
            );
            let versions = rotation::key_versions(&mut conn, "users", "encrypted_kms_key").unwrap();
            assert_eq!(versions, vec![("v2:".to_owned(), 10_000)]);
            assert_eq!(all_readable!(&mut conn), 10_000);
            // a second run has nothing to do
            assert_eq!(
                rotation::rotate_table(&mut conn, &kms, &v2_table(), TableOptions::default())
                    .unwrap()
                    .done,
                0
            );
        }
    };
}

ten_thousand!(postgres_rewrap_10000_rows, PgDb);
ten_thousand!(sqlite_rewrap_10000_rows, SqliteDb);

#[test]
fn new_data_key_mode_reencrypts_and_resumes_after_a_partial_run() {
    let (_db, mut conn) = SqliteDb::new();
    seed_users(&mut conn, 900);
    let before: Vec<User> = users::table
        .order(users::id)
        .select(User::as_select())
        .load(&mut conn)
        .unwrap();
    let kms = Kms::new();
    let t = v2_table();
    // a bounded run (as a killed one): 2 batches of 200
    let partial = rotation::rotate_table(
        &mut conn,
        &kms,
        &t,
        TableOptions {
            mode: RotationMode::NewDataKey,
            batch_size: 200,
            max_batches: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(partial.done, 400);
    assert_eq!(
        all_readable!(&mut conn),
        900,
        "old and new rows are both readable mid-way"
    );
    let rest = rotation::rotate_table(
        &mut conn,
        &kms,
        &t,
        TableOptions {
            mode: RotationMode::NewDataKey,
            batch_size: 200,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(rest.done, 500, "no row processed twice");
    let after: Vec<UserV2> = users::table
        .order(users::id)
        .select(UserV2::as_select())
        .load(&mut conn)
        .unwrap();
    let reader = Kms::new();
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(b.email_enc, a.email_enc, "re-encrypted under a new key");
        assert_ne!(b.encrypted_kms_key.stored(), a.encrypted_kms_key.stored());
        assert_eq!(
            b.phone_enc, a.phone_enc,
            "the other key's attribute is untouched"
        );
        assert_eq!(
            a.email_blocking(&reader).unwrap(),
            b.email_blocking(&Kms::new()).unwrap()
        );
    }
}

macro_rules! rotation_with_writers {
    ($db:expr, $mode:expr) => {{
        let db = $db;
        let mode = $mode;

    let n = 1200;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let last: Arc<Mutex<HashMap<i32, String>>> = Arc::default();
    let completed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|t: i32| {
            let mut conn = db.connect();
            let (stop, last, completed) = (stop.clone(), last.clone(), completed.clone());
            std::thread::spawn(move || {
                let kms = Kms::new();
                let mut k = 0u32;
                let mut writes = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) || writes < 50 {
                    k = k.wrapping_mul(1_103_515_245).wrapping_add(12_345 + t as u32);
                    // each writer owns the ids ≡ t (mod 4): its last write per row is well defined
                    let id = ((k % (n as u32 / 4)) as i32) * 4 + t + 1;
                    let mut u: UserV2 = users::table.select(UserV2::as_select()).filter(users::id.eq(id)).first(&mut conn).unwrap();
                    let value = format!("w{t}-{writes}@example.org");
                    u.set_email_blocking(&kms, Some(&value)).unwrap();
                    match kms_fields_diesel::update_encrypted(&mut conn, &kms, &mut u) {
                        Ok(()) => {}
                        // the rotation moved the row since it was loaded: reload and write again
                        Err(e) if e.kind() == kms_fields::ErrorKind::Conflict => continue,
                        Err(e) => panic!("{e}"),
                    }
                    last.lock().unwrap().insert(id, value);
                    completed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    writes += 1;
                }
                writes
            })
        })
        .collect();
    let mut conn = db.connect();
    let kms = Kms::new();
    // Overlap, counted: the progress callback runs after each batch; the writes completed
    // between the first and the last report happened while the rotation was mid-table.
    let (mut first_report, mut last_report, mut reports) = (None::<usize>, 0usize, 0usize);
    let mut on_batch = |_: &kms_fields::table::Progress| {
        let now = completed.load(std::sync::atomic::Ordering::SeqCst);
        first_report.get_or_insert(now);
        last_report = now;
        reports += 1;
    };
    let summary = rotation::rotate_table(&mut conn, &kms, &v2_table(), TableOptions { mode, batch_size: 100, concurrency: 8, progress: Some(&mut on_batch), ..Default::default() }).unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let total_writes: i32 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(total_writes >= 200);
    let during = last_report - first_report.unwrap_or(last_report);
    eprintln!("{total_writes} writes, {during} of them between the first and the last of {reports} batch reports");
    assert!(reports >= 2, "{reports} progress reports");
    assert!(during > 0, "no write happened while the rotation was between its first and last batch");
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    // 0 lost updates: every row holds its writer's last value, every row decrypts
    let rows: Vec<UserV2> = users::table.order(users::id).select(UserV2::as_select()).load(&mut conn).unwrap();
    let last = last.lock().unwrap();
    let reader = Kms::new();
    for r in &rows {
        let email = r.email_blocking(&reader).unwrap().unwrap();
        let id = r.id.unwrap();
        match last.get(&id) {
            Some(v) => assert_eq!(&email, v, "row {id}"),
            None => assert_eq!(email, format!("user{}@example.org", id - 1)),
        }
    }
    // rows a writer put back to v1 are finished by another run
    rotation::rotate_table(&mut conn, &kms, &v2_table(), TableOptions { mode, ..Default::default() }).unwrap();
    assert_eq!(rotation::key_versions(&mut conn, "users", "encrypted_kms_key").unwrap(), vec![("v2:".to_owned(), n as u64)]);
    }};
}

#[test]
fn postgres_rotation_with_4_concurrent_writers_loses_no_update() {
    let (db, mut conn) = PgDb::new();
    seed_users(&mut conn, 1200);
    rotation_with_writers!(&db, RotationMode::NewDataKey);
}

#[test]
fn postgres_rewrap_with_4_concurrent_writers_loses_no_update() {
    let (db, mut conn) = PgDb::new();
    seed_users(&mut conn, 1200);
    rotation_with_writers!(&db, RotationMode::Rewrap);
}

#[test]
fn sqlite_rotation_with_4_concurrent_writers_loses_no_update() {
    let (db, mut conn) = SqliteDb::new();
    seed_users(&mut conn, 1200);
    drop(conn);
    rotation_with_writers!(&db, RotationMode::NewDataKey);
}

#[test]
fn postgres_two_rotations_at_once_share_the_work() {
    let (db, mut conn) = PgDb::new();
    seed_users(&mut conn, 3000);
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let mut conn = db.connect();
            std::thread::spawn(move || {
                let kms = Kms::new();
                rotation::rotate_table(
                    &mut conn,
                    &kms,
                    &v2_table(),
                    TableOptions {
                        batch_size: 100,
                        concurrency: 4,
                        ..Default::default()
                    },
                )
                .unwrap()
            })
        })
        .collect();
    let summaries: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    assert!(summaries.iter().all(|s| s.errors.is_empty()));
    assert_eq!(
        summaries.iter().map(|s| s.done).sum::<u64>(),
        3000,
        "every row rotated exactly once"
    );
    assert!(
        summaries.iter().all(|s| s.done > 0),
        "both workers took batches: {:?}",
        summaries.iter().map(|s| s.done).collect::<Vec<_>>()
    );
    assert_eq!(
        rotation::key_versions(&mut conn, "users", "encrypted_kms_key").unwrap(),
        vec![("v2:".to_owned(), 3000)]
    );
}

#[test]
fn rate_limit_counts_kms_requests() {
    let (_db, mut conn) = SqliteDb::new();
    seed_users(&mut conn, 100);
    let kms = Kms::new();
    let started = Instant::now();
    let s = rotation::rotate_table(
        &mut conn,
        &kms,
        &v2_table(),
        TableOptions {
            rate_per_second: Some(400.0),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(s.done, 100);
    // a test-key re-wrap is a Decrypt and an Encrypt: 200 requests, 2.5 ms apart
    let requests = kms.stats().decrypts() + kms.stats().encrypts();
    assert_eq!(requests, 200);
    let floor = Duration::from_secs_f64((requests - 1) as f64 / 400.0);
    assert!(
        started.elapsed() >= floor,
        "{:?} < {floor:?}",
        started.elapsed()
    );
}

/// A writer changes row `target` at the moment the rotation has read it and is calling the
/// KMS: the rotation's guarded UPDATE must lose, re-read the row and rotate the writer's value.
macro_rules! guard_loses_to_a_concurrent_write {
    ($name:ident, $db:ty, $mode:expr) => {
        #[test]
        fn $name() {
            let (db, mut conn) = <$db>::new();
            let ids = seed_users(&mut conn, 20);
            let target = ids[5];
            let url = db.url();
            let fired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = fired.clone();
            let hook =
                kms_fields_tests::HookProvider::new(kms_fields::provider::TestKey, move |ctx| {
                    let is_target = ctx.is_some_and(|c| {
                        c.canonical_json()
                            .contains(&format!("\"model_id\":\"{target}\""))
                    });
                    if is_target && !flag.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        // another connection, another thread: the application writing the row
                        let url = url.clone();
                        std::thread::spawn(move || {
                            let mut c =
                                <<$db as TestDb>::Conn as diesel::Connection>::establish(&url)
                                    .unwrap();
                            let kms = Kms::new();
                            let mut u: User = users::table
                                .find(target)
                                .select(User::as_select())
                                .first(&mut c)
                                .unwrap();
                            // the encrypt-only writer: a fresh data key (its key column changes)
                            u.encrypted_kms_key.clear();
                            u.address_enc = None;
                            u.set_email_blocking(&kms, Some("writer@example.org"))
                                .unwrap();
                            kms_fields_diesel::update_encrypted(&mut c, &kms, &mut u).unwrap();
                        })
                        .join()
                        .unwrap();
                    }
                });
            let kms = Kms::builder().insecure_test_key().test_key(hook).build();
            let s = rotation::rotate_table(
                &mut conn,
                &kms,
                &v2_table(),
                TableOptions {
                    mode: $mode,
                    ..Default::default()
                },
            )
            .unwrap();
            assert!(fired.load(std::sync::atomic::Ordering::SeqCst));
            assert_eq!((s.done, s.conflicts, s.errors.len()), (20, 1, 0), "{s:?}");
            let u: UserV2 = users::table
                .find(target)
                .select(UserV2::as_select())
                .first(&mut conn)
                .unwrap();
            assert_eq!(
                u.encrypted_kms_key
                    .stored()
                    .and_then(kms_fields::StoredKey::version_of),
                Some(2)
            );
            assert_eq!(
                u.email_blocking(&Kms::new()).unwrap().as_deref(),
                Some("writer@example.org"),
                "the write is kept"
            );
            assert_eq!(all_readable!(&mut conn), 20);
        }
    };
}

guard_loses_to_a_concurrent_write!(sqlite_guard_rewrap, SqliteDb, RotationMode::Rewrap);
guard_loses_to_a_concurrent_write!(
    sqlite_guard_new_data_key,
    SqliteDb,
    RotationMode::NewDataKey
);
guard_loses_to_a_concurrent_write!(
    mysql_guard_new_data_key,
    kms_fields_tests::db::MysqlDb,
    RotationMode::NewDataKey
);

#[test]
fn a_failing_row_is_reported_and_left_readable() {
    let (_db, mut conn) = SqliteDb::new();
    let ids = seed_users(&mut conn, 50);
    // row 10's key column now names a version nobody knows
    let bad = format!("v9:{}", "AAAA");
    diesel::update(users::table.find(ids[10]))
        .set(users::encrypted_kms_key.eq(&bad))
        .execute(&mut conn)
        .unwrap();
    let s = rotation::rotate_table(&mut conn, &Kms::new(), &v2_table(), TableOptions::default())
        .unwrap();
    assert_eq!(s.done, 49, "{s:?}");
    assert_eq!(s.errors.len(), 1);
    assert_eq!(s.errors[0].id, ids[10].to_string());
    assert_eq!(s.errors[0].error.to_string(), "Version not active: 9");
}

#[test]
fn backfill_1000_rows_resumably() {
    let (_db, mut conn) = PgDb::new();
    for chunk in 0..10 {
        let rows: Vec<_> = (0..100)
            .map(|i| users::name.eq(Some(format!("person{}@example.org", chunk * 100 + i))))
            .collect();
        diesel::insert_into(users::table)
            .values(rows)
            .execute(&mut conn)
            .unwrap();
    }
    let mut t = TableSpec::of_model(User::KMS_KEY).unwrap();
    t.attributes.retain(|a| a.column == "email_enc");
    let kms = Kms::new();
    let first = rotation::backfill_table(
        &mut conn,
        &kms,
        &t,
        &["name"],
        TableOptions {
            batch_size: 300,
            max_batches: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(first.done, 300);
    let rest = rotation::backfill_table(
        &mut conn,
        &kms,
        &t,
        &["name"],
        TableOptions {
            batch_size: 300,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(rest.done, 700);
    assert_eq!(kms.stats().encrypts(), 1000);
    let rows: Vec<User> = users::table
        .order(users::id)
        .select(User::as_select())
        .load(&mut conn)
        .unwrap();
    let reader = Kms::new();
    for r in rows {
        assert_eq!(r.email_blocking(&reader).unwrap(), r.name);
    }
    let again =
        rotation::backfill_table(&mut conn, &kms, &t, &["name"], TableOptions::default()).unwrap();
    assert_eq!(again.done, 0, "nothing left");
}

#[test]
fn custom_context_models_are_refused_for_table_operations() {
    let e = TableSpec::of_model(kms_fields_tests::models::Account::KMS_KEY).unwrap_err();
    assert!(e.to_string().contains("custom encryption context"), "{e}");
    let spec = KeySpec::new().key_id("insecure-test-key");
    let t = TableSpec::new("users", "User", "encrypted_kms_key", spec);
    assert_eq!(t.id_column, "id");
}

#[test]
fn mysql_rotation_both_modes() {
    let (_db, mut conn) = kms_fields_tests::db::MysqlDb::new();
    seed_users(&mut conn, 1500);
    let kms = Kms::new();
    let half = rotation::rotate_table(
        &mut conn,
        &kms,
        &v2_table(),
        TableOptions {
            mode: RotationMode::NewDataKey,
            batch_size: 250,
            max_batches: Some(3),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(half.done, 750);
    let rest = rotation::rotate_table(
        &mut conn,
        &kms,
        &v2_table(),
        TableOptions {
            batch_size: 250,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(rest.done, 750);
    assert_eq!(
        rotation::key_versions(&mut conn, "users", "encrypted_kms_key").unwrap(),
        vec![("v2:".to_owned(), 1500)]
    );
    assert_eq!(all_readable!(&mut conn), 1500);
}
