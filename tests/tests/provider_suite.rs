//! kms_encrypted's behavioural suite (create, read, rotate, versions, bad context) run once per
//! provider — test key, local key, AWS on moto, Vault on a real OpenBao server, Google Cloud KMS
//! on drongo — from one macro, on a real Postgres.
//!
//! Each invocation names its key id once: the models' `key_id` and the module's `KEY_ID` (which
//! the provider set-up uses, e.g. to create the drongo key ring) are the same literal, and every
//! test checks that the calls went to the provider that key id names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use diesel::prelude::*;
use kms_fields::{EncryptionContext, ErrorKind, Kms, KmsEncrypted, Operation, ProviderKind};
use kms_fields_diesel::{KmsKey, insert, rotate_kms_key};
use kms_fields_tests::db::PgDb;
use kms_fields_tests::schema::users;

fn test_kms() -> Kms {
    Kms::new()
}

fn local_kms() -> Kms {
    Kms::builder()
        .insecure_test_key()
        .local(
            kms_fields::provider::LocalKey::new()
                .with_key("suite", &[0x5c; 32])
                .unwrap(),
        )
        .build()
}

fn aws_kms() -> Kms {
    kms_fields_tests::moto_kms()
}

fn vault_kms() -> Kms {
    // one transit mount per test process, shared by the writer and the readers of a test
    static PROVIDER: std::sync::OnceLock<kms_fields::provider::vault::VaultProvider> =
        std::sync::OnceLock::new();
    Kms::builder()
        .insecure_test_key()
        .vault(
            PROVIDER
                .get_or_init(|| {
                    kms_fields_tests::vault_provider(&kms_fields_tests::openbao::root_token())
                })
                .clone(),
        )
        .build()
}

/// drongo with the key ring and key of `key_id` (created once; drongo answers 409 afterwards).
fn gcp_kms(key_id: &str) -> Kms {
    let (ring_path, key) = key_id
        .split_once("/cryptoKeys/")
        .expect("projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>");
    let (parent, ring) = ring_path
        .rsplit_once("/keyRings/")
        .expect("projects/<p>/locations/<l>/keyRings/<r>");
    let base = format!("{}/v1/{parent}/keyRings", kms_fields_tests::drongo_url());
    for (url, body) in [
        (format!("{base}?keyRingId={ring}"), "{}"),
        (
            format!("{base}/{ring}/cryptoKeys?cryptoKeyId={key}"),
            r#"{"purpose":"ENCRYPT_DECRYPT"}"#,
        ),
    ] {
        std::process::Command::new("curl")
            .args([
                "-s",
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-d",
                body,
                &url,
            ])
            .output()
            .unwrap();
    }
    kms_fields_tests::drongo_kms()
}

macro_rules! provider_suite {
    ($provider:ident, $kind:ident, $key:literal, $kms:expr $(, #[$attr:meta])*) => {
        mod $provider {
            use super::*;

            /// The key id of this provider's models (usable in `$kms`).
            const KEY_ID: &str = $key;

            /// The calls of `op` that went to this module's provider.
            fn calls(kms: &Kms, op: Operation) -> u64 {
                kms.stats().count_for(ProviderKind::$kind, op)
            }

            #[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, KmsEncrypted)]
            #[diesel(table_name = users)]
            #[kms(model_name = "User", key(key_id = $key), key(name = "phone", key_id = $key))]
            pub struct User {
                #[diesel(deserialize_as = i32)]
                pub id: Option<i32>,
                pub name: Option<String>,
                #[kms(encrypted)]
                pub email_enc: Option<String>,
                #[kms(encrypted, key = "phone")]
                pub phone_enc: Option<String>,
                pub encrypted_kms_key: KmsKey,
                pub encrypted_kms_key_phone: KmsKey,
            }

            #[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, KmsEncrypted)]
            #[diesel(table_name = users)]
            #[kms(model_name = "User", key(key_id = $key, version = 2, previous(1 = $key)), key(name = "phone", key_id = $key, version = 2, previous(1 = $key)))]
            pub struct UserV2 {
                #[diesel(deserialize_as = i32)]
                pub id: Option<i32>,
                pub name: Option<String>,
                #[kms(encrypted)]
                pub email_enc: Option<String>,
                #[kms(encrypted, key = "phone")]
                pub phone_enc: Option<String>,
                pub encrypted_kms_key: KmsKey,
                pub encrypted_kms_key_phone: KmsKey,
            }

            #[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, KmsEncrypted)]
            #[diesel(table_name = users)]
            #[kms(model_name = "Account", key(key_id = $key, context = Account::context), key(name = "phone", key_id = $key, context = Account::context))]
            pub struct Account {
                #[diesel(deserialize_as = i32)]
                pub id: Option<i32>,
                pub name: Option<String>,
                #[kms(encrypted)]
                pub email_enc: Option<String>,
                #[kms(encrypted, key = "phone")]
                pub phone_enc: Option<String>,
                pub encrypted_kms_key: KmsKey,
                pub encrypted_kms_key_phone: KmsKey,
            }

            impl Account {
                fn context(&self, _version: u32) -> kms_fields::Result<EncryptionContext> {
                    Ok(EncryptionContext::new().with("Name", self.name.clone().unwrap_or_default()))
                }
            }

            fn create(conn: &mut diesel::PgConnection, kms: &Kms) -> User {
                let mut u = User { name: Some("Test".into()), ..Default::default() };
                u.set_email_blocking(kms, Some("test@example.org")).unwrap();
                u.set_phone_blocking(kms, Some("555-555-5555")).unwrap();
                insert(conn, kms, users::table, &mut u).unwrap();
                u
            }

            fn load(conn: &mut diesel::PgConnection, id: i32) -> User {
                users::table.find(id).select(User::as_select()).first(conn).unwrap()
            }

            #[test]
            $(#[$attr])*
            fn create_and_read() {
                let (_db, mut conn) = PgDb::new();
                let kms = $kms;
                let u = create(&mut conn, &kms);
                assert_eq!(kms.stats().encrypts(), 2);
                assert_eq!(calls(&kms, Operation::Encrypt), 2, "both keys wrapped by the {} provider", stringify!($kind));
                assert!(u.encrypted_kms_key.stored().unwrap().starts_with("v1:"));
                let reader = $kms;
                let loaded = load(&mut conn, u.id.unwrap());
                assert_eq!(loaded.email_blocking(&reader).unwrap().as_deref(), Some("test@example.org"));
                assert_eq!(loaded.phone_blocking(&reader).unwrap().as_deref(), Some("555-555-5555"));
                assert_eq!(reader.stats().decrypts(), 2);
                assert_eq!(calls(&reader, Operation::Decrypt), 2);
                let provider = reader
                    .provider_for(&kms_fields::KeyVersion { key_id: KEY_ID.into(), provider: None })
                    .unwrap();
                assert_eq!(kms_fields::Provider::kind(&*provider), ProviderKind::$kind);
            }

            #[test]
            $(#[$attr])*
            fn rotate() {
                let (_db, mut conn) = PgDb::new();
                let kms = $kms;
                let id = create(&mut conn, &kms).id.unwrap();
                let mut u = load(&mut conn, id);
                let before = u.clone();
                rotate_kms_key(&mut conn, &kms, &mut u, User::KMS_KEY).unwrap();
                assert_ne!(u.email_enc, before.email_enc);
                assert_ne!(u.encrypted_kms_key.stored(), before.encrypted_kms_key.stored());
                rotate_kms_key(&mut conn, &kms, &mut u, User::KMS_KEY_PHONE).unwrap();
                assert_ne!(u.phone_enc, before.phone_enc);
                let again = load(&mut conn, id);
                assert_eq!(again.email_blocking(&$kms).unwrap().as_deref(), Some("test@example.org"));
                assert_eq!(again.phone_blocking(&$kms).unwrap().as_deref(), Some("555-555-5555"));
            }

            #[test]
            $(#[$attr])*
            fn versions() {
                let (_db, mut conn) = PgDb::new();
                let kms = $kms;
                let id = create(&mut conn, &kms).id.unwrap();
                let mut v2: UserV2 = users::table.find(id).select(UserV2::as_select()).first(&mut conn).unwrap();
                assert_eq!(v2.email_blocking(&kms).unwrap().as_deref(), Some("test@example.org"));
                rotate_kms_key(&mut conn, &kms, &mut v2, UserV2::KMS_KEY).unwrap();
                assert!(v2.encrypted_kms_key.stored().unwrap().starts_with("v2:"));
                let again: UserV2 = users::table.find(id).select(UserV2::as_select()).first(&mut conn).unwrap();
                assert_eq!(again.email_blocking(&$kms).unwrap().as_deref(), Some("test@example.org"));
                let v3 = format!("v3:{}", &again.encrypted_kms_key.stored().unwrap()[3..]);
                diesel::update(users::table.find(id)).set(users::encrypted_kms_key.eq(&v3)).execute(&mut conn).unwrap();
                let row: UserV2 = users::table.find(id).select(UserV2::as_select()).first(&mut conn).unwrap();
                assert_eq!(row.email_blocking(&$kms).unwrap_err().to_string(), "Version not active: 3");
            }

            #[test]
            $(#[$attr])*
            fn bad_context() {
                let (_db, mut conn) = PgDb::new();
                let kms = $kms;
                let mut a = Account { name: Some("Alice".into()), ..Default::default() };
                a.set_email_blocking(&kms, Some("alice@example.org")).unwrap();
                insert(&mut conn, &kms, users::table, &mut a).unwrap();
                let mut row: Account = users::table.find(a.id.unwrap()).select(Account::as_select()).first(&mut conn).unwrap();
                row.name = Some("Mallory".into());
                assert_eq!(row.email_blocking(&$kms).unwrap_err().kind(), ErrorKind::DecryptionFailed);
                // and moving a row's key to another row fails too
                let b = create(&mut conn, &kms);
                let c = create(&mut conn, &kms);
                diesel::update(users::table.find(c.id.unwrap()))
                    .set((users::email_enc.eq(&b.email_enc), users::encrypted_kms_key.eq(b.encrypted_kms_key.stored())))
                    .execute(&mut conn)
                    .unwrap();
                assert_eq!(load(&mut conn, c.id.unwrap()).email_blocking(&$kms).unwrap_err().kind(), ErrorKind::DecryptionFailed);
            }
        }
    };
}

provider_suite!(test_key, Test, "insecure-test-key", test_kms());
provider_suite!(local_key, Local, "local/suite", local_kms());
// the key (id and material) scripts/moto_kms.py creates: the one the Ruby gems' AWS vectors used
provider_suite!(
    aws_moto,
    Aws,
    "arn:aws:kms:us-east-1:123456789012:key/bdd640fb-0667-4ad1-9c80-317fa3b1799d",
    aws_kms()
);
provider_suite!(
    vault_openbao,
    Vault,
    "vault/users",
    vault_kms(),
    #[cfg_attr(
        kmsf_no_vault,
        ignore = "KMS_FIELDS_VAULT_URL is not set: scripts/test.sh starts an OpenBao dev server"
    )]
);
provider_suite!(
    gcp_drongo,
    Gcp,
    "projects/kmsf/locations/global/keyRings/suite/cryptoKeys/users",
    gcp_kms(KEY_ID)
);

/// Issue 19.1 on moto: a database writer stores a data key they know, wrapped under a KMS key
/// they control with the record's context. Decrypt names the model's key id and ReEncrypt
/// its source key id, so neither a read nor a re-wrap opens it, even though the application's
/// credentials may use the attacker's key.
#[test]
fn aws_strict_mode_refuses_a_blob_of_another_key() {
    use kms_fields::{KeySpec, Provider, StoredKey};
    let kms = aws_kms();
    let app_key = kms_fields_tests::moto_key();
    let attacker_key = kms_fields_tests::moto_key();
    let ctx = EncryptionContext::for_model("User", 7);
    let forged = kms_fields::blocking::block_on(async {
        let client = kms_fields_tests::moto_client().await;
        let p = kms_fields::provider::aws::AwsProvider::new(client);
        p.wrap(&attacker_key, &[7u8; 32], Some(&ctx)).await.unwrap()
    })
    .unwrap();
    let stored = StoredKey::new(1, forged).encode();
    let spec = KeySpec::new().key_id(&app_key);
    let ctx_fn = |_v: u32| Ok(Some(ctx.clone()));
    let e = kms_fields::blocking::block_on(kms.decrypt(&spec, None, &stored, &ctx_fn))
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::AccessDenied | ErrorKind::DecryptionFailed
        ),
        "{e}"
    );
    // a rotation to v2 must not launder it under the real key
    let spec2 = KeySpec::new()
        .key_id(&app_key)
        .version(2)
        .previous_version(1, &app_key);
    let e = kms_fields::blocking::block_on(kms.rewrap(&spec2, None, &stored, &ctx_fn))
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::AccessDenied | ErrorKind::DecryptionFailed
        ),
        "{e}"
    );
    // the application's own values still open and re-wrap
    let own = kms_fields::blocking::block_on(kms.encrypt(&spec, None, &[9u8; 32], &ctx_fn))
        .unwrap()
        .unwrap();
    let pt = kms_fields::blocking::block_on(kms.decrypt(&spec, None, &own, &ctx_fn))
        .unwrap()
        .unwrap();
    assert_eq!(&pt[..], &[9u8; 32]);
    kms_fields::blocking::block_on(kms.rewrap(&spec2, None, &own, &ctx_fn))
        .unwrap()
        .unwrap();
}
