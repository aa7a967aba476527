//! Table rotation and backfill through SeaORM (async) on Postgres and SQLite: 10,000-row
//! re-wrap, a run aborted mid-batch (the future dropped) then finished by a rerun, two
//! rotations at once on Postgres, data-key rotation, resumable backfill.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use kms_fields::provider::TestKey;
use kms_fields::{Kms, bulk};
use kms_fields_seaorm::rotation::{self, RotationMode, TableOptions, TableSpec};
use kms_fields_tests::db::{PgDb, SqliteDb, pg_url};
use kms_fields_tests::sea::{connect, user, user_v2};
use kms_fields_tests::{LatencyProvider, seed_users};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, QueryOrder};

fn v2_table() -> TableSpec {
    TableSpec::of_model(user_v2::Model::KMS_KEY).unwrap()
}

async fn pg(rows: usize) -> (PgDb, DatabaseConnection) {
    let (db, mut conn) = PgDb::new();
    seed_users(&mut conn, rows);
    let sea = connect(&pg_url(), Some(&db.schema)).await;
    (db, sea)
}

async fn sqlite(rows: usize) -> (SqliteDb, DatabaseConnection) {
    let (db, mut conn) = SqliteDb::new();
    seed_users(&mut conn, rows);
    let sea = connect(&format!("sqlite://{}?mode=rwc", db.path()), None).await;
    (db, sea)
}

/// Every row decrypts through the v2 entity; returns how many there are.
async fn all_readable(db: &DatabaseConnection) -> usize {
    let rows = user_v2::Entity::find()
        .order_by_asc(user_v2::Column::Id)
        .all(db)
        .await
        .unwrap();
    let kms = Kms::new();
    let unlocked = bulk::unlock_many(&kms, &rows, 64).await;
    assert!(
        unlocked.iter().all(|r| r.is_ok()),
        "{:?}",
        unlocked.iter().find(|r| r.is_err())
    );
    for r in &rows {
        assert_eq!(
            r.email(&kms).await.unwrap().unwrap(),
            format!("user{}@example.org", r.id - 1)
        );
        r.address(&kms).await.unwrap();
    }
    rows.len()
}

async fn v2_rows(db: &DatabaseConnection) -> u64 {
    rotation::key_versions(db, "users", "encrypted_kms_key")
        .await
        .unwrap()
        .into_iter()
        .find(|(v, _)| v == "v2:")
        .map_or(0, |(_, n)| n)
}

macro_rules! seaorm_rotation {
    ($backend:ident, $connect:ident) => {
        mod $backend {
            use super::*;

            #[tokio::test(flavor = "multi_thread")]
            async fn rewrap_10000_rows() {
                let (_g, db) = $connect(10_000).await;
                let kms = Kms::new();
                let mut reports = 0;
                let mut report = |_: &rotation::Progress| reports += 1;
                let s = rotation::rotate_table(
                    &db,
                    &kms,
                    &v2_table(),
                    TableOptions {
                        progress: Some(&mut report),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
                assert_eq!((s.done, s.errors.len()), (10_000, 0), "{s:?}");
                assert_eq!(reports, 10);
                // the test key has no native re-wrap: a Decrypt and an Encrypt per row
                assert_eq!(
                    (kms.stats().decrypts(), kms.stats().encrypts()),
                    (10_000, 10_000)
                );
                assert_eq!(
                    rotation::key_versions(&db, "users", "encrypted_kms_key")
                        .await
                        .unwrap(),
                    vec![("v2:".to_owned(), 10_000)]
                );
                assert_eq!(all_readable(&db).await, 10_000);
                let again = rotation::rotate_table(&db, &kms, &v2_table(), TableOptions::default())
                    .await
                    .unwrap();
                assert_eq!(again.done, 0, "nothing left to do");
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn aborted_mid_batch_then_rerun_finishes() {
                let (_g, db) = $connect(3000).await;
                // 2 ms per KMS call: the run takes > 1.5 s, the timeout drops it mid-way
                let slow = Kms::builder()
                    .insecure_test_key()
                    .test_key(LatencyProvider::fixed(TestKey, Duration::from_millis(2)))
                    .build();
                let opts = || TableOptions {
                    mode: RotationMode::NewDataKey,
                    batch_size: 250,
                    concurrency: 8,
                    ..Default::default()
                };
                let aborted = tokio::time::timeout(
                    Duration::from_millis(400),
                    rotation::rotate_table(&db, &slow, &v2_table(), opts()),
                )
                .await;
                assert!(aborted.is_err(), "the run was cut off");
                let done = v2_rows(&db).await;
                assert!(done < 3000, "{done}");
                assert_eq!(
                    done % 250,
                    0,
                    "the interrupted batch left no half-written state"
                );
                assert_eq!(all_readable(&db).await, 3000, "every row still reads");
                let rest = rotation::rotate_table(&db, &Kms::new(), &v2_table(), opts())
                    .await
                    .unwrap();
                assert_eq!(rest.done, 3000 - done);
                assert_eq!(v2_rows(&db).await, 3000);
                assert_eq!(all_readable(&db).await, 3000);
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn new_data_key_mode_changes_ciphertexts() {
                let (_g, db) = $connect(40).await;
                let before = user::Entity::find()
                    .order_by_asc(user::Column::Id)
                    .all(&db)
                    .await
                    .unwrap();
                let s = rotation::rotate_table(
                    &db,
                    &Kms::new(),
                    &v2_table(),
                    TableOptions {
                        mode: RotationMode::NewDataKey,
                        batch_size: 7,
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
                assert_eq!(s.done, 40);
                let after = user::Entity::find()
                    .order_by_asc(user::Column::Id)
                    .all(&db)
                    .await
                    .unwrap();
                for (b, a) in before.iter().zip(&after) {
                    assert_ne!(b.email_enc, a.email_enc);
                    assert_eq!(
                        b.phone_enc, a.phone_enc,
                        "the other key's attribute is untouched"
                    );
                }
                assert_eq!(all_readable(&db).await, 40);
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn backfill_is_resumable() {
                let (_g, db) = $connect(0).await;
                for i in 0..500 {
                    db.execute_unprepared(&format!(
                        "INSERT INTO users (name) VALUES ('user{i}@example.org')"
                    ))
                    .await
                    .unwrap();
                }
                let mut t = TableSpec::of_model(user::Model::KMS_KEY).unwrap();
                t.attributes.retain(|a| a.column == "email_enc");
                let kms = Kms::new();
                let opts = |max| TableOptions {
                    batch_size: 200,
                    max_batches: max,
                    ..Default::default()
                };
                let first = rotation::backfill_table(&db, &kms, &t, &["name"], opts(Some(1)))
                    .await
                    .unwrap();
                assert_eq!(first.done, 200);
                let rest = rotation::backfill_table(&db, &kms, &t, &["name"], opts(None))
                    .await
                    .unwrap();
                assert_eq!(rest.done, 300);
                assert_eq!(kms.stats().encrypts(), 500);
                let reader = Kms::new();
                for r in user::Entity::find().all(&db).await.unwrap() {
                    assert_eq!(r.email(&reader).await.unwrap(), r.name);
                }
                let again = rotation::backfill_table(&db, &kms, &t, &["name"], opts(None))
                    .await
                    .unwrap();
                assert_eq!(again.done, 0);
            }
        }
    };
}

seaorm_rotation!(postgres, pg);
seaorm_rotation!(sqlite_db, sqlite);

#[tokio::test(flavor = "multi_thread")]
async fn postgres_two_rotations_at_once_share_the_work() {
    let (g, db) = pg(3000).await;
    let other = connect(&pg_url(), Some(&g.schema)).await;
    let slow = Kms::builder()
        .insecure_test_key()
        .test_key(LatencyProvider::fixed(TestKey, Duration::from_millis(1)))
        .build();
    let opts = || TableOptions {
        batch_size: 100,
        concurrency: 4,
        ..Default::default()
    };
    let t = v2_table();
    let (a, b) = tokio::join!(
        rotation::rotate_table(&db, &slow, &t, opts()),
        rotation::rotate_table(&other, &slow, &t, opts())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.errors.is_empty() && b.errors.is_empty());
    assert_eq!(a.done + b.done, 3000, "every row rotated exactly once");
    assert!(
        a.done > 0 && b.done > 0,
        "both took batches: {} / {}",
        a.done,
        b.done
    );
    assert_eq!(v2_rows(&db).await, 3000);
}
