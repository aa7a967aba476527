//! The save flows through diesel-async on a real Postgres (feature `async-postgres`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use kms_fields::{ErrorKind, Kms, SaveFlow};
use kms_fields_diesel::async_pg;
use kms_fields_tests::db::{PgDb, pg_url};
use kms_fields_tests::models::{Account, User};
use kms_fields_tests::schema::users;

async fn connect(db: &PgDb) -> AsyncPgConnection {
    let mut conn = AsyncPgConnection::establish(&pg_url()).await.unwrap();
    conn.batch_execute(&format!("SET search_path TO {}", db.schema))
        .await
        .unwrap();
    conn
}

#[tokio::test(flavor = "multi_thread")]
async fn insert_read_update_rotate_without_blocking() {
    let (db, _sync) = PgDb::new();
    let mut conn = connect(&db).await;
    let kms = Kms::new();

    let mut u = User::default();
    u.set_email(&kms, Some("async@example.org")).await.unwrap();
    u.set_phone(&kms, Some("555")).await.unwrap();
    assert_eq!(
        async_pg::insert(&mut conn, &kms, users::table, &mut u)
            .await
            .unwrap(),
        SaveFlow::Prefetch
    );
    assert_eq!(kms.stats().encrypts(), 2);
    let id = u.id.unwrap();

    let loaded: User = users::table
        .find(id)
        .select(User::as_select())
        .first(&mut conn)
        .await
        .unwrap();
    let reader = Kms::new();
    loaded.kms_unlock(&reader).await.unwrap();
    assert_eq!(
        reader.stats().decrypts(),
        2,
        "unlock unwraps both keys, concurrently"
    );
    assert_eq!(
        loaded.email(&reader).await.unwrap().as_deref(),
        Some("async@example.org")
    );
    assert_eq!(loaded.phone(&reader).await.unwrap().as_deref(), Some("555"));
    assert_eq!(reader.stats().decrypts(), 2);

    // encrypt-only update: clear, set, save → 1 Encrypt, 0 Decrypt
    let writer = Kms::new();
    let mut w = loaded.clone();
    let mut w2: User = users::table
        .find(id)
        .select(User::as_select())
        .first(&mut conn)
        .await
        .unwrap();
    w2.encrypted_kms_key.clear();
    w2.email_enc = None;
    w2.set_email(&writer, Some("new@example.org"))
        .await
        .unwrap();
    async_pg::update_encrypted(&mut conn, &writer, &mut w2)
        .await
        .unwrap();
    assert_eq!(
        (writer.stats().encrypts(), writer.stats().decrypts()),
        (1, 0)
    );

    // the stale copy's guarded rotation loses
    let e = async_pg::rotate_kms_key(&mut conn, &kms, &mut w, User::KMS_KEY)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);

    let mut fresh: User = users::table
        .find(id)
        .select(User::as_select())
        .first(&mut conn)
        .await
        .unwrap();
    async_pg::rotate_kms_key(&mut conn, &kms, &mut fresh, User::KMS_KEY_PHONE)
        .await
        .unwrap();
    let after: User = users::table
        .find(id)
        .select(User::as_select())
        .first(&mut conn)
        .await
        .unwrap();
    let r = Kms::new();
    assert_eq!(
        after.email(&r).await.unwrap().as_deref(),
        Some("new@example.org")
    );
    assert_eq!(after.phone(&r).await.unwrap().as_deref(), Some("555"));
}

#[tokio::test(flavor = "current_thread")]
async fn async_api_works_on_a_current_thread_runtime() {
    let (db, _sync) = PgDb::new();
    let mut conn = connect(&db).await;
    let kms = Kms::new();
    let mut a = Account {
        name: Some("Eve".into()),
        ..Default::default()
    };
    a.set_email(&kms, Some("eve@example.org")).await.unwrap();
    assert_eq!(
        async_pg::insert(&mut conn, &kms, users::table, &mut a)
            .await
            .unwrap(),
        SaveFlow::Eager
    );
    let loaded: Account = users::table
        .find(a.id.unwrap())
        .select(Account::as_select())
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        loaded.email(&kms).await.unwrap().as_deref(),
        Some("eve@example.org")
    );
    // the blocking facade refuses here, with a clear error instead of a deadlock
    assert_eq!(
        loaded.email_blocking(&Kms::new()).unwrap_err().kind(),
        ErrorKind::Runtime
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forced_after_insert_flow_in_a_transaction() {
    use kms_fields_tests::models::LateUser;
    let (db, _sync) = PgDb::new();
    let mut conn = connect(&db).await;
    let kms = Kms::new();
    let mut u = LateUser::default();
    u.set_email(&kms, Some("late@example.org")).await.unwrap();
    assert_eq!(
        async_pg::insert(&mut conn, &kms, users::table, &mut u)
            .await
            .unwrap(),
        SaveFlow::AfterInsert
    );
    let loaded: User = users::table
        .find(u.id.unwrap())
        .select(User::as_select())
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        loaded.email(&Kms::new()).await.unwrap().as_deref(),
        Some("late@example.org")
    );

    // a KMS failure inside the transaction rolls the INSERT back
    let mut bad = kms_fields_tests::models::LateUser::default();
    bad.set_email(&kms, Some("x")).await.unwrap();
    conn.batch_execute("CREATE FUNCTION no_upd() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'blocked'; END $$ LANGUAGE plpgsql;
                        CREATE TRIGGER no_upd BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION no_upd();").await.unwrap();
    let before: i64 = users::table.count().get_result(&mut conn).await.unwrap();
    assert!(
        async_pg::insert(&mut conn, &kms, users::table, &mut bad)
            .await
            .is_err()
    );
    let after: i64 = users::table.count().get_result(&mut conn).await.unwrap();
    assert_eq!(before, after, "no half-written row");
    assert!(bad.id.is_none() && bad.encrypted_kms_key.is_pending());
}

/// diesel-async has what sync Diesel has: `insert_many` (one `nextval` query, one multi-row
/// `INSERT`), `rotate_table` and `key_versions`, and `update_encrypted` keeps blind indexes.
#[tokio::test(flavor = "multi_thread")]
async fn insert_many_and_rotate_table_without_blocking() {
    use kms_fields::table::{RotationMode, TableOptions, TableSpec};
    use kms_fields_tests::models::UserV2;
    let (db, _sync) = PgDb::new();
    let mut conn = connect(&db).await;
    let kms = Kms::new();
    let mut batch = Vec::new();
    for i in 0..20 {
        let mut u = User::default();
        u.set_email(&kms, Some(&format!("a{i}@example.org")))
            .await
            .unwrap();
        batch.push(u);
    }
    assert_eq!(
        async_pg::insert_many(&mut conn, &kms, users::table, &mut batch, 8)
            .await
            .unwrap(),
        SaveFlow::Prefetch
    );
    assert!(batch.iter().all(|u| u.id.is_some()));
    assert_eq!(
        async_pg::key_versions(&mut conn, "users", "encrypted_kms_key")
            .await
            .unwrap(),
        vec![("v1:".to_owned(), 20)]
    );
    let spec = TableSpec::of_model(UserV2::KMS_KEY).unwrap();
    let s = async_pg::rotate_table(
        &mut conn,
        &kms,
        &spec,
        TableOptions {
            mode: RotationMode::Rewrap,
            batch_size: 7,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((s.done, s.remaining), (20, 0));
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(
        async_pg::key_versions(&mut conn, "users", "encrypted_kms_key")
            .await
            .unwrap(),
        vec![("v2:".to_owned(), 20)]
    );
    let rows: Vec<UserV2> = users::table
        .order(users::id)
        .select(UserV2::as_select())
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        rows[3].email(&Kms::new()).await.unwrap().as_deref(),
        Some("a3@example.org")
    );
}
