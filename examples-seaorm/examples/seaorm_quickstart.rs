//! The main job with SeaORM 2, no services: a SQLite file and the offline test key.
//!
//!     cargo run --example seaorm_quickstart
//!
//! Migrates the schema (sea-orm-migration), saves a user with `kms_fields_seaorm::insert` (on
//! SQLite the database assigns the id, so the key is wrapped after the INSERT in one
//! transaction; the generated ActiveModelBehavior hooks run too and handle later updates),
//! bulk-inserts more, reads them back with one KMS call per record key, rotates a key, and
//! prints the rows.

use std::sync::LazyLock;

use kms_fields::{Kms, bulk};
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, QueryOrder};
use sea_orm_migration::MigratorTrait;

static KMS: LazyLock<Kms> = LazyLock::new(Kms::new);

fn kms() -> &'static Kms {
    &KMS
}

mod user {
    use kms_fields::KmsEncrypted;
    use kms_fields_seaorm::KmsKey;
    use sea_orm::entity::prelude::*;

    /// `am.insert(db)` runs the kms-fields save flow through the generated hooks.
    #[derive(Clone, Debug, PartialEq, Default, DeriveEntityModel, KmsEncrypted)]
    #[sea_orm(table_name = "users")]
    #[kms(model_name = "User", seaorm_hooks = crate::kms)]
    #[kms(
        key(key_id = "insecure-test-key"),
        key(name = "phone", key_id = "insecure-test-key")
    )]
    // clippy takes the two `key_id = "…"` of the two keys for a duplicated attribute
    #[allow(clippy::duplicated_attributes)]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub name: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        #[kms(encrypted)]
        pub email_enc: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        #[kms(encrypted, key = "phone")]
        pub phone_enc: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        pub encrypted_kms_key: KmsKey,
        #[sea_orm(column_type = "Text", nullable)]
        pub encrypted_kms_key_phone: KmsKey,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

fn short(s: Option<&str>) -> String {
    match s {
        None => "NULL".into(),
        Some(s) if s.len() > 40 => format!("{}…", &s[..40]),
        Some(s) => s.into(),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join("kms-fields-seaorm-quickstart.sqlite3");
    let _ = std::fs::remove_file(&path);
    let db = sea_orm::Database::connect(format!("sqlite://{}?mode=rwc", path.display())).await?;
    kms_fields_migrations::sea::Migrator::up(&db, None).await?;
    println!(
        "database: {} (migrated with sea-orm-migration)",
        path.display()
    );

    // one record: set plaintexts on the Model, save it with the after-insert flow (SQLite
    // assigns the id; `am.insert(db)` through the hooks would refuse and say to call this)
    let mut ada = user::Model {
        name: Some("Ada".into()),
        ..Default::default()
    };
    ada.set_email(kms(), Some("ada@example.org")).await?;
    ada.set_phone(kms(), Some("+44 20 7946 0018")).await?;
    let flow = kms_fields_seaorm::insert(&db, kms(), &mut ada).await?;
    println!(
        "saved Ada (id {}) with the {flow:?} flow: key column {}",
        ada.id,
        short(ada.encrypted_kms_key.stored())
    );
    // an ordinary SeaORM update goes through the generated hooks
    let mut am = ada.into_active_model();
    am.name = sea_orm::Set(Some("Ada L.".into()));
    let ada = am.update(&db).await?;
    println!("renamed her to {:?} with am.update(db)", ada.name);

    // many records: insert_many runs no hooks, so use the bulk flow
    let mut batch = Vec::new();
    for (name, email, phone) in [
        ("Grace", "grace@example.org", "+1 202 555 0147"),
        ("Linus", "linus@example.org", "+358 9 1234 5678"),
    ] {
        let mut u = user::Model {
            name: Some(name.into()),
            ..Default::default()
        };
        u.set_email(kms(), Some(email)).await?;
        u.set_phone(kms(), Some(phone)).await?;
        batch.push(u);
    }
    let flow = kms_fields_seaorm::insert_many(&db, kms(), &mut batch, 16).await?;
    println!(
        "bulk-inserted {} users with the {flow:?} flow; KMS so far: {} Encrypt, {} Decrypt",
        batch.len(),
        kms().stats().encrypts(),
        kms().stats().decrypts()
    );

    // read back: unwrap every record key concurrently, then read without KMS calls
    let reader = Kms::new();
    let users = user::Entity::find()
        .order_by_asc(user::Column::Id)
        .all(&db)
        .await?;
    let results = bulk::unlock_many(&reader, &users, 16).await;
    assert!(results.iter().all(|r| r.is_ok()));
    println!(
        "\nread back ({} Decrypt for {} users x 2 keys):",
        reader.stats().decrypts(),
        users.len()
    );
    for u in &users {
        println!(
            "  {:<6} email={:<20} phone={}",
            u.name.as_deref().unwrap_or(""),
            u.email(&reader).await?.unwrap_or_default(),
            u.phone(&reader).await?.unwrap_or_default()
        );
    }

    // rotate Grace's default key (one guarded UPDATE)
    let mut grace = users
        .into_iter()
        .find(|u| u.name.as_deref() == Some("Grace"))
        .ok_or("no Grace")?;
    kms_fields_seaorm::rotate_kms_key(&db, kms(), &mut grace, user::Model::KMS_KEY).await?;

    println!("\nwhat the database stores:");
    for u in user::Entity::find()
        .order_by_asc(user::Column::Id)
        .all(&db)
        .await?
    {
        println!(
            "  id={} {:<6} email_enc={} encrypted_kms_key={}",
            u.id,
            u.name.as_deref().unwrap_or(""),
            short(u.email_enc.as_deref()),
            short(u.encrypted_kms_key.stored())
        );
    }
    Ok(())
}
