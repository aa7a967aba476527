//! Rails interoperability: every row kms_encrypted + lockbox wrote (shared/vectors) loaded into
//! real SQLite and Postgres tables exactly as stored and read through Diesel models in Lockbox
//! mode; rows written here checked by an independent decoder; kms_rails values migrated.

use diesel::prelude::*;
use kms_fields::{ErrorKind, Kms};
use kms_fields_tests::db::{PgDb, SqliteDb, TestDb};
use kms_fields_tests::models::{
    LockboxUser, LockboxUserAws, LockboxUserV2, RAILS_KEY_ID, RailsUser,
};
use kms_fields_tests::schema::{lockbox_users, users};
use kms_fields_tests::{moto_kms, moto_url, python, script, vectors};
use serde_json::Value;

fn set(name: &str) -> Value {
    vectors()["vector_sets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()
        .clone()
}

macro_rules! vector_suite {
    ($backend:ident, $db:ty) => {
        mod $backend {
            use super::*;
            type Conn = <$db as TestDb>::Conn;

            /// Insert a vector set's rows exactly as SQLite stored them.
            fn load(conn: &mut Conn, set: &Value) {
                for row in set["rows"].as_array().unwrap() {
                    let c = &row["columns"];
                    diesel::insert_into(lockbox_users::table)
                        .values((
                            lockbox_users::id.eq(row["id"].as_i64().unwrap() as i32),
                            lockbox_users::email_ciphertext.eq(c["email_ciphertext"].as_str()),
                            lockbox_users::phone_ciphertext.eq(c["phone_ciphertext"].as_str()),
                            lockbox_users::encrypted_kms_key.eq(c["encrypted_kms_key"].as_str()),
                            lockbox_users::encrypted_kms_key_phone
                                .eq(c["encrypted_kms_key_phone"].as_str()),
                        ))
                        .execute(conn)
                        .unwrap();
                }
            }

            macro_rules! check_rows {
                ($model:ty, $conn:expr, $set:expr, $kms:expr) => {{
                    let rows: Vec<$model> = lockbox_users::table
                        .order(lockbox_users::id)
                        .select(<$model>::as_select())
                        .load($conn)
                        .unwrap();
                    let expected = $set["rows"].as_array().unwrap();
                    assert_eq!(rows.len(), expected.len());
                    for (row, want) in rows.iter().zip(expected) {
                        assert_eq!(row.id.unwrap() as i64, want["id"].as_i64().unwrap());
                        assert_eq!(
                            row.email_blocking($kms).unwrap().as_deref(),
                            want["plaintexts"]["email"].as_str(),
                            "{} row {}",
                            $set["name"],
                            want["id"]
                        );
                        assert_eq!(
                            row.phone_blocking($kms).unwrap().as_deref(),
                            want["plaintexts"]["phone"].as_str(),
                            "{} row {}",
                            $set["name"],
                            want["id"]
                        );
                        if let Some(dk) = want["data_keys_hex"]["kms_key"].as_str() {
                            assert_eq!(
                                hex::encode(
                                    row.kms_key_blocking($kms).unwrap().unwrap().expose_secret()
                                ),
                                dk
                            );
                        }
                    }
                    rows.len()
                }};
            }

            #[test]
            fn insecure_v1_every_row() {
                let (_db, mut conn) = <$db>::new();
                let s = set("insecure_v1");
                load(&mut conn, &s);
                assert_eq!(check_rows!(LockboxUser, &mut conn, s, &Kms::new()), 10);
            }

            #[test]
            fn insecure_v2_every_row_with_previous_versions() {
                let (_db, mut conn) = <$db>::new();
                let s = set("insecure_v2");
                load(&mut conn, &s);
                assert_eq!(check_rows!(LockboxUserV2, &mut conn, s, &Kms::new()), 12);
                // the v1-only reader fails on the rotated rows with exactly the gem's message
                let r1: LockboxUser = lockbox_users::table
                    .find(1)
                    .select(LockboxUser::as_select())
                    .first(&mut conn)
                    .unwrap();
                assert_eq!(
                    r1.email_blocking(&Kms::new()).unwrap_err().to_string(),
                    "Version not active: 2"
                );
            }

            #[test]
            fn aws_v1_every_row_through_moto() {
                let (_db, mut conn) = <$db>::new();
                let s = set("aws_v1");
                load(&mut conn, &s);
                assert_eq!(check_rows!(LockboxUserAws, &mut conn, s, &moto_kms()), 10);
            }

            #[test]
            fn a_lockbox_row_written_here_reads_back_in_the_ruby_readers_model() {
                let (_db, mut conn) = <$db>::new();
                let kms = Kms::new();
                let mut u = LockboxUser::default();
                u.set_email_blocking(&kms, Some("rust@example.org"))
                    .unwrap();
                u.set_phone_blocking(&kms, Some("")).unwrap();
                kms_fields_diesel::insert(&mut conn, &kms, lockbox_users::table, &mut u).unwrap();
                let v2: LockboxUserV2 = lockbox_users::table
                    .find(u.id.unwrap())
                    .select(LockboxUserV2::as_select())
                    .first(&mut conn)
                    .unwrap();
                assert_eq!(
                    v2.email_blocking(&Kms::new()).unwrap().as_deref(),
                    Some("rust@example.org")
                );
                assert_eq!(v2.phone_blocking(&Kms::new()).unwrap().as_deref(), Some(""));
            }
        }
    };
}

vector_suite!(sqlite, SqliteDb);
vector_suite!(postgres, PgDb);

/// Rows written in Lockbox mode, decoded by tests/scripts/lockbox_check.py (Python
/// `cryptography`, written from the documented format, sharing no code with kms-fields).
#[test]
fn lockbox_rows_pass_an_independent_decoder() {
    let (db, mut conn) = SqliteDb::new();
    let kms = Kms::new();
    let cases = [
        (Some("test@example.org"), Some("555-555-5555")),
        (Some("José Müller <jose@例え.jp> 🙂"), None),
        (None, Some("nul\u{0}byte")),
        (Some(""), Some("x".repeat(5000).leak() as &str)),
        (None, None),
    ];
    let mut expected = serde_json::Map::new();
    for (email, phone) in cases {
        let mut u = LockboxUser::default();
        u.set_email_blocking(&kms, email).unwrap();
        u.set_phone_blocking(&kms, phone).unwrap();
        kms_fields_diesel::insert(&mut conn, &kms, lockbox_users::table, &mut u).unwrap();
        expected.insert(
            u.id.unwrap().to_string(),
            serde_json::json!({"email": email, "phone": phone}),
        );
    }
    drop(conn);
    let out = python()
        .arg(script("lockbox_check.py"))
        .arg(db.path())
        .arg(Value::Object(expected).to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok: 5 rows"));
}

/// kms_rails values (made by tests/scripts/kms_rails_value.py exactly as the gem makes them:
/// GenerateDataKey on moto, AES-256-CBC, MessagePack) read, then migrated by a key rotation.
#[test]
fn kms_rails_values_read_and_migrate() {
    let key_id = kms_fields_tests::moto_key();
    RAILS_KEY_ID.set(key_id.clone()).unwrap();
    let out = python()
        .arg(script("kms_rails_value.py"))
        .args([
            moto_url().as_str(),
            key_id.as_str(),
            "purpose",
            "test",
            "1 Main St, Springfield",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value = hex::decode(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert_eq!(value[0], 0x83, "a MessagePack map of 3");

    let (_db, mut conn) = PgDb::new();
    diesel::insert_into(users::table)
        .values((users::id.eq(1), users::address_enc.eq(&value)))
        .execute(&mut conn)
        .unwrap();
    let kms = moto_kms();
    let row: RailsUser = users::table
        .find(1)
        .select(RailsUser::as_select())
        .first(&mut conn)
        .unwrap();
    assert_eq!(
        row.address_blocking(&kms).unwrap().as_deref(),
        Some("1 Main St, Springfield")
    );
    assert_eq!(kms.stats().decrypts(), 1);

    // the migration path: a rotation rewrites it in the per-record format
    let mut row = row;
    kms_fields_diesel::rotate_kms_key(&mut conn, &kms, &mut row, 0).unwrap();
    let migrated: RailsUser = users::table
        .find(1)
        .select(RailsUser::as_select())
        .first(&mut conn)
        .unwrap();
    assert!(
        migrated
            .encrypted_kms_key
            .stored()
            .unwrap()
            .starts_with("v1:")
    );
    assert_ne!(migrated.address_enc.as_deref(), Some(&value[..]));
    let fresh = moto_kms();
    assert_eq!(
        migrated.address_blocking(&fresh).unwrap().as_deref(),
        Some("1 Main St, Springfield")
    );

    // a wrong kms_rails context fails as decryption failed; tampered CBC input never panics
    let mut bad = value.clone();
    let n = bad.len();
    for i in [n - 1, n - 17, n - 20] {
        bad[i] ^= 0x5a;
        diesel::update(users::table.find(1))
            .set((
                users::address_enc.eq(&bad),
                users::encrypted_kms_key.eq(None::<String>),
            ))
            .execute(&mut conn)
            .unwrap();
        let r: RailsUser = users::table
            .find(1)
            .select(RailsUser::as_select())
            .first(&mut conn)
            .unwrap();
        let _ = r.address_blocking(&kms); // an error, or garbage that CBC cannot detect — never a panic
    }
    diesel::update(users::table.find(1))
        .set(users::address_enc.eq(&value[..value.len() - 5]))
        .execute(&mut conn)
        .unwrap();
    let r: RailsUser = users::table
        .find(1)
        .select(RailsUser::as_select())
        .first(&mut conn)
        .unwrap();
    assert_eq!(
        r.address_blocking(&kms).unwrap_err().kind(),
        ErrorKind::BadFormat
    );
}

/// The gem's own ActiveJob spec vectors (its mock KMS: the "blob" is the reversed MessagePack of
/// [key_id, context, data key]) decrypt through the kms_rails reader.
#[test]
fn kms_rails_gem_spec_vectors() {
    use async_trait::async_trait;
    use kms_fields::kms_rails::Envelope;
    use kms_fields::{EncryptionContext, KeyVersion, Provider, ProviderKind};

    #[derive(Debug)]
    struct GemMockKms;
    #[async_trait]
    impl Provider for GemMockKms {
        fn kind(&self) -> ProviderKind {
            ProviderKind::Aws
        }
        async fn wrap(
            &self,
            _: &str,
            _: &[u8],
            _: Option<&EncryptionContext>,
        ) -> kms_fields::Result<Vec<u8>> {
            unreachable!()
        }
        async fn unwrap(
            &self,
            _: &str,
            ct: &[u8],
            _: Option<&EncryptionContext>,
        ) -> kms_fields::Result<zeroize::Zeroizing<Vec<u8>>> {
            let forward: Vec<u8> = ct.iter().rev().copied().collect();
            let (_key_id, _ctx, key): (String, Option<String>, serde_bytes_like::Bytes) =
                rmp_serde::from_slice(&forward).unwrap();
            Ok(zeroize::Zeroizing::new(key.0))
        }
    }
    mod serde_bytes_like {
        pub struct Bytes(pub Vec<u8>);
        impl<'de> serde::Deserialize<'de> for Bytes {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = Bytes;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("bytes")
                    }
                    fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                        Ok(Bytes(v.to_vec()))
                    }
                }
                d.deserialize_bytes(V)
            }
        }
    }

    let kms = Kms::builder().aws(GemMockKms).build();
    let key = KeyVersion {
        key_id: "alias/s".into(),
        provider: None,
    };
    let foo = Envelope::from_base64_parts(
        "JXosoJ55meLuaURZzVjqf8JNrMQHE+MhAgGm9WAgPKEgxMBxoZM=",
        "/NfACho6+aNyRQzZxFdpdg==",
        "gYiFaMUIqgjhJOSQfuJGeA==",
    )
    .unwrap();
    let pt = kms_fields::blocking::run(foo.decrypt(&kms, &key, None)).unwrap();
    assert_eq!(&pt[..], b"foo");
    let packed = Envelope::from_base64_parts(
        "NcWpobONtzmHoe7G2wH7v3fcgdqUbYUPehGXuHq5q0cgxMBzL3NhaWxhp5M=",
        "r2ZIjyxAs3ZZAlLOdOFqdg==",
        "Pif4qYHilkRiupLljJAyng==",
    )
    .unwrap();
    let pt = kms_fields::blocking::run(packed.decrypt(&kms, &key, None)).unwrap();
    let map: std::collections::BTreeMap<String, String> = rmp_serde::from_slice(&pt).unwrap();
    assert_eq!(
        map,
        [
            ("a".to_string(), "b".to_string()),
            ("c".to_string(), "d".to_string())
        ]
        .into()
    );
}
