//! Encrypted attachments of model records (Diesel on Postgres and SQLite, SeaORM on SQLite),
//! on moto's S3 and the local file system: keyed by the record's `kms_key`, so a re-wrap
//! rotation leaves the object untouched and a full rotation re-encrypts it, crash-safely.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use diesel::prelude::*;
use kms_fields::attachments::object_store::{ObjectStore, ObjectStoreExt, path::Path};
use kms_fields::attachments::{AttachmentKey, AttachmentStore, record};
use kms_fields::{ErrorKind, Kms, blocking};
use kms_fields_tests::db::{PgDb, SqliteDb};
use kms_fields_tests::models::{User, UserV2};
use kms_fields_tests::moto_s3_store;
use kms_fields_tests::schema::users;

/// 300 KiB that are not all alike (several segments).
fn contract() -> Vec<u8> {
    (0..300 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn local_store() -> (tempfile::TempDir, Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    (dir, Arc::new(store))
}

/// A saved user with an email and an uploaded contract.
fn user_with_contract<C: kms_fields_diesel::KmsConnection>(
    conn: &mut C,
    kms: &Kms,
    store: &AttachmentStore,
) -> (User, Path)
where
    diesel::query_builder::InsertStatement<
        users::table,
        <User as diesel::Insertable<users::table>>::Values,
    >: diesel::query_dsl::methods::ExecuteDsl<C>,
{
    let mut u = User::default();
    u.set_email_blocking(kms, Some("ada@example.org")).unwrap();
    // a new record: the attachment's key is the record's fresh data key, wrapped on save
    let key = blocking::run(record::key_for_write(
        &mut u,
        kms,
        User::KMS_KEY,
        "contract",
    ))
    .unwrap();
    kms_fields_diesel::insert(conn, kms, users::table, &mut u).unwrap();
    let path = Path::from(format!("users/{}/contract.pdf", u.id.unwrap()));
    blocking::run(store.put_bytes(&path, &key, contract())).unwrap();
    (u, path)
}

fn read<M: kms_fields::KmsModel>(
    m: &M,
    kms: &Kms,
    store: &AttachmentStore,
    path: &Path,
) -> kms_fields::Result<Vec<u8>> {
    blocking::run(async {
        let s = record::open(
            m,
            kms,
            kms_fields::save::key_index::<M>(None)?,
            store,
            "contract",
            path,
        )
        .await?;
        Ok(s.bytes().await?.to_vec())
    })
}

macro_rules! attachment_suite {
    ($backend:ident, $db:ty, $store:expr) => {
        mod $backend {
            use super::*;

            #[test]
            fn rewrap_rotation_leaves_the_object_untouched() {
                let (_g, mut conn) = <$db>::new();
                let (_dir, raw) = $store;
                let store = AttachmentStore::new(raw.clone());
                let kms = Kms::new();
                let (u, path) = user_with_contract(&mut conn, &kms, &store);
                let before = blocking::block_on(raw.head(&path)).unwrap().unwrap();
                let mut v2: UserV2 = users::table
                    .find(u.id.unwrap())
                    .select(UserV2::as_select())
                    .first(&mut conn)
                    .unwrap();
                assert!(
                    kms_fields_diesel::rewrap_kms_key(&mut conn, &kms, &mut v2, UserV2::KMS_KEY)
                        .unwrap()
                );
                let after = blocking::block_on(raw.head(&path)).unwrap().unwrap();
                assert_eq!(
                    (before.e_tag, before.size),
                    (after.e_tag, after.size),
                    "object untouched"
                );
                let fresh: UserV2 = users::table
                    .find(u.id.unwrap())
                    .select(UserV2::as_select())
                    .first(&mut conn)
                    .unwrap();
                assert!(fresh.encrypted_kms_key.stored().unwrap().starts_with("v2:"));
                assert_eq!(
                    read(&fresh, &Kms::new(), &store, &path).unwrap(),
                    contract()
                );
            }

            #[test]
            fn full_rotation_reencrypts_the_attachments() {
                let (_g, mut conn) = <$db>::new();
                let (_dir, raw) = $store;
                let store = AttachmentStore::new(raw.clone());
                let kms = Kms::new();
                let (_, path) = user_with_contract(&mut conn, &kms, &store);
                let mut u: User = users::table
                    .select(User::as_select())
                    .first(&mut conn)
                    .unwrap();
                let old =
                    blocking::run(record::key_of(&u, &kms, User::KMS_KEY, "contract")).unwrap();
                let before = blocking::block_on(raw.head(&path)).unwrap().unwrap();
                kms_fields_diesel::attachments::rotate_kms_key_with_attachments(
                    &mut conn,
                    &kms,
                    &mut u,
                    User::KMS_KEY,
                    &store,
                    &[("contract", path.clone())],
                )
                .unwrap();
                let after = blocking::block_on(raw.head(&path)).unwrap().unwrap();
                assert_ne!(before.e_tag, after.e_tag, "re-encrypted");
                let e = blocking::run(store.get_bytes(&path, &old)).unwrap_err();
                assert_eq!(
                    e.kind(),
                    ErrorKind::DecryptionFailed,
                    "the old data key no longer opens it"
                );
                let staging = blocking::block_on(raw.head(&record::staging_path(&path)))
                    .unwrap()
                    .unwrap_err();
                assert!(
                    matches!(staging, object_store::Error::NotFound { .. }),
                    "no staging object left"
                );
                let fresh: User = users::table
                    .select(User::as_select())
                    .first(&mut conn)
                    .unwrap();
                let reader = Kms::new();
                assert_eq!(read(&fresh, &reader, &store, &path).unwrap(), contract());
                assert_eq!(
                    fresh.email_blocking(&reader).unwrap().as_deref(),
                    Some("ada@example.org")
                );
            }

            #[test]
            fn a_read_only_store_is_refused_before_anything_changes() {
                let (_g, mut conn) = <$db>::new();
                let (_dir, raw) = $store;
                let store = AttachmentStore::new(raw.clone());
                let kms = Kms::new();
                let (_, path) = user_with_contract(&mut conn, &kms, &store);
                let mut u: User = users::table
                    .select(User::as_select())
                    .first(&mut conn)
                    .unwrap();
                let stored = u.encrypted_kms_key.stored().map(str::to_owned);
                let e = kms_fields_diesel::attachments::rotate_kms_key_with_attachments(
                    &mut conn,
                    &kms,
                    &mut u,
                    User::KMS_KEY,
                    &store.read_only(),
                    &[("contract", path.clone())],
                )
                .unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Config);
                assert!(
                    e.to_string().contains("read-only") && e.to_string().contains("re-wrap"),
                    "{e}"
                );
                let fresh: User = users::table
                    .select(User::as_select())
                    .first(&mut conn)
                    .unwrap();
                assert_eq!(fresh.encrypted_kms_key.stored().map(str::to_owned), stored);
                assert_eq!(read(&fresh, &kms, &store, &path).unwrap(), contract());
            }

            #[test]
            fn a_rotation_interrupted_after_the_update_stays_readable_and_finishes() {
                let (_g, mut conn) = <$db>::new();
                let (_dir, raw) = $store;
                let store = AttachmentStore::new(raw.clone());
                let kms = Kms::new();
                let (_, path) = user_with_contract(&mut conn, &kms, &store);
                let mut u: User = users::table
                    .select(User::as_select())
                    .first(&mut conn)
                    .unwrap();
                let old =
                    blocking::run(record::key_of(&u, &kms, User::KMS_KEY, "contract")).unwrap();
                // the state a crash between steps 2 and 3 leaves: staging object under the new
                // key, the row saved with the new key, the original still under the old one
                u.rotate_kms_key_blocking(&kms).unwrap();
                let new =
                    blocking::run(record::key_of(&u, &kms, User::KMS_KEY, "contract")).unwrap();
                let staging = record::staging_path(&path);
                blocking::run(store.reencrypt_to(&path, &old, &store, &staging, &new)).unwrap();
                kms_fields_diesel::update_key_columns(&mut conn, &mut u, User::KMS_KEY).unwrap();
                let fresh: User = users::table
                    .select(User::as_select())
                    .first(&mut conn)
                    .unwrap();
                assert_eq!(
                    read(&fresh, &Kms::new(), &store, &path).unwrap(),
                    contract(),
                    "read through the staging object"
                );
                assert_eq!(
                    blocking::run(record::finish_rotation(
                        &fresh,
                        &kms,
                        User::KMS_KEY,
                        &store,
                        &[("contract", path.clone())]
                    ))
                    .unwrap(),
                    1
                );
                assert!(blocking::block_on(raw.head(&staging)).unwrap().is_err());
                assert_eq!(
                    blocking::run(store.get_bytes(&path, &new))
                        .unwrap()
                        .to_vec(),
                    contract()
                );
                // a crash after step 1 only: the stale staging object is deleted, the original kept
                blocking::run(store.put_bytes(
                    &staging,
                    &AttachmentKey::new(&kms_fields::DataKey::generate().unwrap(), "contract"),
                    vec![1u8, 2, 3],
                ))
                .unwrap();
                assert_eq!(
                    blocking::run(record::finish_rotation(
                        &fresh,
                        &kms,
                        User::KMS_KEY,
                        &store,
                        &[("contract", path.clone())]
                    ))
                    .unwrap(),
                    0
                );
                assert!(blocking::block_on(raw.head(&staging)).unwrap().is_err());
                assert_eq!(read(&fresh, &kms, &store, &path).unwrap(), contract());
            }
        }
    };
}

attachment_suite!(postgres_s3, PgDb, ((), moto_s3_store("pg")));
attachment_suite!(sqlite_s3, SqliteDb, ((), moto_s3_store("sqlite")));
attachment_suite!(sqlite_local_fs, SqliteDb, local_store());

#[tokio::test(flavor = "multi_thread")]
async fn seaorm_full_rotation_with_attachments() {
    use kms_fields_tests::sea::{connect, user};
    use sea_orm::EntityTrait;
    let (g, _conn) = SqliteDb::new();
    let db = connect(&format!("sqlite://{}?mode=rwc", g.path()), None).await;
    let store = AttachmentStore::new(moto_s3_store("sea"));
    let kms = Kms::new();
    let mut u = user::Model::default();
    u.set_email(&kms, Some("ada@example.org")).await.unwrap();
    let key = record::key_for_write(&mut u, &kms, user::Model::KMS_KEY, "scan")
        .await
        .unwrap();
    kms_fields_seaorm::insert(&db, &kms, &mut u).await.unwrap();
    let path = Path::from(format!("users/{}/scan.png", u.id));
    store.put_bytes(&path, &key, contract()).await.unwrap();
    let mut loaded = user::Entity::find_by_id(u.id)
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    kms_fields_seaorm::attachments::rotate_kms_key_with_attachments(
        &db,
        &kms,
        &mut loaded,
        user::Model::KMS_KEY,
        &store,
        &[("scan", path.clone())],
    )
    .await
    .unwrap();
    assert_eq!(
        store.get_bytes(&path, &key).await.unwrap_err().kind(),
        ErrorKind::DecryptionFailed
    );
    let fresh = user::Entity::find_by_id(u.id)
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    let s = record::open(
        &fresh,
        &Kms::new(),
        user::Model::KMS_KEY,
        &store,
        "scan",
        &path,
    )
    .await
    .unwrap();
    assert_eq!(s.bytes().await.unwrap().to_vec(), contract());
}

/// `User` whose phone key encrypts files only (`key(..., attachments)`): no attribute uses it.
#[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, kms_fields::KmsEncrypted)]
#[diesel(table_name = users)]
#[kms(model_name = "User")]
#[allow(clippy::duplicated_attributes)]
#[kms(
    key(key_id = "insecure-test-key"),
    key(name = "phone", key_id = "insecure-test-key", attachments)
)]
struct FileUser {
    #[diesel(deserialize_as = i32)]
    id: Option<i32>,
    #[kms(encrypted)]
    email_enc: Option<String>,
    encrypted_kms_key: kms_fields_diesel::KmsKey,
    encrypted_kms_key_phone: kms_fields_diesel::KmsKey,
}

/// A model with no encrypted attribute at all: its only key protects files.
#[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, kms_fields::KmsEncrypted)]
#[diesel(table_name = users)]
#[kms(model_name = "User", key(key_id = "insecure-test-key", attachments))]
struct FilesOnly {
    #[diesel(deserialize_as = i32)]
    id: Option<i32>,
    encrypted_kms_key: kms_fields_diesel::KmsKey,
}

/// Defect: a plain `rotate_kms_key` of a key that also encrypts files returned Ok and the files
/// could no longer be opened. Now it refuses, naming the attachment-aware rotation, and so does
/// a `NewDataKey` table rotation; the attachment-aware rotation and re-wraps work.
#[test]
fn a_key_that_encrypts_files_refuses_a_plain_rotation() {
    let (_g, mut conn) = SqliteDb::new();
    let (_dir, raw) = local_store();
    let store = AttachmentStore::new(raw);
    let kms = Kms::new();
    let mut u = FileUser::default();
    u.set_email_blocking(&kms, Some("ada@example.org")).unwrap();
    let key = blocking::run(record::key_for_write(
        &mut u,
        &kms,
        FileUser::KMS_KEY_PHONE,
        "contract",
    ))
    .unwrap();
    kms_fields_diesel::insert(&mut conn, &kms, users::table, &mut u).unwrap();
    let path = Path::from(format!("users/{}/contract.pdf", u.id.unwrap()));
    blocking::run(store.put_bytes(&path, &key, contract())).unwrap();
    let open = |m: &FileUser| -> kms_fields::Result<Vec<u8>> {
        blocking::run(async {
            let s = record::open(
                m,
                &Kms::new(),
                FileUser::KMS_KEY_PHONE,
                &store,
                "contract",
                &path,
            )
            .await?;
            Ok(s.bytes().await?.to_vec())
        })
    };

    let before = u.encrypted_kms_key_phone.stored().map(str::to_owned);
    let e = kms_fields_diesel::rotate_kms_key(&mut conn, &kms, &mut u, FileUser::KMS_KEY_PHONE)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(
        e.to_string().contains("rotate_kms_key_with_attachments"),
        "{e}"
    );
    assert_eq!(
        u.encrypted_kms_key_phone.stored().map(str::to_owned),
        before
    );
    let row: FileUser = users::table
        .find(u.id.unwrap())
        .select(FileUser::as_select())
        .first(&mut conn)
        .unwrap();
    assert_eq!(open(&row).unwrap(), contract(), "the file still opens");

    let spec = kms_fields::table::TableSpec::of_model(FileUser::KMS_KEY_PHONE).unwrap();
    let e = kms_fields_diesel::rotation::rotate_table(
        &mut conn,
        &kms,
        &spec,
        kms_fields_diesel::rotation::TableOptions {
            mode: kms_fields_diesel::rotation::RotationMode::NewDataKey,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");

    // the other key encrypts no file: its plain rotation works
    kms_fields_diesel::rotate_kms_key(&mut conn, &kms, &mut u, FileUser::KMS_KEY).unwrap();
    // the attachment-aware rotation re-encrypts the file under the new key
    let mut row: FileUser = users::table
        .find(u.id.unwrap())
        .select(FileUser::as_select())
        .first(&mut conn)
        .unwrap();
    kms_fields_diesel::attachments::rotate_kms_key_with_attachments(
        &mut conn,
        &kms,
        &mut row,
        FileUser::KMS_KEY_PHONE,
        &store,
        &[("contract", path.clone())],
    )
    .unwrap();
    let row: FileUser = users::table
        .find(u.id.unwrap())
        .select(FileUser::as_select())
        .first(&mut conn)
        .unwrap();
    assert_ne!(
        row.encrypted_kms_key_phone.stored().map(str::to_owned),
        before
    );
    assert_eq!(open(&row).unwrap(), contract());
    assert_eq!(
        row.email_blocking(&Kms::new()).unwrap().as_deref(),
        Some("ada@example.org")
    );
}

/// A model whose only key protects files derives, saves and opens its file.
#[test]
fn a_model_with_only_file_keys() {
    let (_g, mut conn) = SqliteDb::new();
    let (_dir, raw) = local_store();
    let store = AttachmentStore::new(raw);
    let kms = Kms::new();
    let mut f = FilesOnly::default();
    let key = blocking::run(record::key_for_write(
        &mut f,
        &kms,
        FilesOnly::KMS_KEY,
        "scan",
    ))
    .unwrap();
    kms_fields_diesel::insert(&mut conn, &kms, users::table, &mut f).unwrap();
    let path = Path::from(format!("users/{}/scan.png", f.id.unwrap()));
    blocking::run(store.put_bytes(&path, &key, contract())).unwrap();
    let row: FilesOnly = users::table
        .find(f.id.unwrap())
        .select(FilesOnly::as_select())
        .first(&mut conn)
        .unwrap();
    let got = blocking::run(async {
        let s = record::open(&row, &Kms::new(), FilesOnly::KMS_KEY, &store, "scan", &path).await?;
        Ok::<_, kms_fields::Error>(s.bytes().await?.to_vec())
    })
    .unwrap();
    assert_eq!(got, contract());
}
