//! kms_encrypted's behavioural suite through SeaORM 2 on Postgres, SQLite and MariaDB (the
//! same ports as the Diesel suite, async), plus the bulk seal step for `insert_many` and the
//! hook-driven saves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kms_fields::{EncryptionContext, ErrorKind, Kms, SaveFlow, bulk};
use kms_fields_seaorm::{
    insert, insert_many, planned_flow, prepare_insert_many, rotate_kms_key, update_encrypted,
};
use kms_fields_tests::db::{MysqlDb, PgDb, SqliteDb, TestDb, pg_url};
use kms_fields_tests::embedded_context;
use kms_fields_tests::sea::{account, connect, hooked, mysql, pg, sqlite, user, user_v2};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel,
    PaginatorTrait, TransactionTrait,
};

/// `n` new users with email and phone set (2 pending keys each).
async fn new_users(kms: &Kms, n: usize) -> Vec<user::Model> {
    let mut batch = Vec::with_capacity(n);
    for i in 0..n {
        let mut u = user::Model::default();
        u.set_email(kms, Some(&format!("p{i}@example.org")))
            .await
            .unwrap();
        u.set_phone(kms, Some(&format!("555-01{i:02}")))
            .await
            .unwrap();
        batch.push(u);
    }
    batch
}

async fn create(db: &DatabaseConnection, kms: &Kms) -> user::Model {
    let mut u = user::Model {
        name: Some("Test".into()),
        ..Default::default()
    };
    u.set_email(kms, Some("test@example.org")).await.unwrap();
    u.set_phone(kms, Some("555-555-5555")).await.unwrap();
    insert(db, kms, &mut u).await.unwrap();
    u
}

macro_rules! seaorm_suite {
    ($backend:ident, $connect:ident, $flow:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test(flavor = "multi_thread")]
            async fn create_and_read_with_counts() {
                let (_g, db) = $connect().await;
                let kms = Kms::new();
                let mut u = user::Model::default();
                u.set_email(&kms, Some("test@example.org")).await.unwrap();
                assert_eq!(kms.stats().encrypts(), 0, "assigning makes no KMS call");
                assert_eq!(planned_flow(&db, &u).unwrap(), $flow);
                assert_eq!(insert(&db, &kms, &mut u).await.unwrap(), $flow);
                assert_eq!((kms.stats().encrypts(), kms.stats().decrypts()), (1, 0));
                assert!(u.id > 0);
                let reader = Kms::new();
                let loaded = user::Entity::find_by_id(u.id)
                    .one(&db)
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    loaded.email(&reader).await.unwrap().as_deref(),
                    Some("test@example.org")
                );
                assert_eq!(loaded.phone(&reader).await.unwrap(), None);
                assert_eq!(reader.stats().decrypts(), 1);
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn update_does_not_decrypt_and_fresh_load_needs_fresh_decrypt() {
                let (_g, db) = $connect().await;
                let id = create(&db, &Kms::new()).await.id;
                let kms = Kms::new();
                let mut u = user::Entity::find_by_id(id)
                    .one(&db)
                    .await
                    .unwrap()
                    .unwrap();
                u.encrypted_kms_key.clear();
                u.email_enc = None;
                u.set_email(&kms, Some("new@example.org")).await.unwrap();
                update_encrypted(&db, &kms, &mut u).await.unwrap();
                assert_eq!((kms.stats().encrypts(), kms.stats().decrypts()), (1, 0));
                let reader = Kms::new();
                for _ in 0..2 {
                    let fresh = user::Entity::find_by_id(id)
                        .one(&db)
                        .await
                        .unwrap()
                        .unwrap();
                    fresh.phone(&reader).await.unwrap();
                }
                assert_eq!(reader.stats().decrypts(), 2);
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn rotate_both_keys_and_versions() {
                let (_g, db) = $connect().await;
                let id = create(&db, &Kms::new()).await.id;
                let kms = Kms::new();
                let mut u = user::Entity::find_by_id(id)
                    .one(&db)
                    .await
                    .unwrap()
                    .unwrap();
                let before = u.clone();
                rotate_kms_key(&db, &kms, &mut u, user::Model::KMS_KEY)
                    .await
                    .unwrap();
                assert_eq!(
                    (kms.stats().encrypts(), kms.stats().decrypts()),
                    (1, 1),
                    "a rotation: one Decrypt of the old key, one Encrypt of the new"
                );
                rotate_kms_key(&db, &kms, &mut u, user::Model::KMS_KEY_PHONE)
                    .await
                    .unwrap();
                assert_eq!((kms.stats().encrypts(), kms.stats().decrypts()), (2, 2));
                assert_ne!(u.email_enc, before.email_enc);
                assert_ne!(u.phone_enc, before.phone_enc);
                assert_ne!(
                    u.encrypted_kms_key.stored(),
                    before.encrypted_kms_key.stored()
                );
                assert_ne!(
                    u.encrypted_kms_key_phone.stored(),
                    before.encrypted_kms_key_phone.stored()
                );
                let again = user::Entity::find_by_id(id)
                    .one(&db)
                    .await
                    .unwrap()
                    .unwrap();
                // what was written is what the rotations made
                assert_eq!(
                    again.encrypted_kms_key.stored(),
                    u.encrypted_kms_key.stored()
                );
                assert_eq!(
                    again.encrypted_kms_key_phone.stored(),
                    u.encrypted_kms_key_phone.stored()
                );
                assert_eq!(again.email_enc, u.email_enc);
                assert_eq!(again.phone_enc, u.phone_enc);
                let reader = Kms::new();
                assert_eq!(
                    again.email(&reader).await.unwrap().as_deref(),
                    Some("test@example.org")
                );
                assert_eq!(
                    again.phone(&reader).await.unwrap().as_deref(),
                    Some("555-555-5555")
                );
                // v1 through previous_versions, rotate to v2, v3 refused with the gem's message
                let mut v2 = user_v2::Entity::find_by_id(id)
                    .one(&db)
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    v2.phone(&kms).await.unwrap().as_deref(),
                    Some("555-555-5555")
                );
                rotate_kms_key(&db, &kms, &mut v2, user_v2::Model::KMS_KEY_PHONE)
                    .await
                    .unwrap();
                assert!(
                    v2.encrypted_kms_key_phone
                        .stored()
                        .unwrap()
                        .starts_with("v2:")
                );
                let mut am = v2.clone().into_active_model();
                am.encrypted_kms_key_phone =
                    sea_orm::Set(kms_fields_seaorm::KmsKey::from_stored(Some(format!(
                        "v3:{}",
                        &v2.encrypted_kms_key_phone.stored().unwrap()[3..]
                    ))));
                am.update(&db).await.unwrap();
                let v3 = user_v2::Entity::find_by_id(id)
                    .one(&db)
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    v3.phone(&Kms::new()).await.unwrap_err().to_string(),
                    "Version not active: 3"
                );
                // a stale copy loses against the rotation that happened meanwhile
                let mut stale = before;
                assert_eq!(
                    rotate_kms_key(&db, &kms, &mut stale, user::Model::KMS_KEY)
                        .await
                        .unwrap_err()
                        .kind(),
                    ErrorKind::Conflict
                );
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn bad_context_and_row_swap() {
                let (_g, db) = $connect().await;
                let kms = Kms::new();
                let mut a = account::Model {
                    name: Some("Alice".into()),
                    ..Default::default()
                };
                a.set_email(&kms, Some("alice@example.org")).await.unwrap();
                assert_eq!(insert(&db, &kms, &mut a).await.unwrap(), SaveFlow::Eager);
                let row = account::Entity::find_by_id(a.id)
                    .one(&db)
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    row.email(&Kms::new()).await.unwrap().as_deref(),
                    Some("alice@example.org")
                );
                let mut fresh = account::Entity::find_by_id(a.id)
                    .one(&db)
                    .await
                    .unwrap()
                    .unwrap();
                fresh.name = Some("Mallory".into());
                assert_eq!(
                    fresh.email(&Kms::new()).await.unwrap_err().kind(),
                    ErrorKind::DecryptionFailed
                );
                let b = create(&db, &kms).await;
                let c = create(&db, &kms).await;
                let mut am = c.clone().into_active_model();
                am.email_enc = sea_orm::Set(b.email_enc.clone());
                am.encrypted_kms_key = sea_orm::Set(kms_fields_seaorm::KmsKey::from_stored(
                    b.encrypted_kms_key.stored().map(str::to_owned),
                ));
                am.update(&db).await.unwrap();
                let swapped = user::Entity::find_by_id(c.id)
                    .one(&db)
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    swapped.email(&Kms::new()).await.unwrap_err().kind(),
                    ErrorKind::DecryptionFailed
                );
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn insert_many_through_the_bulk_seal_step() {
                let (_g, db) = $connect().await;
                let kms = Kms::new();
                let mut batch: Vec<user::Model> = Vec::new();
                for i in 0..30 {
                    let mut u = user::Model::default();
                    u.set_email(&kms, Some(&format!("b{i}@example.org")))
                        .await
                        .unwrap();
                    u.set_phone(&kms, Some(&format!("{i}"))).await.unwrap();
                    batch.push(u);
                }
                assert_eq!(insert_many(&db, &kms, &mut batch, 8).await.unwrap(), $flow);
                assert_eq!(kms.stats().encrypts(), 60);
                assert_eq!(user::Entity::find().count(&db).await.unwrap(), 30);
                let rows = user::Entity::find().all(&db).await.unwrap();
                let reader = Kms::new();
                assert!(
                    bulk::unlock_many(&reader, &rows, 8)
                        .await
                        .iter()
                        .all(|r| r.is_ok())
                );
                let mut got: Vec<String> = Vec::new();
                for r in &rows {
                    got.push(r.email(&reader).await.unwrap().unwrap());
                }
                got.sort();
                let mut want: Vec<String> = (0..30).map(|i| format!("b{i}@example.org")).collect();
                want.sort();
                assert_eq!(got, want);
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn hook_driven_save_commits_and_a_rolled_back_transaction_leaves_nothing() {
                let (_g, db) = $connect().await;
                let kms = kms_fields_tests::sea::kms();
                // the hooks' Kms is a process-wide static: count from here
                let (enc0, dec0) = (kms.stats().encrypts(), kms.stats().decrypts());
                let mut m = hooked::Model::default();
                m.set_email(kms, Some("hook@example.org")).await.unwrap();
                m.set_phone(kms, Some("1")).await.unwrap();
                assert_eq!(kms.stats().encrypts(), enc0, "assigning makes no KMS call");
                let saved = if $flow == SaveFlow::AfterInsert {
                    // the database assigns the id, so the key can only be wrapped after the
                    // INSERT, and nothing secret may wait between the hooks: they refuse,
                    // naming the call that does it in one transaction
                    let before = hooked::Entity::find().count(&db).await.unwrap();
                    let e = m.clone().into_active_model().insert(&db).await.unwrap_err();
                    assert!(e.to_string().contains("kms_fields_seaorm::insert"), "{e}");
                    assert_eq!(
                        hooked::Entity::find().count(&db).await.unwrap(),
                        before,
                        "nothing written"
                    );
                    assert_eq!(kms.stats().encrypts(), enc0, "nothing wrapped");
                    insert(&db, kms, &mut m).await.unwrap();
                    m
                } else {
                    // the hooks leave the unassigned id (0) to the database
                    m.into_active_model().insert(&db).await.unwrap()
                };
                assert_eq!(
                    (kms.stats().encrypts() - enc0, kms.stats().decrypts() - dec0),
                    (2, 0),
                    "the hooks wrap each key once"
                );
                assert!(
                    saved.encrypted_kms_key.stored().unwrap().starts_with("v1:"),
                    "{saved:?}"
                );
                let want = EncryptionContext::for_model("User", saved.id).canonical_json();
                assert_eq!(
                    embedded_context(saved.encrypted_kms_key.stored().unwrap()),
                    want
                );
                assert_eq!(
                    embedded_context(saved.encrypted_kms_key_phone.stored().unwrap()),
                    want
                );
                let loaded = hooked::Entity::find_by_id(saved.id)
                    .one(&db)
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    loaded.email(&Kms::new()).await.unwrap().as_deref(),
                    Some("hook@example.org")
                );
                assert_eq!(
                    loaded.phone(&Kms::new()).await.unwrap().as_deref(),
                    Some("1")
                );

                let before = hooked::Entity::find().count(&db).await.unwrap();
                let txn = db.begin().await.unwrap();
                let mut m = hooked::Model::default();
                m.set_email(kms, Some("gone@example.org")).await.unwrap();
                let inside = if $flow == SaveFlow::AfterInsert {
                    insert(&txn, kms, &mut m).await.unwrap();
                    m
                } else {
                    let mut am = m.into_active_model();
                    am.id = sea_orm::NotSet;
                    am.insert(&txn).await.unwrap()
                };
                assert!(
                    inside.encrypted_kms_key.stored().is_some(),
                    "the key was written inside the transaction"
                );
                assert_eq!(
                    (kms.stats().encrypts() - enc0, kms.stats().decrypts() - dec0),
                    (3, 0)
                );
                txn.rollback().await.unwrap();
                assert_eq!(
                    hooked::Entity::find().count(&db).await.unwrap(),
                    before,
                    "no half-written row"
                );
            }
        }
    };
}

seaorm_suite!(postgres, pg, SaveFlow::Prefetch);
seaorm_suite!(sqlite_db, sqlite, SaveFlow::AfterInsert);
seaorm_suite!(mysql_db, mysql, SaveFlow::AfterInsert);

#[tokio::test(flavor = "multi_thread")]
async fn postgres_prefetch_is_one_insert() {
    let (_g, db) = pg().await;
    db.execute_unprepared(
        "CREATE TABLE update_log (n int);
         CREATE FUNCTION log_update() RETURNS trigger AS $$ BEGIN INSERT INTO update_log VALUES (1); RETURN NEW; END $$ LANGUAGE plpgsql;
         CREATE TRIGGER users_updates AFTER UPDATE ON users FOR EACH ROW EXECUTE FUNCTION log_update();",
    )
    .await
    .unwrap();
    let kms = Kms::new();
    let u = create(&db, &kms).await;
    assert!(u.id > 0);
    assert_eq!((kms.stats().encrypts(), kms.stats().decrypts()), (2, 0));
    // the id was in the context the KMS saw (the test key embeds it)
    let want = EncryptionContext::for_model("User", u.id).canonical_json();
    assert_eq!(
        embedded_context(u.encrypted_kms_key.stored().unwrap()),
        want
    );
    assert_eq!(
        embedded_context(u.encrypted_kms_key_phone.stored().unwrap()),
        want
    );
    let n = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) AS n FROM update_log",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        n.try_get::<i64>("", "n").unwrap(),
        0,
        "one INSERT, no UPDATE"
    );
    // hooks on Postgres also prefetch: still no UPDATE
    let hook_kms = kms_fields_tests::sea::kms();
    let (enc0, dec0) = (hook_kms.stats().encrypts(), hook_kms.stats().decrypts());
    let mut m = hooked::Model::default();
    m.set_email(hook_kms, Some("h@example.org")).await.unwrap();
    let mut am = m.into_active_model();
    am.id = sea_orm::NotSet;
    let saved = am.insert(&db).await.unwrap();
    assert_eq!(
        (
            hook_kms.stats().encrypts() - enc0,
            hook_kms.stats().decrypts() - dec0
        ),
        (1, 0),
        "before_save wraps the one key once"
    );
    assert_eq!(
        embedded_context(saved.encrypted_kms_key.stored().unwrap()),
        EncryptionContext::for_model("User", saved.id).canonical_json()
    );
    let n = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) AS n FROM update_log",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.try_get::<i64>("", "n").unwrap(), 0);
}

/// The documented bulk seal step: `prepare_insert_many` takes the ids from the sequence (one
/// query) and wraps every key, then the user's own `Entity::insert_many` writes the rows
/// without another KMS call.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_prepare_insert_many_before_the_users_own_insert_many() {
    let (_g, db) = pg().await;
    let kms = Kms::new();
    let mut batch = new_users(&kms, 5).await;
    assert_eq!(kms.stats().encrypts(), 0);
    prepare_insert_many(&db, &kms, &mut batch, 4).await.unwrap();
    assert_eq!(
        (kms.stats().encrypts(), kms.stats().decrypts()),
        (10, 0),
        "one Encrypt per record key"
    );
    assert_eq!(
        user::Entity::find().count(&db).await.unwrap(),
        0,
        "nothing is written yet"
    );
    let mut ids: Vec<i32> = batch.iter().map(|u| u.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert!(
        ids.len() == 5 && ids[0] > 0,
        "distinct ids from the sequence: {ids:?}"
    );
    for u in &batch {
        let want = EncryptionContext::for_model("User", u.id).canonical_json();
        assert_eq!(
            embedded_context(u.encrypted_kms_key.stored().unwrap()),
            want
        );
        assert_eq!(
            embedded_context(u.encrypted_kms_key_phone.stored().unwrap()),
            want
        );
    }
    user::Entity::insert_many(
        batch
            .iter()
            .cloned()
            .map(IntoActiveModel::into_active_model),
    )
    .exec(&db)
    .await
    .unwrap();
    assert_eq!(kms.stats().encrypts(), 10, "the insert itself calls no KMS");
    let reader = Kms::new();
    for (i, u) in batch.iter().enumerate() {
        let row = user::Entity::find_by_id(u.id)
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            row.email(&reader).await.unwrap(),
            Some(format!("p{i}@example.org"))
        );
        assert_eq!(
            row.phone(&reader).await.unwrap(),
            Some(format!("555-01{i:02}"))
        );
    }
    assert_eq!(reader.stats().decrypts(), 10);
}

/// Without hooks or a sequence the ids are unknown before the INSERT on SQLite, so the bulk
/// seal step refuses (MissingId) and wraps nothing; with ids assigned it works.
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_prepare_insert_many_needs_ids() {
    let (_g, db) = sqlite().await;
    let kms = Kms::new();
    let mut batch = new_users(&kms, 3).await;
    let e = prepare_insert_many(&db, &kms, &mut batch, 4)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MissingId, "{e}");
    assert!(e.to_string().contains("insert_many"), "{e}");
    assert_eq!(kms.stats().encrypts(), 0, "nothing was wrapped");
    assert!(batch.iter().all(|u| u.id == 0
        && u.encrypted_kms_key.is_pending()
        && u.encrypted_kms_key_phone.is_pending()));
    // ids assigned by the application: the step wraps with them
    for (i, u) in batch.iter_mut().enumerate() {
        u.id = 100 + i as i32;
    }
    prepare_insert_many(&db, &kms, &mut batch, 4).await.unwrap();
    assert_eq!(kms.stats().encrypts(), 6);
    user::Entity::insert_many(
        batch
            .iter()
            .cloned()
            .map(IntoActiveModel::into_active_model),
    )
    .exec(&db)
    .await
    .unwrap();
    let row = user::Entity::find_by_id(101)
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        embedded_context(row.encrypted_kms_key.stored().unwrap()),
        EncryptionContext::for_model("User", 101).canonical_json()
    );
    assert_eq!(
        row.email(&Kms::new()).await.unwrap().as_deref(),
        Some("p1@example.org")
    );
}

/// The sea-orm-migration migrator builds a schema the suite's models work on, on each backend;
/// `down` removes it.
macro_rules! seaorm_migrator {
    ($name:ident, $db:ty, $url:expr) => {
        #[tokio::test(flavor = "multi_thread")]
        async fn $name() {
            use sea_orm_migration::MigratorTrait;
            let (g, _conn) = <$db>::empty();
            let db = connect(&$url(&g), pg_schema(&g)).await;
            kms_fields_migrations::sea::Migrator::up(&db, None)
                .await
                .unwrap();
            let kms = Kms::new();
            let mut u = create(&db, &kms).await;
            assert!(u.id > 0);
            rotate_kms_key(&db, &kms, &mut u, user::Model::KMS_KEY)
                .await
                .unwrap();
            let loaded = user::Entity::find_by_id(u.id)
                .one(&db)
                .await
                .unwrap()
                .unwrap();
            let reader = Kms::new();
            assert_eq!(
                loaded.email(&reader).await.unwrap().as_deref(),
                Some("test@example.org")
            );
            assert_eq!(
                loaded.phone(&reader).await.unwrap().as_deref(),
                Some("555-555-5555")
            );
            // the people table with its blind-index columns
            use kms_fields_tests::sea::person;
            let bidx_kms = Kms::builder()
                .insecure_test_key()
                .blind_index_key(kms_fields::blind_index::MasterKey::generate().unwrap())
                .blind_index_key_named(
                    "v2",
                    kms_fields::blind_index::MasterKey::generate().unwrap(),
                )
                .build();
            let mut p = person::Model::default();
            p.set_email(&bidx_kms, Some("ada@example.org"))
                .await
                .unwrap();
            insert(&db, &bidx_kms, &mut p).await.unwrap();
            use sea_orm::{ColumnTrait, QueryFilter};
            let wanted = person::Model::email_bidx_async(&bidx_kms, "ADA@example.org")
                .await
                .unwrap();
            let found = person::Entity::find()
                .filter(person::Column::EmailBidx.eq(wanted))
                .one(&db)
                .await
                .unwrap();
            assert_eq!(found.map(|f| f.id), Some(p.id));
            kms_fields_migrations::sea::Migrator::down(&db, None)
                .await
                .unwrap();
            assert!(
                user::Entity::find().all(&db).await.is_err(),
                "the table is gone"
            );
        }
    };
}

trait SchemaOf {
    fn schema(&self) -> Option<&str> {
        None
    }
}
impl SchemaOf for PgDb {
    fn schema(&self) -> Option<&str> {
        Some(&self.schema)
    }
}
impl SchemaOf for SqliteDb {}
impl SchemaOf for MysqlDb {}
fn pg_schema(g: &impl SchemaOf) -> Option<&str> {
    g.schema()
}

seaorm_migrator!(seaorm_migrator_on_postgres, PgDb, |_: &PgDb| pg_url());
seaorm_migrator!(seaorm_migrator_on_sqlite, SqliteDb, |g: &SqliteDb| format!(
    "sqlite://{}?mode=rwc",
    g.path()
));
seaorm_migrator!(seaorm_migrator_on_mysql, MysqlDb, |g: &MysqlDb| g.url());

/// The column helpers: a model's key and ciphertext columns from its metadata, a unique blind
/// index, and back.
#[tokio::test(flavor = "multi_thread")]
async fn seaorm_column_helpers() {
    let dir = tempfile::tempdir().unwrap();
    let db = connect(
        &format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("m.sqlite3").display()
        ),
        None,
    )
    .await;
    db.execute_unprepared("CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT)")
        .await
        .unwrap();
    kms_fields_seaorm::migration::add_model_columns::<user::Model, _>(&db)
        .await
        .unwrap();
    let kms = Kms::new();
    let u = create(&db, &kms).await;
    let loaded = user::Entity::find_by_id(u.id)
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        loaded.email(&kms).await.unwrap().as_deref(),
        Some("test@example.org")
    );
    kms_fields_seaorm::migration::drop_model_columns::<user::Model, _>(&db)
        .await
        .unwrap();
    assert!(
        user::Entity::find().all(&db).await.is_err(),
        "the columns are gone"
    );
    db.execute_unprepared("INSERT INTO users (name) VALUES ('still here')")
        .await
        .unwrap();
    // a table without kms columns gets them one by one, with a unique blind index
    db.execute_unprepared("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT)")
        .await
        .unwrap();
    kms_fields_seaorm::migration::add_columns(
        &db,
        "people",
        &[
            kms_fields_seaorm::migration::Column::key("encrypted_kms_key"),
            kms_fields_seaorm::migration::Column::ciphertext("email_enc"),
            kms_fields_seaorm::migration::Column::blind_index("email_bidx", true),
        ],
    )
    .await
    .unwrap();
    db.execute_unprepared("INSERT INTO people (name, email_bidx) VALUES ('a', 'x')")
        .await
        .unwrap();
    assert!(
        db.execute_unprepared("INSERT INTO people (name, email_bidx) VALUES ('b', 'x')")
            .await
            .is_err(),
        "unique blind index"
    );
}

/// The helpers on a model that also has the hooks wrap each key once, on each backend.
macro_rules! helpers_and_hooks_together {
    ($name:ident, $connect:ident) => {
        #[tokio::test(flavor = "multi_thread")]
        async fn $name() {
            let (_g, db) = $connect().await;
            let kms = kms_fields_tests::sea::kms();
            let before = kms.stats().encrypts();
            let mut batch = Vec::new();
            for i in 0..3 {
                let mut u = hooked::Model::default();
                u.set_email(kms, Some(&format!("h{i}@example.org")))
                    .await
                    .unwrap();
                batch.push(u);
            }
            insert_many(&db, kms, &mut batch, 4).await.unwrap();
            assert_eq!(
                kms.stats().encrypts() - before,
                3,
                "one Encrypt per record key"
            );
            let mut one = hooked::Model::default();
            one.set_email(kms, Some("one@example.org")).await.unwrap();
            insert(&db, kms, &mut one).await.unwrap();
            assert_eq!(kms.stats().encrypts() - before, 4);
            assert_eq!(kms.stats().decrypts(), 0);
            let loaded = hooked::Entity::find_by_id(one.id)
                .one(&db)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                loaded.email(&Kms::new()).await.unwrap().as_deref(),
                Some("one@example.org")
            );
            assert_eq!(
                embedded_context(loaded.encrypted_kms_key.stored().unwrap()),
                EncryptionContext::for_model("User", one.id).canonical_json()
            );
        }
    };
}

helpers_and_hooks_together!(helpers_and_hooks_together_wrap_each_key_once, sqlite);
helpers_and_hooks_together!(
    helpers_and_hooks_together_wrap_each_key_once_on_postgres,
    pg
);
helpers_and_hooks_together!(
    helpers_and_hooks_together_wrap_each_key_once_on_mysql,
    mysql
);
