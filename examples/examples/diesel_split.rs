//! Diesel's usual split — an `Insertable` `NewPatient` and a `Queryable` `Patient` — with
//! kms-fields, on SQLite and the offline test key (no services):
//!
//!     cargo run --example diesel_split
//!
//! What makes it work:
//! - both structs derive `KmsEncrypted` and share ONE key declaration (`key(spec = …)`: a
//!   function both name), so they read and write the same key column the same way;
//! - `NewPatient` carries `id: Option<i32>` left `None`: the database assigns the id and
//!   `kms_fields_diesel::insert` writes it back, because the encryption context
//!   `{model_name, model_id}` needs it before the data key is wrapped;
//! - columns the database fills (`created_at`) are simply not in `NewPatient`;
//! - `Patient` has a plain `id: i32`; encrypted changes are written with
//!   `kms_fields_diesel::update_encrypted` (only the key, ciphertext and blind-index columns,
//!   guarded), and other columns with your own `AsChangeset` struct that leaves the encrypted
//!   ones out — so nothing (`created_at` included) is nulled by `treat_none_as_null`.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use kms_fields::{KeySpec, Kms, KmsEncrypted};
use kms_fields_diesel::KmsKey;

diesel::table! {
    patients (id) {
        id -> Integer,
        name -> Text,
        ssn_enc -> Nullable<Text>,
        encrypted_kms_key -> Nullable<Text>,
        created_at -> Text,
    }
}

/// The one key declaration both structs use.
fn patient_key() -> KeySpec {
    KeySpec::new().key_id("insecure-test-key")
}

/// What `INSERT` needs: no `created_at` (the database default), `id` assigned by the database.
#[derive(Debug, Clone, Default, Insertable, KmsEncrypted)]
#[diesel(table_name = patients)]
#[kms(model_name = "Patient", key(spec = patient_key))]
struct NewPatient {
    id: Option<i32>,
    name: String,
    #[kms(encrypted)]
    ssn_enc: Option<String>,
    encrypted_kms_key: KmsKey,
}

/// What `SELECT` gives: every column, a plain id.
#[derive(Debug, Clone, Queryable, Selectable, Identifiable, KmsEncrypted)]
#[diesel(table_name = patients)]
#[kms(model_name = "Patient", key(spec = patient_key))]
struct Patient {
    id: i32,
    name: String,
    #[kms(encrypted)]
    ssn_enc: Option<String>,
    encrypted_kms_key: KmsKey,
    created_at: String,
}

/// Changes to the plain columns: the encrypted ones are left out (they go through
/// `update_encrypted`), so this never touches a ciphertext or a key column.
#[derive(AsChangeset)]
#[diesel(table_name = patients)]
struct Rename<'a> {
    name: &'a str,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut conn = SqliteConnection::establish(":memory:")?;
    conn.batch_execute(
        "CREATE TABLE patients (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            ssn_enc TEXT,
            encrypted_kms_key TEXT,
            created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
        )",
    )?;
    let kms = Kms::new();

    let mut new = NewPatient {
        name: "Ada".into(),
        ..Default::default()
    };
    new.set_ssn_blocking(&kms, Some("078-05-1120"))?;
    kms_fields_diesel::insert(&mut conn, &kms, patients::table, &mut new)?;
    let id = new.id.ok_or("the insert gave the record its id")?;
    println!("inserted NewPatient, id {id}");

    let mut p: Patient = patients::table
        .find(id)
        .select(Patient::as_select())
        .first(&mut conn)?;
    assert_eq!(p.ssn_blocking(&kms)?.as_deref(), Some("078-05-1120"));
    println!(
        "loaded Patient {} (created_at {}): ssn {}",
        p.id,
        p.created_at,
        p.ssn_blocking(&kms)?.unwrap_or_default()
    );

    // an encrypted change: only the encrypted columns are written, guarded on the key column
    p.set_ssn_blocking(&kms, Some("219-09-9999"))?;
    kms_fields_diesel::update_encrypted(&mut conn, &kms, &mut p)?;
    // a plain change through Diesel's own update
    diesel::update(&p)
        .set(&Rename {
            name: "Ada Lovelace",
        })
        .execute(&mut conn)?;

    let back: Patient = patients::table
        .find(id)
        .select(Patient::as_select())
        .first(&mut conn)?;
    assert_eq!(back.name, "Ada Lovelace");
    assert_eq!(back.created_at, p.created_at, "created_at untouched");
    assert_eq!(
        back.ssn_blocking(&Kms::new())?.as_deref(),
        Some("219-09-9999")
    );
    println!(
        "after update_encrypted + a plain rename: {} / ssn {} / created_at {}",
        back.name,
        back.ssn_blocking(&kms)?.unwrap_or_default(),
        back.created_at
    );
    Ok(())
}
