//! Rails interoperability: every row kms_encrypted + lockbox wrote (shared/vectors) loaded into
//! real SQLite and Postgres tables exactly as stored and read through Diesel models in Lockbox
//! mode; rows written here checked by an independent decoder; kms_rails values migrated.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{Datelike, NaiveDate, NaiveTime, TimeDelta, TimeZone, Timelike, Utc};
use diesel::prelude::*;
use kms_fields::codec::lockbox::JsonValue;
use kms_fields::{ErrorKind, Kms};
use kms_fields_tests::db::{PgDb, SqliteDb, TestDb};
use kms_fields_tests::models::{
    LockboxProfile, LockboxUser, LockboxUserAws, LockboxUserV2, RAILS_KEY_ID, RailsUser,
};
use kms_fields_tests::schema::{lockbox_profiles, lockbox_users, users};
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
                    let mut keys_checked = 0usize;
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
                        // both data keys, as the gem logged them; no key column, no key
                        let keys = [
                            ("kms_key", row.kms_key_blocking($kms).unwrap()),
                            ("kms_key_phone", row.kms_key_phone_blocking($kms).unwrap()),
                        ];
                        for (name, key) in keys {
                            let got = key.map(|k| hex::encode(k.expose_secret()));
                            assert_eq!(
                                got.as_deref(),
                                want["data_keys_hex"][name].as_str(),
                                "{} row {} {name}",
                                $set["name"],
                                want["id"]
                            );
                            keys_checked += usize::from(got.is_some());
                        }
                    }
                    let in_vectors: usize = expected
                        .iter()
                        .map(|r| {
                            ["kms_key", "kms_key_phone"]
                                .iter()
                                .filter(|k| r["data_keys_hex"][**k].is_string())
                                .count()
                        })
                        .sum();
                    assert!(in_vectors > 0);
                    assert_eq!(keys_checked, in_vectors, "every logged data key compared");
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

/// One row of [`LockboxProfile`]: the values given to its setters.
#[derive(Debug, Clone, Default)]
struct Profile {
    age: Option<i64>,
    score: Option<f64>,
    active: Option<bool>,
    born_on: Option<NaiveDate>,
    signed_at: Option<chrono::DateTime<Utc>>,
    opens_at: Option<NaiveTime>,
    balance: Option<&'static str>,
    data: Option<Value>,
    ssn: Option<&'static str>,
    motto: Option<&'static str>,
}

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, ns: i64) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap() + TimeDelta::nanoseconds(ns)
}

/// Ordinary values, the edges of each type, and NULLs.
fn profiles() -> Vec<Profile> {
    vec![
        Profile {
            age: Some(42),
            score: Some(10.12345678),
            active: Some(true),
            born_on: NaiveDate::from_ymd_opt(1990, 7, 14),
            signed_at: Some(at(2024, 1, 2, 3, 4, 5, 123_456_789)),
            opens_at: NaiveTime::from_hms_micro_opt(9, 30, 0, 250_000),
            balance: Some("1234.50"),
            data: Some(serde_json::json!({"a": 1, "b": "hi"})),
            ssn: Some("123-45-6789"),
            motto: Some("Carpe diem"),
        },
        Profile {
            age: Some(i64::MIN),
            score: Some(-0.0),
            active: Some(false),
            born_on: NaiveDate::from_ymd_opt(999, 1, 1),
            signed_at: Some(at(1969, 12, 31, 23, 59, 59, 999_999_999)),
            opens_at: Some(NaiveTime::MIN),
            balance: Some("-00.000010000"),
            data: Some(serde_json::json!(["<script>&", "\u{2028}", null, 1.5, {"k": true}])),
            ssn: Some("exactly16bytes!!"),
            motto: Some(""),
        },
        Profile {
            age: Some(i64::MAX),
            score: Some(f64::INFINITY),
            active: Some(true),
            born_on: NaiveDate::from_ymd_opt(10000, 2, 29),
            signed_at: Some(at(9999, 12, 31, 23, 59, 59, 0)),
            opens_at: NaiveTime::from_hms_nano_opt(23, 59, 59, 999_999_999),
            balance: Some("500000"),
            data: Some(serde_json::json!("José 🙂")),
            ssn: Some("ünïcødé ✓"),
            motto: Some("thirty-three bytes, one too many!"),
        },
        Profile {
            score: Some(f64::NAN),
            balance: Some("NaN"),
            data: Some(serde_json::json!({})),
            ..Default::default()
        },
        Profile::default(),
    ]
}

impl Profile {
    /// The row as lockbox_check.py takes it (see its usage), built from the values alone.
    fn expected(&self) -> Value {
        serde_json::json!({
            "age": self.age,
            "score": self.score.map(|f| f.to_string()),
            "active": self.active,
            "born_on": self.born_on.map(|d| (d.year(), d.month(), d.day())),
            "signed_at": self.signed_at.map(|t| [
                i64::from(t.year()), i64::from(t.month()), i64::from(t.day()),
                i64::from(t.hour()), i64::from(t.minute()), i64::from(t.second()),
                i64::from(t.nanosecond()),
            ]),
            "opens_at": self.opens_at.map(|t| (t.hour(), t.minute(), t.second(), t.nanosecond())),
            "balance": self.balance,
            "data": self.data,
            "ssn": self.ssn,
            "motto": self.motto,
        })
    }

    /// How many of its values are not NULL.
    fn values(&self) -> usize {
        self.expected()
            .as_object()
            .unwrap()
            .values()
            .filter(|v| !v.is_null())
            .count()
    }

    fn write(&self, kms: &Kms) -> LockboxProfile {
        let mut m = LockboxProfile::default();
        m.set_age_blocking(kms, self.age.as_ref()).unwrap();
        m.set_score_blocking(kms, self.score.as_ref()).unwrap();
        m.set_active_blocking(kms, self.active.as_ref()).unwrap();
        m.set_born_on_blocking(kms, self.born_on.as_ref()).unwrap();
        m.set_signed_at_blocking(kms, self.signed_at.as_ref())
            .unwrap();
        m.set_opens_at_blocking(kms, self.opens_at.as_ref())
            .unwrap();
        m.set_balance_blocking(kms, self.balance).unwrap();
        m.set_data_blocking(kms, self.data.clone().map(JsonValue::from).as_ref())
            .unwrap();
        m.set_ssn_blocking(kms, self.ssn).unwrap();
        m.set_motto_blocking(kms, self.motto).unwrap();
        m
    }

    /// Read every attribute of `m` and compare with these values (decimals as Lockbox writes
    /// them: `BigDecimal#to_s("F")`, given here as `balance_read`).
    fn assert_read(&self, m: &LockboxProfile, kms: &Kms, balance_read: Option<&str>) {
        assert_eq!(m.age_blocking(kms).unwrap(), self.age);
        assert_eq!(
            m.score_blocking(kms).unwrap().map(f64::to_bits),
            self.score.map(f64::to_bits),
            "{:?}",
            self.score
        );
        assert_eq!(m.active_blocking(kms).unwrap(), self.active);
        assert_eq!(m.born_on_blocking(kms).unwrap(), self.born_on);
        assert_eq!(m.signed_at_blocking(kms).unwrap(), self.signed_at);
        assert_eq!(m.opens_at_blocking(kms).unwrap(), self.opens_at);
        assert_eq!(m.balance_blocking(kms).unwrap().as_deref(), balance_read);
        assert_eq!(
            m.data_blocking(kms).unwrap(),
            self.data.clone().map(JsonValue::from)
        );
        assert_eq!(m.ssn_blocking(kms).unwrap().as_deref(), self.ssn);
        assert_eq!(m.motto_blocking(kms).unwrap().as_deref(), self.motto);
    }
}

/// `BigDecimal#to_s("F")` of the decimals in [`profiles`] (ruby/spec's examples, and the
/// one with its trailing zero dropped).
fn balance_as_lockbox_writes(input: Option<&str>) -> Option<&'static str> {
    input.map(|b| match b {
        "1234.50" => "1234.5",
        "-00.000010000" => "-0.00001",
        "500000" => "500000.0",
        "NaN" => "NaN",
        other => panic!("no Ruby answer recorded for {other}"),
    })
}

fn run_check(args: &[String], expected: serde_json::Map<String, Value>) -> String {
    let out = python()
        .arg(script("lockbox_check.py"))
        .args(args)
        .arg(Value::Object(expected).to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Typed attributes (integer, float, boolean, date, datetime, time, decimal, json) and padded
/// strings written in Lockbox mode through a Diesel model, read back through it, and decoded
/// from the stored rows by lockbox_check.py, which knows Lockbox's encodings independently.
macro_rules! typed_rows {
    ($name:ident, $db:ty, $source:expr) => {
        #[test]
        fn $name() {
            let (db, mut conn) = <$db>::new();
            let kms = Kms::new();
            let mut expected = serde_json::Map::new();
            let mut values = 0;
            for p in profiles() {
                let mut m = p.write(&kms);
                kms_fields_diesel::insert(&mut conn, &kms, lockbox_profiles::table, &mut m)
                    .unwrap();
                let id = m.id.unwrap();
                let back: LockboxProfile = lockbox_profiles::table
                    .find(id)
                    .select(LockboxProfile::as_select())
                    .first(&mut conn)
                    .unwrap();
                p.assert_read(&back, &Kms::new(), balance_as_lockbox_writes(p.balance));
                expected.insert(id.to_string(), p.expected());
                values += p.values();
            }
            assert_eq!(values, 33, "every value of profiles() but the NULLs");
            let mut args = vec!["--table".to_owned(), "lockbox_profiles".to_owned()];
            args.extend(($source)(&db));
            let stdout = run_check(&args, expected);
            assert!(
                stdout.contains(&format!(
                    "ok: 5 rows decoded independently ({values} values)"
                )),
                "{stdout}"
            );
        }
    };
}

typed_rows!(
    typed_lockbox_rows_on_sqlite_pass_an_independent_decoder,
    SqliteDb,
    |db: &SqliteDb| vec![db.path()]
);
typed_rows!(
    typed_lockbox_rows_on_postgres_pass_an_independent_decoder,
    PgDb,
    |db: &PgDb| vec![
        "--schema".to_owned(),
        db.schema.clone(),
        kms_fields_tests::db::pg_url(),
    ]
);

/// The other way: rows lockbox_check.py stores by Lockbox's rules (its own data keys and
/// nonces) read through the Diesel model.
#[test]
fn typed_lockbox_rows_written_by_an_independent_encoder_read_through_the_model() {
    let (db, conn) = SqliteDb::new();
    drop(conn);
    let rows: serde_json::Map<String, Value> = profiles()
        .iter()
        .enumerate()
        .map(|(i, p)| ((i + 1).to_string(), p.expected()))
        .collect();
    let stdout = run_check(
        &[
            "--write".into(),
            "--table".into(),
            "lockbox_profiles".into(),
            db.path(),
        ],
        rows,
    );
    assert!(stdout.contains("ok: wrote 5 rows"), "{stdout}");
    let mut conn = db.connect();
    let stored: Vec<LockboxProfile> = lockbox_profiles::table
        .order(lockbox_profiles::id)
        .select(LockboxProfile::as_select())
        .load(&mut conn)
        .unwrap();
    assert_eq!(stored.len(), 5);
    let kms = Kms::new();
    for (m, p) in stored.iter().zip(profiles()) {
        p.assert_read(m, &kms, balance_as_lockbox_writes(p.balance));
    }
    assert_eq!(
        kms.stats().decrypts(),
        4,
        "one unwrap per row that has values"
    );
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
    kms_fields_diesel::rotate_kms_key(&mut conn, &kms, &mut row, RailsUser::KMS_KEY).unwrap();
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

    // a wrong (or missing) kms_rails context fails as decryption failed: moto checks the
    // encryption context of Decrypt against the one GenerateDataKey bound
    let envelope = kms_fields::kms_rails::Envelope::parse(&value).unwrap();
    let key = kms_fields::KeyVersion {
        key_id: key_id.clone(),
        provider: None,
    };
    let right = kms_fields::blocking::run(envelope.decrypt(&kms, &key, Some(("purpose", "test"))));
    assert_eq!(&right.unwrap()[..], b"1 Main St, Springfield");
    for wrong in [Some(("purpose", "other")), Some(("other", "test")), None] {
        let e = kms_fields::blocking::run(envelope.decrypt(&kms, &key, wrong)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DecryptionFailed, "{wrong:?}: {e}");
    }

    // tampered CBC input never panics
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

    let kms = Kms::builder().insecure_test_key().aws(GemMockKms).build();
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

/// Issue 19.3: kms_rails values are read only while they are kms_rails values in form, every
/// failure after CBC is the same `DecryptionFailed` (no padding oracle through the error kind),
/// and `migrate_kms_rails_table` moves a table off the format and says when it is done.
#[test]
fn kms_rails_downgrades_refused_and_the_table_migration_finishes() {
    use kms_fields_diesel::rotation::{TableOptions, TableSpec, migrate_kms_rails_table};
    use kms_fields_tests::kms_rails_value;

    let key_id = kms_fields_tests::moto_key();
    RAILS_KEY_ID.set(key_id.clone()).unwrap();
    let (_db, mut conn) = PgDb::new();
    let kms = moto_kms();
    let read = |conn: &mut PgConnection, id: i32| {
        let row: RailsUser = users::table
            .find(id)
            .select(RailsUser::as_select())
            .first(conn)
            .unwrap();
        row.address_blocking(&kms)
    };
    let addresses: Vec<String> = (1..=4)
        .map(|i| format!("{i} Main St, Springfield"))
        .collect();
    for (i, a) in addresses.iter().enumerate() {
        let value = kms_rails_value(&key_id, ("purpose", "test"), a);
        diesel::insert_into(users::table)
            .values((users::id.eq(i as i32 + 1), users::address_enc.eq(&value)))
            .execute(&mut conn)
            .unwrap();
    }
    // a record written natively (its key column set)
    let mut native = RailsUser {
        id: Some(10),
        ..Default::default()
    };
    native
        .set_address_blocking(&kms, Some("10 Native Rd"))
        .unwrap();
    kms_fields_diesel::insert(&mut conn, &kms, users::table, &mut native).unwrap();
    assert_eq!(
        read(&mut conn, 10).unwrap().as_deref(),
        Some("10 Native Rd")
    );

    // (a) a writer NULLs the native record's key column: its value is not a kms_rails value in
    // form, so it is refused — never decrypted as CBC
    diesel::update(users::table.find(10))
        .set(users::encrypted_kms_key.eq(None::<String>))
        .execute(&mut conn)
        .unwrap();
    let e = read(&mut conn, 10).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadFormat, "{e}");
    assert!(e.to_string().contains("not a kms_rails value"), "{e}");
    diesel::update(users::table.find(10))
        .set(users::encrypted_kms_key.eq(native.encrypted_kms_key.stored()))
        .execute(&mut conn)
        .unwrap();

    // (b) bits flipped through the IV change the first plaintext block without touching the
    // padding: the garbage that decodes to no valid string fails exactly as bad padding does
    let value = kms_rails_value(&key_id, ("purpose", "test"), "1 Main St");
    let iv_at = value
        .windows(5)
        .position(|w| w == b"\xa2iv\xc4\x10")
        .unwrap()
        + 5;
    let mut flipped = value.clone();
    flipped[iv_at] ^= 0x80; // '1' becomes 0xb1: not UTF-8
    // 27 bytes: two blocks, five bytes of padding 0x05
    let mut bad_padding =
        kms_rails_value(&key_id, ("purpose", "test"), "1 Main St, Springfield, US");
    let n = bad_padding.len();
    bad_padding[n - 17] ^= 0x01; // the first block's last byte: the last padding byte becomes 4
    diesel::insert_into(users::table)
        .values((users::id.eq(20), users::address_enc.eq(&flipped)))
        .execute(&mut conn)
        .unwrap();
    diesel::insert_into(users::table)
        .values((users::id.eq(21), users::address_enc.eq(&bad_padding)))
        .execute(&mut conn)
        .unwrap();
    let e20 = read(&mut conn, 20).unwrap_err();
    let e21 = read(&mut conn, 21).unwrap_err();
    assert_eq!(e20.kind(), ErrorKind::DecryptionFailed, "{e20}");
    assert_eq!(e21.kind(), ErrorKind::DecryptionFailed, "{e21}");
    assert_eq!(e20.message(), e21.message());
    diesel::delete(users::table.filter(users::id.ge(20)))
        .execute(&mut conn)
        .unwrap();

    // (c) the migration: one slice first (not finished), then the rest
    let t = TableSpec::of_model(RailsUser::KMS_KEY).unwrap();
    let slice = migrate_kms_rails_table(
        &mut conn,
        &kms,
        &t,
        TableOptions {
            batch_size: 1,
            max_batches: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((slice.done, slice.remaining), (1, 3), "{slice:?}");
    let calls = kms.stats().decrypts();
    let summary = migrate_kms_rails_table(&mut conn, &kms, &t, TableOptions::default()).unwrap();
    assert_eq!((summary.done, summary.remaining), (3, 0), "{summary:?}");
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert_eq!(
        kms.stats().decrypts() - calls,
        3,
        "one Decrypt per kms_rails value"
    );
    for (i, a) in addresses.iter().enumerate() {
        let row: RailsUser = users::table
            .find(i as i32 + 1)
            .select(RailsUser::as_select())
            .first(&mut conn)
            .unwrap();
        assert!(row.encrypted_kms_key.stored().unwrap().starts_with("v1:"));
        assert_eq!(
            row.address_blocking(&moto_kms()).unwrap().as_deref(),
            Some(a.as_str())
        );
    }
    // the native record was left alone, and a rerun has nothing to do
    assert_eq!(
        read(&mut conn, 10).unwrap().as_deref(),
        Some("10 Native Rd")
    );
    let again = migrate_kms_rails_table(&mut conn, &kms, &t, TableOptions::default()).unwrap();
    assert_eq!((again.done, again.remaining), (0, 0));
}

/// Issue 17.6: a Ruby string may hold bytes that are not UTF-8 (Lockbox encrypts them as they
/// are): `email()` refuses such a row with a `Codec` error, `email_bytes()` reads it, and the
/// repaired text is written back through the usual setter.
#[test]
fn non_utf8_lockbox_strings_read_as_bytes_and_are_repaired() {
    use kms_fields::KmsModel;
    let (_db, mut conn) = SqliteDb::new();
    let kms = Kms::new();
    let latin1 = b"Jos\xe9@example.org".to_vec(); // ISO-8859-1, as an old Ruby app stored it
    let mut u = LockboxUser::default();
    let email = LockboxUser::ATTRIBUTES
        .iter()
        .position(|a| a.name == "email")
        .unwrap();
    // what Lockbox writes for that String: its bytes, encrypted as they are
    kms_fields::blocking::run(kms_fields::model::write_attribute::<
        LockboxUser,
        kms_fields::codec::Binary,
    >(&mut u, &kms, email, Some(&latin1)))
    .unwrap();
    kms_fields_diesel::insert(&mut conn, &kms, lockbox_users::table, &mut u).unwrap();
    let id = u.id.unwrap();
    let load = |conn: &mut SqliteConnection| -> LockboxUser {
        lockbox_users::table
            .find(id)
            .select(LockboxUser::as_select())
            .first(conn)
            .unwrap()
    };
    let mut loaded = load(&mut conn);
    let e = loaded.email_blocking(&kms).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Codec, "{e}");
    let bytes = loaded.email_bytes_blocking(&kms).unwrap().unwrap();
    assert_eq!(bytes, latin1);
    let repaired: String = bytes.iter().map(|&b| b as char).collect(); // Latin-1 → UTF-8
    loaded.set_email_blocking(&kms, Some(&repaired)).unwrap();
    kms_fields_diesel::update_encrypted(&mut conn, &kms, &mut loaded).unwrap();
    assert_eq!(
        load(&mut conn).email_blocking(&kms).unwrap().as_deref(),
        Some("José@example.org")
    );
}
