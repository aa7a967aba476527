//! The save engine's integrity guarantees, each on the real databases: the ORM's own insert
//! refuses a pending key, `update_encrypted` keeps blind indexes current and never undoes a
//! re-wrap, a table rotation revisits rows it had to skip, ids never come from `lastval()`, and
//! a KMS that hangs never holds a write transaction open past the deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use diesel::prelude::*;
use kms_fields::blind_index::MasterKey;
use kms_fields::{ErrorKind, Kms, SaveFlow};
use kms_fields_diesel::rotation::{self, RotationMode, TableOptions, TableSpec};
use kms_fields_diesel::{insert, rewrap_kms_key, update_encrypted};
use kms_fields_tests::db::{MysqlDb, PgDb, SqliteDb, TestDb};
use kms_fields_tests::models::{LateUser, Person, User, UserV2};
use kms_fields_tests::schema::{people, users};
use kms_fields_tests::{embedded_context, seed_users};

fn new_user(kms: &Kms) -> User {
    let mut u = User {
        name: Some("Test".into()),
        ..Default::default()
    };
    u.set_email_blocking(kms, Some("test@example.org")).unwrap();
    u.set_phone_blocking(kms, Some("555-0100")).unwrap();
    u
}

fn bidx_kms() -> Kms {
    Kms::builder()
        .insecure_test_key()
        .blind_index_key(MasterKey::from_hex(&"0".repeat(64)).unwrap())
        .blind_index_key_named("v2", MasterKey::from_hex(&"1".repeat(64)).unwrap())
        .build()
}

macro_rules! per_backend {
    ($backend:ident, $db:ty) => {
        mod $backend {
            use super::*;

            /// Defect: `diesel::insert_into(t).values(&model)` after a setter wrote the
            /// ciphertexts with a NULL key column — a row nobody can decrypt.
            #[test]
            fn diesels_own_insert_refuses_a_pending_key() {
                let (_g, mut conn) = <$db>::new();
                let kms = Kms::new();
                let u = new_user(&kms);
                let e = diesel::insert_into(users::table)
                    .values(&u)
                    .execute(&mut conn)
                    .unwrap_err();
                let msg = e.to_string();
                assert!(msg.contains("kms_fields_diesel::insert"), "{msg}");
                assert!(!msg.contains("test@example.org"));
                let n: i64 = users::table.count().get_result(&mut conn).unwrap();
                assert_eq!(n, 0, "nothing written");
                // a saved record (nothing pending) goes through Diesel's own statements
                let mut saved = new_user(&kms);
                insert(&mut conn, &kms, users::table, &mut saved).unwrap();
                let mut copy = saved.clone();
                copy.id = Some(saved.id.unwrap() + 1000);
                diesel::insert_into(users::table)
                    .values(&copy)
                    .execute(&mut conn)
                    .unwrap();
            }

            /// Defect: `update_encrypted` wrote the new ciphertext but not the blind index: the
            /// new email found nothing, the old one still found the record, and the unique
            /// index blocked the old address.
            #[test]
            fn update_encrypted_keeps_the_blind_indexes_current() {
                let (_g, mut conn) = <$db>::new();
                let kms = bidx_kms();
                let mut p = Person::default();
                p.set_email_blocking(&kms, Some("old@example.org")).unwrap();
                insert(&mut conn, &kms, people::table, &mut p).unwrap();
                let mut loaded: Person = people::table
                    .find(p.id.unwrap())
                    .select(Person::as_select())
                    .first(&mut conn)
                    .unwrap();
                loaded
                    .set_email_blocking(&kms, Some("new@example.org"))
                    .unwrap();
                update_encrypted(&mut conn, &kms, &mut loaded).unwrap();

                let find = |conn: &mut _, email: &str| -> Vec<i32> {
                    let b = Person::email_bidx(&kms, email).unwrap();
                    people::table
                        .filter(people::email_bidx.eq(b))
                        .select(people::id)
                        .load(conn)
                        .unwrap()
                };
                assert_eq!(find(&mut conn, "NEW@example.org"), vec![p.id.unwrap()]);
                assert!(find(&mut conn, "old@example.org").is_empty(), "stale index");
                let exact = Person::email_exact_bidx(&kms, "new@example.org").unwrap();
                let n: i64 = people::table
                    .filter(people::email_exact_bidx.eq(exact))
                    .count()
                    .get_result(&mut conn)
                    .unwrap();
                assert_eq!(n, 1, "the second index too");
                // the unique index no longer holds the old address
                let mut other = Person::default();
                other
                    .set_email_blocking(&kms, Some("old@example.org"))
                    .unwrap();
                insert(&mut conn, &kms, people::table, &mut other).unwrap();
            }

            /// Defect: a writer that loaded the row before a re-wrap wrote its old key column
            /// back — the row was readable but on v1 again. Now the guard makes it a
            /// `Conflict`, and the retry leaves the re-wrap standing.
            #[test]
            fn a_writer_never_undoes_a_rewrap() {
                let (_g, mut conn) = <$db>::new();
                let kms = Kms::new();
                let mut u = new_user(&kms);
                insert(&mut conn, &kms, users::table, &mut u).unwrap();
                let id = u.id.unwrap();
                let load = |conn: &mut _| -> UserV2 {
                    users::table
                        .find(id)
                        .select(UserV2::as_select())
                        .first(conn)
                        .unwrap()
                };
                let mut writer = load(&mut conn);
                kms_fields::blocking::run(writer.kms_unlock(&kms)).unwrap();
                // the rotation re-wraps the row to v2 meanwhile
                let mut rotator = load(&mut conn);
                assert!(rewrap_kms_key(&mut conn, &kms, &mut rotator, UserV2::KMS_KEY).unwrap());
                writer
                    .set_email_blocking(&kms, Some("w@example.org"))
                    .unwrap();
                let e = update_encrypted(&mut conn, &kms, &mut writer).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
                assert_eq!(load(&mut conn).encrypted_kms_key.version(), Some(2));
                // reload and write again: the value lands, the key stays on v2
                let mut writer = load(&mut conn);
                writer
                    .set_email_blocking(&kms, Some("w@example.org"))
                    .unwrap();
                update_encrypted(&mut conn, &kms, &mut writer).unwrap();
                let row = load(&mut conn);
                assert_eq!(
                    row.encrypted_kms_key.version(),
                    Some(2),
                    "the re-wrap stands"
                );
                assert_eq!(
                    row.email_blocking(&Kms::new()).unwrap().as_deref(),
                    Some("w@example.org")
                );
            }
        }
    };
}

per_backend!(postgres, PgDb);
per_backend!(sqlite, SqliteDb);
per_backend!(mysql, MysqlDb);

/// Defect: rows `FOR UPDATE SKIP LOCKED` skipped stayed on v1 while the summary said done.
/// A row is locked by another transaction during the first batch and released right after
/// it: the rotation comes back for it, and reports nothing remaining.
#[test]
fn postgres_rotation_comes_back_for_rows_it_had_to_skip() {
    let (db, mut conn) = PgDb::new();
    let ids = seed_users(&mut conn, 30);
    let locked = ids[4];
    let mut locker = db.connect();
    diesel::sql_query("BEGIN").execute(&mut locker).unwrap();
    diesel::sql_query(format!(
        "SELECT id FROM users WHERE id = {locked} FOR UPDATE"
    ))
    .execute(&mut locker)
    .unwrap();
    let mut locker = Some(locker);
    let mut release = |_: &rotation::Progress| {
        if let Some(mut c) = locker.take() {
            diesel::sql_query("COMMIT").execute(&mut c).unwrap();
        }
    };
    let kms = Kms::new();
    let spec = TableSpec::of_model(UserV2::KMS_KEY).unwrap();
    let summary = rotation::rotate_table(
        &mut conn,
        &kms,
        &spec,
        TableOptions {
            mode: RotationMode::Rewrap,
            batch_size: 10,
            progress: Some(&mut release),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert_eq!(summary.remaining, 0);
    assert_eq!(summary.done, 30);
    assert_eq!(
        rotation::key_versions(&mut conn, "users", "encrypted_kms_key").unwrap(),
        vec![("v2:".to_owned(), 30)]
    );
}

/// A row that stays locked for the whole run is reported, not counted as done.
#[test]
fn postgres_rotation_reports_rows_it_could_not_reach() {
    let (db, mut conn) = PgDb::new();
    let ids = seed_users(&mut conn, 12);
    let mut locker = db.connect();
    diesel::sql_query("BEGIN").execute(&mut locker).unwrap();
    diesel::sql_query(format!(
        "SELECT id FROM users WHERE id = {} FOR UPDATE",
        ids[0]
    ))
    .execute(&mut locker)
    .unwrap();
    let kms = Kms::new();
    let spec = TableSpec::of_model(UserV2::KMS_KEY).unwrap();
    let summary = rotation::rotate_table(&mut conn, &kms, &spec, TableOptions::default()).unwrap();
    assert_eq!((summary.done, summary.remaining), (11, 1));
    diesel::sql_query("COMMIT").execute(&mut locker).unwrap();
}

/// Defect: the forced after-insert flow read the id with `lastval()`, which is another
/// sequence's value when a trigger inserts elsewhere: the key was wrapped for the wrong record.
#[test]
fn postgres_ids_are_right_with_a_trigger_that_inserts_elsewhere() {
    let (_g, mut conn) = PgDb::new();
    for stmt in [
        "CREATE TABLE audit_log (id serial PRIMARY KEY, note text)",
        "SELECT setval('audit_log_id_seq', 5000)",
        "CREATE FUNCTION log_user() RETURNS trigger AS $$ BEGIN INSERT INTO audit_log (note) VALUES ('user'); RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER users_log AFTER INSERT ON users FOR EACH ROW EXECUTE FUNCTION log_user()",
    ] {
        diesel::sql_query(stmt).execute(&mut conn).unwrap();
    }
    let kms = Kms::new();
    for _ in 0..2 {
        let mut late = LateUser::default();
        late.set_email_blocking(&kms, Some("late@example.org"))
            .unwrap();
        assert_eq!(
            insert(&mut conn, &kms, users::table, &mut late).unwrap(),
            SaveFlow::AfterInsert
        );
        let mut u = new_user(&kms);
        assert_eq!(
            insert(&mut conn, &kms, users::table, &mut u).unwrap(),
            SaveFlow::Prefetch
        );
        for (id, stored) in [
            (
                late.id.unwrap(),
                late.encrypted_kms_key.stored().unwrap().to_owned(),
            ),
            (
                u.id.unwrap(),
                u.encrypted_kms_key.stored().unwrap().to_owned(),
            ),
        ] {
            assert!(id < 5000, "a user id, not the audit log's: {id}");
            let row: User = users::table
                .find(id)
                .select(User::as_select())
                .first(&mut conn)
                .unwrap();
            assert_eq!(row.encrypted_kms_key.stored(), Some(stored.as_str()));
            assert_eq!(
                embedded_context(&stored),
                kms_fields::EncryptionContext::for_model("User", id).canonical_json()
            );
            assert!(row.email_blocking(&Kms::new()).unwrap().is_some());
        }
    }
}

/// SQLite: `last_insert_rowid()` is the row's own even when a trigger inserts elsewhere.
#[test]
fn sqlite_ids_are_right_with_a_trigger_that_inserts_elsewhere() {
    let (_g, mut conn) = SqliteDb::new();
    for stmt in [
        "CREATE TABLE audit_log (id INTEGER PRIMARY KEY, note TEXT)",
        "INSERT INTO audit_log (id, note) VALUES (5000, 'seed')",
        "CREATE TRIGGER users_log AFTER INSERT ON users BEGIN INSERT INTO audit_log (note) VALUES ('user'); END",
    ] {
        diesel::sql_query(stmt).execute(&mut conn).unwrap();
    }
    let kms = Kms::new();
    let mut u = new_user(&kms);
    assert_eq!(
        insert(&mut conn, &kms, users::table, &mut u).unwrap(),
        SaveFlow::AfterInsert
    );
    let id = u.id.unwrap();
    assert!(id < 5000, "{id}");
    let row: User = users::table
        .find(id)
        .select(User::as_select())
        .first(&mut conn)
        .unwrap();
    assert_eq!(
        row.email_blocking(&Kms::new()).unwrap().as_deref(),
        Some("test@example.org")
    );
}

/// A test-key provider whose first `hangs` wraps never answer.
#[derive(Debug)]
struct Hanging {
    hangs: usize,
    calls: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl kms_fields::Provider for Hanging {
    fn kind(&self) -> kms_fields::ProviderKind {
        kms_fields::provider::TestKey.kind()
    }
    async fn wrap(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: Option<&kms_fields::EncryptionContext>,
    ) -> kms_fields::Result<Vec<u8>> {
        if self.calls.fetch_add(1, SeqCst) < self.hangs {
            std::future::pending::<()>().await;
        }
        kms_fields::Provider::wrap(&kms_fields::provider::TestKey, key_id, plaintext, context).await
    }
    async fn unwrap(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: Option<&kms_fields::EncryptionContext>,
    ) -> kms_fields::Result<zeroize::Zeroizing<Vec<u8>>> {
        kms_fields::Provider::unwrap(&kms_fields::provider::TestKey, key_id, ciphertext, context)
            .await
    }
}

/// Run `f` on a thread; fail (instead of hanging the suite) if it never returns.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .expect("the save never returned: the KMS call held the transaction")
}

/// Defect: with a hanging KMS the after-insert transaction stayed open for the provider's
/// whole retry budget, and every other writer of the SQLite database waited. Now a KMS call in
/// a transaction has a deadline; the transaction is rolled back and tried again.
#[test]
fn sqlite_a_hanging_kms_call_rolls_the_transaction_back_and_retries() {
    let (db, mut conn) = SqliteDb::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let kms = Kms::builder()
        .insecure_test_key()
        .test_key(Hanging {
            hangs: 1,
            calls: calls.clone(),
        })
        .build()
        .with_transaction_deadline(Duration::from_millis(200));
    let mut u = LateUser::default();
    u.set_email_blocking(&kms, Some("late@example.org"))
        .unwrap();
    let (u, flow) = within(Duration::from_secs(60), move || {
        let flow = insert(&mut conn, &kms, users::table, &mut u).unwrap();
        (u, flow)
    });
    assert_eq!(flow, SaveFlow::AfterInsert);
    assert_eq!(
        calls.load(SeqCst),
        2,
        "the wrap was tried again in a new transaction"
    );
    let mut conn = db.connect();
    let rows: Vec<User> = users::table
        .select(User::as_select())
        .load(&mut conn)
        .unwrap();
    assert_eq!(rows.len(), 1, "the rolled-back attempt left no row");
    assert_eq!(rows[0].id, u.id);
    assert_eq!(
        rows[0].email_blocking(&Kms::new()).unwrap().as_deref(),
        Some("late@example.org")
    );
}

/// A KMS that never answers: the save fails with a typed, retryable error after three
/// attempts, nothing is written, and no transaction is left open — another connection writes
/// at once without waiting for a lock.
#[test]
fn sqlite_a_kms_that_never_answers_fails_the_save_and_frees_the_database() {
    let (db, mut conn) = SqliteDb::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let kms = Kms::builder()
        .insecure_test_key()
        .test_key(Hanging {
            hangs: usize::MAX,
            calls: calls.clone(),
        })
        .build()
        .with_transaction_deadline(Duration::from_millis(100));
    let mut u = LateUser::default();
    u.set_email_blocking(&kms, Some("late@example.org"))
        .unwrap();
    let (e, conn) = within(Duration::from_secs(60), move || {
        let e = insert(&mut conn, &kms, users::table, &mut u).unwrap_err();
        assert!(u.id.is_none(), "the rolled-back id is forgotten");
        assert!(
            u.encrypted_kms_key.is_pending(),
            "the key is as before: retry later"
        );
        (e, conn)
    });
    assert_eq!(e.kind(), ErrorKind::ProviderUnavailable, "{e}");
    assert!(e.is_retryable());
    assert_eq!(calls.load(SeqCst), 3);
    // the failed save's connection is still open: it holds no lock
    let mut other = db.connect();
    diesel::sql_query("PRAGMA busy_timeout = 0")
        .execute(&mut other)
        .unwrap();
    diesel::sql_query("INSERT INTO users (name) VALUES ('other')")
        .execute(&mut other)
        .unwrap();
    let n: i64 = users::table.count().get_result(&mut other).unwrap();
    assert_eq!(n, 1, "only the other writer's row");
    drop(conn);
}

/// Defect: an out-of-range key position silently picked the last key, or panicked indexing
/// `M::KEYS`. Every entry point now answers `Config`, and the record is untouched.
#[test]
fn an_unknown_key_position_is_a_typed_error() {
    let (_g, mut conn) = SqliteDb::new();
    let kms = Kms::new();
    let mut u = new_user(&kms);
    insert(&mut conn, &kms, users::table, &mut u).unwrap();
    let before = u.encrypted_kms_key_phone.stored().map(str::to_owned);
    let e =
        kms_fields_diesel::rotate_kms_key(&mut conn, &kms, &mut u, kms_fields::KeyHandle::__new(2))
            .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    let e = rewrap_kms_key(&mut conn, &kms, &mut u, kms_fields::KeyHandle::__new(2)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    let e =
        kms_fields_diesel::update_key_columns(&mut conn, &mut u, kms_fields::KeyHandle::__new(2))
            .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    let e = kms_fields::blocking::run(kms_fields::model::rotate_key(&mut u, &kms, 9)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert_eq!(
        u.encrypted_kms_key_phone.stored().map(str::to_owned),
        before
    );
    assert_eq!(
        u.phone_blocking(&Kms::new()).unwrap().as_deref(),
        Some("555-0100")
    );
}

/// `User` with Diesel's `AsChangeset`, for `diesel::update(..).set(&model)`.
#[derive(
    Debug, Clone, Default, Queryable, Selectable, Insertable, AsChangeset, kms_fields::KmsEncrypted,
)]
#[diesel(table_name = users)]
#[kms(model_name = "User", key(key_id = "insecure-test-key"))]
struct EditableUser {
    #[diesel(deserialize_as = i32)]
    id: Option<i32>,
    name: Option<String>,
    #[kms(encrypted)]
    email_enc: Option<String>,
    encrypted_kms_key: kms_fields_diesel::KmsKey,
}

/// `diesel::update(..).set(&model)` after the encrypt-only writer drew a new data key would
/// store NULL beside the new ciphertext: it refuses, naming `update_encrypted`; a loaded record
/// whose key did not change updates as usual.
#[test]
fn diesels_own_update_refuses_a_pending_key() {
    let (_g, mut conn) = SqliteDb::new();
    let kms = Kms::new();
    let mut u = EditableUser::default();
    u.set_email_blocking(&kms, Some("a@example.org")).unwrap();
    insert(&mut conn, &kms, users::table, &mut u).unwrap();
    let id = u.id.unwrap();
    let load = |conn: &mut SqliteConnection| -> EditableUser {
        users::table
            .find(id)
            .select(EditableUser::as_select())
            .first(conn)
            .unwrap()
    };
    let mut w = load(&mut conn);
    w.name = Some("renamed".into());
    diesel::update(users::table.find(id))
        .set(&w)
        .execute(&mut conn)
        .unwrap();
    w.encrypted_kms_key.clear();
    w.set_email_blocking(&kms, Some("b@example.org")).unwrap();
    let e = diesel::update(users::table.find(id))
        .set(&w)
        .execute(&mut conn)
        .unwrap_err();
    assert!(e.to_string().contains("update_encrypted"), "{e}");
    let row = load(&mut conn);
    assert_eq!(row.name.as_deref(), Some("renamed"));
    assert_eq!(
        row.email_blocking(&Kms::new()).unwrap().as_deref(),
        Some("a@example.org"),
        "the row is as before, readable"
    );
    update_encrypted(&mut conn, &kms, &mut w).unwrap();
    assert_eq!(
        load(&mut conn)
            .email_blocking(&Kms::new())
            .unwrap()
            .as_deref(),
        Some("b@example.org")
    );
}

/// Issue 13: each statement text is built once per model, database and shape, then reused —
/// a second save of the same shape builds no statement (the texts are shared, only the binds
/// are collected per save).
#[test]
fn statements_are_built_once_per_model_and_shape() {
    let (_g, mut conn) = SqliteDb::new();
    let kms = Kms::new();
    let mut a = new_user(&kms);
    insert(&mut conn, &kms, users::table, &mut a).unwrap(); // after-insert: UPDATE of both keys
    let after_first = kms_fields::sql::statements_built();
    assert!(after_first >= 1);
    let mut b = new_user(&kms);
    insert(&mut conn, &kms, users::table, &mut b).unwrap();
    assert_eq!(kms_fields::sql::statements_built(), after_first, "reused");

    let load = |conn: &mut SqliteConnection, id: i32| -> User {
        users::table
            .find(id)
            .select(User::as_select())
            .first(conn)
            .unwrap()
    };
    for (n, id) in [a.id.unwrap(), b.id.unwrap()].into_iter().enumerate() {
        let mut u = load(&mut conn, id);
        u.set_email_blocking(&kms, Some("new@example.org")).unwrap();
        update_encrypted(&mut conn, &kms, &mut u).unwrap();
        // the first update builds its text, the second (same shape) reuses it
        assert_eq!(
            kms_fields::sql::statements_built(),
            after_first + 1,
            "update #{n}"
        );
        assert_eq!(
            load(&mut conn, id).email_blocking(&kms).unwrap().as_deref(),
            Some("new@example.org")
        );
    }
    // another shape (a rotation of one key) is another text
    let mut u = load(&mut conn, a.id.unwrap());
    kms_fields_diesel::rotate_kms_key(&mut conn, &kms, &mut u, User::KMS_KEY).unwrap();
    assert_eq!(kms_fields::sql::statements_built(), after_first + 2);
}
