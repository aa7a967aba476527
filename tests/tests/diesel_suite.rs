//! kms_encrypted's behavioural test suite, ported to kms-fields + Diesel and run against real
//! Postgres, SQLite and MariaDB (one macro expansion per backend, not copies). KMS calls are
//! counted the way the gem's tests count them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use diesel::prelude::*;
use kms_fields::{EncryptionContext, ErrorKind, Kms, SaveFlow};
use kms_fields_diesel::{
    KmsKey, insert, key_index, planned_flow, rotate_kms_key, update_encrypted,
};
use kms_fields_tests::db::{MysqlDb, PgDb, SqliteDb, TestDb};
use kms_fields_tests::embedded_context;
use kms_fields_tests::models::{Account, Address, LateUser, User, UserV2};
use kms_fields_tests::schema::users;

fn new_user(kms: &Kms) -> User {
    let mut u = User {
        name: Some("Test".into()),
        ..Default::default()
    };
    u.set_email_blocking(kms, Some("test@example.org")).unwrap();
    u.set_phone_blocking(kms, Some("555-555-5555")).unwrap();
    u
}

macro_rules! diesel_suite {
    ($backend:ident, $db:ty) => {
        mod $backend {
            use super::*;

            type Conn = <$db as TestDb>::Conn;

            fn setup() -> ($db, Conn) {
                <$db>::new()
            }

            fn load(conn: &mut Conn, id: i32) -> User {
                users::table
                    .find(id)
                    .select(User::as_select())
                    .first(conn)
                    .unwrap()
            }

            fn create(conn: &mut Conn, kms: &Kms) -> User {
                let mut u = new_user(kms);
                insert(conn, kms, users::table, &mut u).unwrap();
                u
            }

            #[test]
            fn test_create() {
                let (_db, mut conn) = setup();
                let kms = Kms::new();
                let user = create(&mut conn, &kms);
                assert_eq!(
                    user.email_blocking(&kms).unwrap().as_deref(),
                    Some("test@example.org")
                );
                assert_eq!(
                    user.phone_blocking(&kms).unwrap().as_deref(),
                    Some("555-555-5555")
                );
                assert!(user.encrypted_kms_key.stored().unwrap().starts_with("v1:"));
                assert!(
                    user.encrypted_kms_key_phone
                        .stored()
                        .unwrap()
                        .starts_with("v1:")
                );
                // reading what we just wrote needs no Decrypt: the keys are cached in the record
                assert_eq!(kms.stats().decrypts(), 0);
            }

            #[test]
            fn test_read() {
                let (_db, mut conn) = setup();
                let id = create(&mut conn, &Kms::new()).id.unwrap();
                let kms = Kms::new();
                let user = load(&mut conn, id);
                assert_eq!(
                    user.email_blocking(&kms).unwrap().as_deref(),
                    Some("test@example.org")
                );
                assert_eq!(
                    user.phone_blocking(&kms).unwrap().as_deref(),
                    Some("555-555-5555")
                );
                assert_eq!(
                    user.address_blocking(&kms).unwrap(),
                    None,
                    "NULL attribute reads as None"
                );
                // one Decrypt per key, not per attribute
                assert_eq!((kms.stats().encrypts(), kms.stats().decrypts()), (0, 2));
                assert_eq!(
                    user.email_blocking(&kms).unwrap().as_deref(),
                    Some("test@example.org")
                );
                assert_eq!(kms.stats().decrypts(), 2);
            }

            #[test]
            fn test_null_attribute_never_calls_kms() {
                let (_db, mut conn) = setup();
                let kms = Kms::new();
                let mut u = User::default();
                u.set_email_blocking(&kms, None).unwrap();
                insert(&mut conn, &kms, users::table, &mut u).unwrap();
                assert_eq!((kms.stats().encrypts(), kms.stats().decrypts()), (0, 0));
                let loaded = load(&mut conn, u.id.unwrap());
                assert_eq!(loaded.email_blocking(&kms).unwrap(), None);
                assert_eq!(loaded.phone_blocking(&kms).unwrap(), None);
                assert_eq!(kms.stats().decrypts(), 0);
            }

            #[test]
            fn test_two_attributes_of_one_key_read_with_one_decrypt() {
                let (_db, mut conn) = setup();
                let kms = Kms::new();
                let addr = Address {
                    street: "2 Side St".into(),
                    city: "Bern".into(),
                    zip: 3000,
                };
                let mut u = User::default();
                u.set_email_blocking(&kms, Some("one@example.org")).unwrap();
                u.set_address_blocking(&kms, Some(&addr)).unwrap();
                insert(&mut conn, &kms, users::table, &mut u).unwrap();
                let reader = Kms::new();
                let loaded = load(&mut conn, u.id.unwrap());
                assert_eq!(
                    loaded.email_blocking(&reader).unwrap().as_deref(),
                    Some("one@example.org")
                );
                assert_eq!(loaded.address_blocking(&reader).unwrap(), Some(addr));
                assert_eq!(
                    (reader.stats().encrypts(), reader.stats().decrypts()),
                    (0, 1),
                    "email and address share kms_key: one Decrypt for both"
                );
            }

            #[test]
            fn test_null_attribute_of_a_locked_record_makes_no_kms_call() {
                let (_db, mut conn) = setup();
                let id = create(&mut conn, &Kms::new()).id.unwrap();
                let kms = Kms::new();
                let loaded = load(&mut conn, id);
                assert!(loaded.encrypted_kms_key.stored().is_some());
                assert!(!loaded.encrypted_kms_key.is_unlocked());
                // address (NULL) is under kms_key, which is set but not unwrapped yet
                assert_eq!(loaded.address_blocking(&kms).unwrap(), None);
                assert_eq!((kms.stats().encrypts(), kms.stats().decrypts()), (0, 0));
                assert!(
                    !loaded.encrypted_kms_key.is_unlocked(),
                    "the NULL read did not unwrap the key"
                );
                assert_eq!(
                    loaded.email_blocking(&kms).unwrap().as_deref(),
                    Some("test@example.org")
                );
                assert_eq!(kms.stats().decrypts(), 1);
            }

            #[test]
            fn test_eager_flow_counts() {
                let (_db, mut conn) = setup();
                let kms = Kms::new();
                let mut a = Account {
                    name: Some("Eve".into()),
                    ..Default::default()
                };
                a.set_email_blocking(&kms, Some("eve@example.org")).unwrap();
                a.set_phone_blocking(&kms, Some("555-0100")).unwrap();
                assert_eq!(
                    (kms.stats().encrypts(), kms.stats().decrypts()),
                    (0, 0),
                    "assigning draws the data keys locally"
                );
                assert!(a.encrypted_kms_key.is_pending() && a.encrypted_kms_key_phone.is_pending());
                assert_eq!(
                    insert(&mut conn, &kms, users::table, &mut a).unwrap(),
                    SaveFlow::Eager
                );
                assert_eq!(
                    (kms.stats().encrypts(), kms.stats().decrypts()),
                    (2, 0),
                    "the save wraps each key once"
                );
                // both keys were wrapped with the custom context (no id in it)
                let want = EncryptionContext::new()
                    .with("Name", "Eve")
                    .canonical_json();
                assert_eq!(
                    embedded_context(a.encrypted_kms_key.stored().unwrap()),
                    want
                );
                assert_eq!(
                    embedded_context(a.encrypted_kms_key_phone.stored().unwrap()),
                    want
                );
                let row: Account = users::table
                    .find(a.id.unwrap())
                    .select(Account::as_select())
                    .first(&mut conn)
                    .unwrap();
                let reader = Kms::new();
                assert_eq!(
                    row.email_blocking(&reader).unwrap().as_deref(),
                    Some("eve@example.org")
                );
                assert_eq!(
                    row.phone_blocking(&reader).unwrap().as_deref(),
                    Some("555-0100")
                );
            }

            #[test]
            fn test_update() {
                let (_db, mut conn) = setup();
                let id = create(&mut conn, &Kms::new()).id.unwrap();
                let kms = Kms::new();
                let mut user = load(&mut conn, id);
                let key_before = user.encrypted_kms_key.stored().map(str::to_owned);
                user.set_email_blocking(&kms, Some("updated@example.org"))
                    .unwrap();
                assert_eq!(
                    (kms.stats().encrypts(), kms.stats().decrypts()),
                    (0, 1),
                    "setting an attribute of a loaded record unwraps its key once"
                );
                assert!(
                    !user.encrypted_kms_key.is_pending(),
                    "the record keeps its key"
                );
                update_encrypted(&mut conn, &kms, &mut user).unwrap();
                assert_eq!(
                    (kms.stats().encrypts(), kms.stats().decrypts()),
                    (0, 1),
                    "the save wraps nothing: the key is unchanged"
                );
                let reloaded = load(&mut conn, id);
                assert_eq!(reloaded.encrypted_kms_key.stored(), key_before.as_deref());
                let reader = Kms::new();
                assert_eq!(
                    reloaded.email_blocking(&reader).unwrap().as_deref(),
                    Some("updated@example.org")
                );
                assert_eq!(
                    reloaded.phone_blocking(&reader).unwrap().as_deref(),
                    Some("555-555-5555")
                );
            }

            #[test]
            fn test_serde_and_empty_values() {
                let (_db, mut conn) = setup();
                let kms = Kms::new();
                let mut u = User::default();
                let addr = Address {
                    street: "1 Main St".into(),
                    city: "Zürich".into(),
                    zip: 8001,
                };
                u.set_address_blocking(&kms, Some(&addr)).unwrap();
                u.set_email_blocking(&kms, Some("")).unwrap();
                insert(&mut conn, &kms, users::table, &mut u).unwrap();
                assert_ne!(
                    u.email_enc.as_deref(),
                    Some(""),
                    "writing always encrypts, even the empty string"
                );
                let loaded = load(&mut conn, u.id.unwrap());
                let kms2 = Kms::new();
                assert_eq!(loaded.address_blocking(&kms2).unwrap(), Some(addr));
                assert_eq!(loaded.email_blocking(&kms2).unwrap().as_deref(), Some(""));
            }

            #[test]
            fn test_assigning_defers_and_save_encrypts_once_per_key() {
                let (_db, mut conn) = setup();
                let kms = Kms::new();
                let mut u = User::default();
                u.set_email_blocking(&kms, Some("a@b.c")).unwrap();
                u.set_address_blocking(
                    &kms,
                    Some(&Address {
                        street: "s".into(),
                        city: "c".into(),
                        zip: 1,
                    }),
                )
                .unwrap();
                assert_eq!(
                    kms.stats().encrypts(),
                    0,
                    "assigning draws a data key locally"
                );
                assert!(u.encrypted_kms_key.is_pending());
                insert(&mut conn, &kms, users::table, &mut u).unwrap();
                assert_eq!(
                    (kms.stats().encrypts(), kms.stats().decrypts()),
                    (1, 0),
                    "one Encrypt for the one key in use"
                );
                assert!(
                    u.encrypted_kms_key_phone.stored().is_none(),
                    "an unused key stays NULL"
                );
            }

            #[test]
            fn test_update_does_not_decrypt() {
                let (_db, mut conn) = setup();
                let id = create(&mut conn, &Kms::new()).id.unwrap();
                // the encrypt-only writer: it may not Decrypt at all
                let kms = Kms::new();
                let mut user = load(&mut conn, id);
                user.encrypted_kms_key.clear();
                user.email_enc = None;
                user.address_enc = None;
                user.set_email_blocking(&kms, Some("new@example.org"))
                    .unwrap();
                update_encrypted(&mut conn, &kms, &mut user).unwrap();
                assert_eq!((kms.stats().encrypts(), kms.stats().decrypts()), (1, 0));
                let reader = Kms::new();
                assert_eq!(
                    load(&mut conn, id)
                        .email_blocking(&reader)
                        .unwrap()
                        .as_deref(),
                    Some("new@example.org")
                );
            }

            #[test]
            fn test_encrypt_only_credentials_write_but_cannot_read() {
                let (_db, mut conn) = setup();
                let kms = Kms::new();
                let mut u = kms_fields_tests::models::WriterUser::default();
                u.set_email_blocking(&kms, Some("w@example.org")).unwrap();
                kms_fields_diesel::insert(&mut conn, &kms, users::table, &mut u).unwrap();
                assert_eq!((kms.stats().encrypts(), kms.stats().decrypts()), (1, 0));
                let reader = Kms::new();
                // rows written with the encrypt-only key id cannot be read back with it
                let as_writer: kms_fields_tests::models::WriterUser = users::table
                    .find(u.id.unwrap())
                    .select(kms_fields_tests::models::WriterUser::as_select())
                    .first(&mut conn)
                    .unwrap();
                assert_eq!(
                    as_writer.email_blocking(&reader).unwrap_err().kind(),
                    ErrorKind::AccessDenied
                );
            }

            #[test]
            fn test_fresh_load_needs_fresh_decrypt() {
                let (_db, mut conn) = setup();
                let id = create(&mut conn, &Kms::new()).id.unwrap();
                let kms = Kms::new();
                let user = load(&mut conn, id);
                user.phone_blocking(&kms).unwrap();
                let user = load(&mut conn, id);
                user.phone_blocking(&kms).unwrap();
                assert_eq!((kms.stats().encrypts(), kms.stats().decrypts()), (0, 2));
            }

            #[test]
            fn test_rotate() {
                let (_db, mut conn) = setup();
                let id = create(&mut conn, &Kms::new()).id.unwrap();
                let kms = Kms::new();
                let mut user = load(&mut conn, id);
                let before = user.clone();
                rotate_kms_key(&mut conn, &kms, &mut user, User::KMS_KEY).unwrap();
                assert_ne!(user.email_enc, before.email_enc);
                assert_ne!(
                    user.encrypted_kms_key.stored(),
                    before.encrypted_kms_key.stored()
                );
                assert_eq!(
                    user.phone_enc, before.phone_enc,
                    "another key's attributes are untouched"
                );
                assert_eq!((kms.stats().encrypts(), kms.stats().decrypts()), (1, 1));
                let reloaded = load(&mut conn, id);
                assert_eq!(
                    reloaded.encrypted_kms_key.stored(),
                    user.encrypted_kms_key.stored()
                );
                assert_eq!(
                    reloaded.email_blocking(&Kms::new()).unwrap().as_deref(),
                    Some("test@example.org")
                );
            }

            #[test]
            fn test_rotate_phone() {
                let (_db, mut conn) = setup();
                let id = create(&mut conn, &Kms::new()).id.unwrap();
                let kms = Kms::new();
                let mut user = load(&mut conn, id);
                let before = user.clone();
                rotate_kms_key(
                    &mut conn,
                    &kms,
                    &mut user,
                    key_index::<User>(Some("phone")).unwrap(),
                )
                .unwrap();
                assert_ne!(user.phone_enc, before.phone_enc);
                assert_ne!(
                    user.encrypted_kms_key_phone.stored(),
                    before.encrypted_kms_key_phone.stored()
                );
                assert_eq!(user.email_enc, before.email_enc);
                let reloaded = load(&mut conn, id);
                assert_eq!(
                    reloaded.phone_blocking(&Kms::new()).unwrap().as_deref(),
                    Some("555-555-5555")
                );
            }

            #[test]
            fn test_rotate_in_memory_then_guarded_save_loses_to_concurrent_writer() {
                let (_db, mut conn) = setup();
                let id = create(&mut conn, &Kms::new()).id.unwrap();
                let kms = Kms::new();
                let mut stale = load(&mut conn, id);
                let mut other = load(&mut conn, id);
                rotate_kms_key(&mut conn, &kms, &mut other, User::KMS_KEY).unwrap();
                let e = rotate_kms_key(&mut conn, &kms, &mut stale, User::KMS_KEY).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Conflict);
                assert_eq!(
                    load(&mut conn, id)
                        .email_blocking(&Kms::new())
                        .unwrap()
                        .as_deref(),
                    Some("test@example.org")
                );
            }

            #[test]
            fn test_kms_keys() {
                let keys: Vec<&str> = User::kms_keys().iter().map(|k| k.method).collect();
                assert_eq!(keys, ["kms_key", "kms_key_phone"]);
                let attrs: Vec<(&str, &str)> = User::kms_attributes()
                    .iter()
                    .map(|a| (a.name, User::kms_keys()[a.key].method))
                    .collect();
                assert_eq!(
                    attrs,
                    [
                        ("email", "kms_key"),
                        ("phone", "kms_key_phone"),
                        ("address", "kms_key")
                    ]
                );
            }

            #[test]
            fn test_bad_context() {
                let (_db, mut conn) = setup();
                let kms = Kms::new();
                let mut a = Account {
                    name: Some("Alice".into()),
                    ..Default::default()
                };
                a.set_email_blocking(&kms, Some("alice@example.org"))
                    .unwrap();
                assert_eq!(
                    planned_flow::<Account, Conn>(&a).unwrap(),
                    SaveFlow::Eager,
                    "a context without the id saves eagerly"
                );
                insert(&mut conn, &kms, users::table, &mut a).unwrap();
                let loaded: Account = users::table
                    .find(a.id.unwrap())
                    .select(Account::as_select())
                    .first(&mut conn)
                    .unwrap();
                assert_eq!(
                    loaded.email_blocking(&Kms::new()).unwrap().as_deref(),
                    Some("alice@example.org")
                );
                // a fresh load (a loaded record caches its data key) with a context field changed
                let mut fresh: Account = users::table
                    .find(a.id.unwrap())
                    .select(Account::as_select())
                    .first(&mut conn)
                    .unwrap();
                fresh.name = Some("Mallory".into());
                let e = fresh.email_blocking(&Kms::new()).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::DecryptionFailed);
                assert!(e.to_string().contains("Account#"), "{e}");
            }

            #[test]
            fn test_versions() {
                let (_db, mut conn) = setup();
                let id = create(&mut conn, &Kms::new()).id.unwrap();
                let kms = Kms::new();
                // a v1 row reads through previous_versions
                let mut v2: UserV2 = users::table
                    .find(id)
                    .select(UserV2::as_select())
                    .first(&mut conn)
                    .unwrap();
                assert_eq!(
                    v2.email_blocking(&kms).unwrap().as_deref(),
                    Some("test@example.org")
                );
                // rotate moves it to v2
                rotate_kms_key(&mut conn, &kms, &mut v2, UserV2::KMS_KEY).unwrap();
                assert!(v2.encrypted_kms_key.stored().unwrap().starts_with("v2:"));
                let again: UserV2 = users::table
                    .find(id)
                    .select(UserV2::as_select())
                    .first(&mut conn)
                    .unwrap();
                assert_eq!(
                    again.email_blocking(&Kms::new()).unwrap().as_deref(),
                    Some("test@example.org")
                );
                // a new v2 record
                let mut n = UserV2::default();
                n.set_phone_blocking(&kms, Some("1")).unwrap();
                insert(&mut conn, &kms, users::table, &mut n).unwrap();
                assert!(
                    n.encrypted_kms_key_phone
                        .stored()
                        .unwrap()
                        .starts_with("v2:")
                );
                // the v1-only model cannot read v2 rows
                let v1 = load(&mut conn, id);
                assert_eq!(
                    v1.email_blocking(&Kms::new()).unwrap_err().to_string(),
                    "Version not active: 2"
                );
                // a v3 row fails with exactly the gem's message
                let v3 = format!("v3:{}", &again.encrypted_kms_key.stored().unwrap()[3..]);
                diesel::update(users::table.find(id))
                    .set(users::encrypted_kms_key.eq(&v3))
                    .execute(&mut conn)
                    .unwrap();
                let row: UserV2 = users::table
                    .find(id)
                    .select(UserV2::as_select())
                    .first(&mut conn)
                    .unwrap();
                let e = row.email_blocking(&Kms::new()).unwrap_err();
                assert_eq!(e.to_string(), "Version not active: 3");
                assert_eq!(e.kind(), ErrorKind::VersionNotActive(3));
            }

            #[test]
            fn test_row_swap_fails() {
                let (_db, mut conn) = setup();
                let kms = Kms::new();
                let a = create(&mut conn, &kms);
                let b = create(&mut conn, &kms);
                // copy a's ciphertext and key column into b
                diesel::update(users::table.find(b.id.unwrap()))
                    .set((
                        users::email_enc.eq(&a.email_enc),
                        users::encrypted_kms_key.eq(&a.encrypted_kms_key),
                    ))
                    .execute(&mut conn)
                    .unwrap();
                let swapped = load(&mut conn, b.id.unwrap());
                assert_eq!(
                    swapped.email_blocking(&Kms::new()).unwrap_err().kind(),
                    ErrorKind::DecryptionFailed
                );
                // and a ciphertext moved to another column of the same row fails too (native mode AD)
                diesel::update(users::table.find(a.id.unwrap()))
                    .set(users::phone_enc.eq(&a.email_enc))
                    .execute(&mut conn)
                    .unwrap();
                diesel::update(users::table.find(a.id.unwrap()))
                    .set(users::encrypted_kms_key_phone.eq(&a.encrypted_kms_key))
                    .execute(&mut conn)
                    .unwrap();
                let moved = load(&mut conn, a.id.unwrap());
                assert_eq!(
                    moved.phone_blocking(&Kms::new()).unwrap_err().kind(),
                    ErrorKind::DecryptionFailed
                );
            }

            #[test]
            fn test_tampered_values_are_errors_not_panics() {
                let (_db, mut conn) = setup();
                let u = create(&mut conn, &Kms::new());
                let id = u.id.unwrap();
                for (enc, key) in [
                    (
                        Some("not base64!"),
                        u.encrypted_kms_key.stored().map(str::to_owned),
                    ),
                    (
                        Some("AAAA"),
                        u.encrypted_kms_key.stored().map(str::to_owned),
                    ),
                    (u.email_enc.as_deref(), Some("v1:garbage".to_owned())),
                    (u.email_enc.as_deref(), Some("v1:".to_owned())),
                    (u.email_enc.as_deref(), None),
                ] {
                    diesel::update(users::table.find(id))
                        .set((users::email_enc.eq(enc), users::encrypted_kms_key.eq(key)))
                        .execute(&mut conn)
                        .unwrap();
                    let row = load(&mut conn, id);
                    let e = row.email_blocking(&Kms::new()).unwrap_err();
                    assert!(
                        matches!(e.kind(), ErrorKind::BadFormat | ErrorKind::DecryptionFailed),
                        "{e:?}"
                    );
                }
            }

            #[test]
            fn test_concurrent_saves_from_threads() {
                let (db, _conn) = setup();
                let kms = Kms::new();
                let handles: Vec<_> = (0..6)
                    .map(|t| {
                        let kms = kms.clone();
                        let mut conn = db.connect();
                        std::thread::spawn(move || {
                            (0..15)
                                .map(|i| {
                                    let mut u = User::default();
                                    let email = format!("t{t}-{i}@example.org");
                                    u.set_email_blocking(&kms, Some(&email)).unwrap();
                                    u.set_phone_blocking(&kms, Some(&format!("{t}{i}")))
                                        .unwrap();
                                    insert(&mut conn, &kms, users::table, &mut u).unwrap();
                                    (u.id.unwrap(), email)
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                let written: Vec<(i32, String)> = handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap())
                    .collect();
                assert_eq!(written.len(), 90);
                assert_eq!(kms.stats().encrypts(), 180);
                let mut conn = db.connect();
                let reader = Kms::new();
                for (id, email) in written {
                    let u = load(&mut conn, id);
                    assert_eq!(u.email_blocking(&reader).unwrap(), Some(email));
                    let ctx = embedded_context(u.encrypted_kms_key.stored().unwrap());
                    assert_eq!(
                        ctx,
                        EncryptionContext::for_model("User", id).canonical_json()
                    );
                }
            }
        }
    };
}

diesel_suite!(postgres, PgDb);
diesel_suite!(sqlite, SqliteDb);
diesel_suite!(mysql, MysqlDb);

// ---- flows that differ per backend -------------------------------------------------------

#[test]
fn postgres_prefetch_is_one_insert_with_the_id_known_before_the_kms_call() {
    use diesel::connection::SimpleConnection;
    let (_db, mut conn) = PgDb::new();
    conn.batch_execute(
        "CREATE TABLE update_log (n int);
         CREATE FUNCTION log_update() RETURNS trigger AS $$ BEGIN INSERT INTO update_log VALUES (1); RETURN NEW; END $$ LANGUAGE plpgsql;
         CREATE TRIGGER users_updates AFTER UPDATE ON users FOR EACH ROW EXECUTE FUNCTION log_update();",
    )
    .unwrap();
    let kms = Kms::new();
    let mut u = new_user(&kms);
    assert_eq!(
        planned_flow::<User, diesel::PgConnection>(&u).unwrap(),
        SaveFlow::Prefetch
    );
    let flow = insert(&mut conn, &kms, users::table, &mut u).unwrap();
    assert_eq!(flow, SaveFlow::Prefetch);
    let id = u.id.unwrap();
    let updates: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "(SELECT count(*) FROM update_log)",
    ))
    .get_result(&mut conn)
    .unwrap();
    assert_eq!(updates, 0, "one INSERT, no UPDATE");
    // the id was in the context the KMS saw
    assert_eq!(
        embedded_context(u.encrypted_kms_key.stored().unwrap()),
        EncryptionContext::for_model("User", id).canonical_json()
    );
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

#[test]
fn postgres_prefetch_with_an_explicit_sequence() {
    use diesel::dsl::sql;
    use diesel::sql_types::{BigInt, Bool};
    use kms_fields_tests::models::SeqUser;
    let (_db, mut conn) = PgDb::new();
    let kms = Kms::new();
    let mut u = SeqUser::default();
    u.set_email_blocking(&kms, Some("seq@example.org")).unwrap();
    assert_eq!(
        insert(&mut conn, &kms, users::table, &mut u).unwrap(),
        SaveFlow::Prefetch
    );
    assert_eq!((kms.stats().encrypts(), kms.stats().decrypts()), (1, 0));
    let id = u.id.unwrap();
    // users_alt_id_seq (a migration) starts at 1,000,000; the serial's own sequence at 1
    assert!(id >= 1_000_000, "id {id} is not from users_alt_id_seq");
    let last: i64 = diesel::select(sql::<BigInt>("currval('users_alt_id_seq')"))
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(i64::from(id), last, "the id came from the named sequence");
    let serial_used: bool = diesel::select(sql::<Bool>("(SELECT is_called FROM users_id_seq)"))
        .get_result(&mut conn)
        .unwrap();
    assert!(!serial_used, "the serial's own sequence was not used");
    assert_eq!(
        embedded_context(u.encrypted_kms_key.stored().unwrap()),
        EncryptionContext::for_model("User", id).canonical_json()
    );
    let row = users::table
        .find(id)
        .select(User::as_select())
        .first(&mut conn)
        .unwrap();
    assert_eq!(
        row.email_blocking(&Kms::new()).unwrap().as_deref(),
        Some("seq@example.org")
    );
}

/// The forced after-insert flow (`save_flow = "after_insert"`) on Postgres through a sync
/// `PgConnection`: INSERT, then the wraps with the new id, then the key-column UPDATE (which
/// sets `updated_at`).
#[test]
fn postgres_forced_after_insert_flow_with_a_sync_connection() {
    use diesel::dsl::sql;
    use diesel::sql_types::Bool;
    let (_db, mut conn) = PgDb::new();
    let kms = Kms::new();
    let mut u = LateUser::default();
    u.set_email_blocking(&kms, Some("late@example.org"))
        .unwrap();
    u.set_phone_blocking(&kms, Some("555-0199")).unwrap();
    assert_eq!(kms.stats().encrypts(), 0, "assigning makes no KMS call");
    assert_eq!(
        planned_flow::<LateUser, diesel::PgConnection>(&u).unwrap(),
        SaveFlow::AfterInsert
    );
    assert_eq!(
        insert(&mut conn, &kms, users::table, &mut u).unwrap(),
        SaveFlow::AfterInsert
    );
    assert_eq!(
        (kms.stats().encrypts(), kms.stats().decrypts()),
        (2, 0),
        "one Encrypt per key, after the INSERT"
    );
    let id = u.id.unwrap();
    let want = EncryptionContext::for_model("User", id).canonical_json();
    assert_eq!(
        embedded_context(u.encrypted_kms_key.stored().unwrap()),
        want
    );
    assert_eq!(
        embedded_context(u.encrypted_kms_key_phone.stored().unwrap()),
        want
    );
    let touched: bool = diesel::select(sql::<Bool>(&format!(
        "(SELECT updated_at IS NOT NULL FROM users WHERE id = {id})"
    )))
    .get_result(&mut conn)
    .unwrap();
    assert!(
        !touched,
        "the key update writes the key columns only: updated_at keeps what the INSERT wrote (NULL)"
    );
    let row = users::table
        .find(id)
        .select(User::as_select())
        .first(&mut conn)
        .unwrap();
    let reader = Kms::new();
    assert_eq!(
        row.email_blocking(&reader).unwrap().as_deref(),
        Some("late@example.org")
    );
    assert_eq!(
        row.phone_blocking(&reader).unwrap().as_deref(),
        Some("555-0199")
    );
    assert_eq!(reader.stats().decrypts(), 2);
}

/// The default Postgres flow wraps outside any transaction: at each wrap, another connection
/// reads the inserting connection's state in `pg_stat_activity`. The forced after-insert flow
/// is the control: its wrap is seen inside the transaction.
#[test]
fn postgres_prefetch_makes_no_kms_call_inside_a_transaction() {
    use diesel::dsl::sql;
    use diesel::sql_types::{Integer, Text};
    use std::sync::{Arc, Mutex};
    let (db, mut conn) = PgDb::new();
    let pid: i32 = diesel::select(sql::<Integer>("pg_backend_pid()"))
        .get_result(&mut conn)
        .unwrap();
    let observer = Mutex::new(db.connect());
    let states: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = Arc::clone(&states);
    let hook = kms_fields_tests::HookProvider::on_wrap(kms_fields::provider::TestKey, move |_| {
        let state: String = diesel::select(sql::<Text>(&format!(
            "(SELECT coalesce(state, '?') FROM pg_stat_activity WHERE pid = {pid})"
        )))
        .get_result(&mut *observer.lock().unwrap())
        .unwrap();
        seen.lock().unwrap().push(state);
    });
    let kms = Kms::builder().insecure_test_key().test_key(hook).build();
    let mut u = new_user(&kms);
    assert_eq!(
        insert(&mut conn, &kms, users::table, &mut u).unwrap(),
        SaveFlow::Prefetch
    );
    assert_eq!(kms.stats().encrypts(), 2);
    assert_eq!(
        *states.lock().unwrap(),
        ["idle", "idle"],
        "both wraps ran while the inserting connection had no open transaction"
    );
    states.lock().unwrap().clear();
    let mut late = LateUser::default();
    late.set_email_blocking(&kms, Some("late@example.org"))
        .unwrap();
    assert_eq!(
        insert(&mut conn, &kms, users::table, &mut late).unwrap(),
        SaveFlow::AfterInsert
    );
    assert_eq!(
        *states.lock().unwrap(),
        ["idle in transaction"],
        "the check sees the after-insert flow's transaction"
    );
}

/// The after-insert flow's UPDATE writes the key columns and nothing else: no
/// `updated_at = CURRENT_TIMESTAMP` (second resolution, another text format on SQLite, earlier
/// than the application's own `created_at`) — the columns keep what the INSERT wrote.
#[test]
fn sqlite_and_mysql_use_the_after_insert_flow_and_leave_updated_at_alone() {
    use diesel::dsl::sql;
    use diesel::sql_types::{Nullable, Text};
    let kms = Kms::new();
    let (_db, mut conn) = SqliteDb::new();
    let mut u = new_user(&kms);
    assert_eq!(
        insert(&mut conn, &kms, users::table, &mut u).unwrap(),
        SaveFlow::AfterInsert
    );
    assert_eq!((kms.stats().encrypts(), kms.stats().decrypts()), (2, 0));
    let set: Option<String> = diesel::select(sql::<Nullable<Text>>(&format!(
        "(SELECT updated_at FROM users WHERE id = {})",
        u.id.unwrap()
    )))
    .get_result(&mut conn)
    .unwrap();
    assert_eq!(set, None, "updated_at keeps what the INSERT wrote");

    let (_db2, mut my) = MysqlDb::new();
    let mut m = new_user(&kms);
    assert_eq!(
        insert(&mut my, &kms, users::table, &mut m).unwrap(),
        SaveFlow::AfterInsert
    );
    assert_eq!((kms.stats().encrypts(), kms.stats().decrypts()), (4, 0));
    let set: Option<String> = diesel::select(sql::<Nullable<Text>>(&format!(
        "(SELECT CAST(updated_at AS CHAR) FROM users WHERE id = {})",
        m.id.unwrap()
    )))
    .get_result(&mut my)
    .unwrap();
    assert_eq!(
        set, None,
        "updated_at keeps what the INSERT wrote on MySQL too"
    );
    assert_eq!(
        embedded_context(m.encrypted_kms_key.stored().unwrap()),
        EncryptionContext::for_model("User", m.id.unwrap()).canonical_json()
    );
    let row: User = users::table
        .find(m.id.unwrap())
        .select(User::as_select())
        .first(&mut my)
        .unwrap();
    assert_eq!(
        row.phone_blocking(&Kms::new()).unwrap().as_deref(),
        Some("555-555-5555")
    );
}

#[test]
fn a_failed_insert_leaves_nothing_and_can_be_retried() {
    use diesel::connection::SimpleConnection;
    let (_db, mut conn) = SqliteDb::new();
    let kms = Kms::new();
    let mut u = new_user(&kms);
    conn.batch_execute(
        "CREATE TRIGGER no_keys BEFORE UPDATE ON users BEGIN SELECT RAISE(ABORT, 'blocked'); END;",
    )
    .unwrap();
    let e = insert(&mut conn, &kms, users::table, &mut u).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Database);
    assert_eq!(u.id, None, "the rolled-back id is forgotten");
    assert!(u.encrypted_kms_key.is_pending(), "keys are pending again");
    let count: i64 = users::table.count().get_result(&mut conn).unwrap();
    assert_eq!(count, 0, "the transaction rolled back: no half-written row");
    conn.batch_execute("DROP TRIGGER no_keys").unwrap();
    insert(&mut conn, &kms, users::table, &mut u).unwrap();
    let row: User = users::table
        .find(u.id.unwrap())
        .select(User::as_select())
        .first(&mut conn)
        .unwrap();
    assert_eq!(
        row.email_blocking(&Kms::new()).unwrap().as_deref(),
        Some("test@example.org")
    );
}

#[test]
fn kms_key_debug_never_shows_the_stored_value() {
    let kms = Kms::new();
    let mut u = new_user(&kms);
    u.kms_seal_blocking(&kms).unwrap_err(); // no id yet: MissingId
    u.id = Some(1);
    u.kms_seal_blocking(&kms).unwrap();
    let dbg = format!(
        "{u:?} {:?}",
        KmsKey::from_stored(u.encrypted_kms_key.stored().map(str::to_owned))
    );
    assert!(!dbg.contains("insecure+data"), "{dbg}");
    assert!(!dbg.contains("test@example.org"), "{dbg}");
}
