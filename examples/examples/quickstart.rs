//! The main job, end to end, with no services: a SQLite file and the offline test key.
//!
//!     cargo run --example quickstart
//!
//! Creates the `users` table (migrations), saves users with an encrypted email and phone
//! (each record gets its own data keys, wrapped by the "KMS"), reads them back, rotates one
//! user's key, and prints what the database actually stores.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_migrations::MigrationHarness;
use kms_fields::{Kms, KmsEncrypted};
use kms_fields_diesel::KmsKey;

diesel::table! {
    users (id) {
        id -> Integer,
        name -> Nullable<Text>,
        email_enc -> Nullable<Text>,
        phone_enc -> Nullable<Text>,
        encrypted_kms_key -> Nullable<Text>,
        encrypted_kms_key_phone -> Nullable<Text>,
    }
}

/// A user with two keys: `kms_key` (email) and `kms_key_phone` (phone), so decryption of the
/// email and the phone can be granted separately.
// clippy takes the two `key_id = "…"` of the two keys for a duplicated attribute
#[allow(clippy::duplicated_attributes)]
#[derive(Debug, Clone, Default, Queryable, Selectable, Insertable, KmsEncrypted)]
#[diesel(table_name = users)]
#[kms(key(key_id = "insecure-test-key"))]
#[kms(key(name = "phone", key_id = "insecure-test-key"))]
struct User {
    #[diesel(deserialize_as = i32)]
    id: Option<i32>,
    name: Option<String>,
    #[kms(encrypted)]
    email_enc: Option<String>,
    #[kms(encrypted, key = "phone")]
    phone_enc: Option<String>,
    encrypted_kms_key: KmsKey,
    encrypted_kms_key_phone: KmsKey,
}

fn short(s: Option<&str>) -> String {
    match s {
        None => "NULL".into(),
        Some(s) if s.len() > 44 => format!("{}…", &s[..44]),
        Some(s) => s.into(),
    }
}

fn show(conn: &mut SqliteConnection, title: &str) -> Result<(), Box<dyn std::error::Error>> {
    println!("\n{title}");
    let rows: Vec<User> = users::table
        .order(users::id)
        .select(User::as_select())
        .load(conn)?;
    for u in rows {
        println!(
            "  id={} name={:?}",
            u.id.unwrap_or_default(),
            u.name.as_deref().unwrap_or("")
        );
        println!(
            "    email_enc               = {}",
            short(u.email_enc.as_deref())
        );
        println!(
            "    phone_enc               = {}",
            short(u.phone_enc.as_deref())
        );
        println!(
            "    encrypted_kms_key       = {}",
            short(u.encrypted_kms_key.stored())
        );
        println!(
            "    encrypted_kms_key_phone = {}",
            short(u.encrypted_kms_key_phone.stored())
        );
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join("kms-fields-quickstart.sqlite3");
    let _ = std::fs::remove_file(&path);
    let mut conn = SqliteConnection::establish(&path.display().to_string())?;
    conn.batch_execute("PRAGMA journal_mode = WAL")?;
    conn.run_pending_migrations(kms_fields_migrations::SQLITE)
        .map_err(|e| e.to_string())?;
    println!(
        "database: {} (table users created by the migrations)",
        path.display()
    );

    // One handle to the key management services; here only the offline test key is used.
    let kms = Kms::new();

    // Save: set plaintexts (encrypted locally under a fresh per-record data key), then insert.
    // On SQLite the data keys are wrapped right after the INSERT, inside its transaction, with
    // the new id in the encryption context {"model_name":"User","model_id":"<id>"}.
    for (name, email, phone) in [
        ("Ada", "ada@example.org", "+44 20 7946 0018"),
        ("Grace", "grace@example.org", "+1 202 555 0147"),
        ("Linus", "linus@example.org", "+358 9 1234 5678"),
    ] {
        let mut user = User {
            name: Some(name.into()),
            ..Default::default()
        };
        user.set_email_blocking(&kms, Some(email))?;
        user.set_phone_blocking(&kms, Some(phone))?;
        let flow = kms_fields_diesel::insert(&mut conn, &kms, users::table, &mut user)?;
        println!(
            "saved {name} (id {}) with the {flow:?} flow",
            user.id.unwrap_or_default()
        );
    }
    println!(
        "KMS calls so far: {} Encrypt (one per record key), {} Decrypt",
        kms.stats().encrypts(),
        kms.stats().decrypts()
    );

    show(&mut conn, "what the database stores:")?;

    // Read back: one Decrypt per key of each record, cached in the loaded record.
    println!("\nread back:");
    let reader = Kms::new();
    for user in users::table
        .order(users::id)
        .select(User::as_select())
        .load::<User>(&mut conn)?
    {
        println!(
            "  {:<6} email={:<20} phone={}",
            user.name.as_deref().unwrap_or(""),
            user.email_blocking(&reader)?.unwrap_or_default(),
            user.phone_blocking(&reader)?.unwrap_or_default()
        );
    }
    println!(
        "KMS calls to read 3 users x 2 attributes: {} Decrypt",
        reader.stats().decrypts()
    );

    // Rotate Grace's default key: new data key, email re-encrypted, one guarded UPDATE.
    let mut grace: User = users::table
        .filter(users::name.eq("Grace"))
        .select(User::as_select())
        .first(&mut conn)?;
    let before = grace.encrypted_kms_key.stored().map(str::to_owned);
    kms_fields_diesel::rotate_kms_key(&mut conn, &kms, &mut grace, User::KMS_KEY)?;
    assert_ne!(before.as_deref(), grace.encrypted_kms_key.stored());
    show(
        &mut conn,
        "after rotating Grace's kms_key (her email_enc and encrypted_kms_key changed):",
    )?;
    let again: User = users::table
        .filter(users::name.eq("Grace"))
        .select(User::as_select())
        .first(&mut conn)?;
    println!(
        "\nGrace's email still reads: {}",
        again.email_blocking(&Kms::new())?.unwrap_or_default()
    );
    Ok(())
}
