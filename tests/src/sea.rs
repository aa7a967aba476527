//! SeaORM entities over the same `users` table.

use std::sync::LazyLock;

use kms_fields::Kms;

/// The `Kms` of the hook-driven entity (`#[kms(seaorm_hooks = crate::sea::kms)]`).
pub static KMS: LazyLock<Kms> = LazyLock::new(Kms::new);

/// The hooks' `Kms`.
pub fn kms() -> &'static Kms {
    &KMS
}

/// kms_encrypted's test model as a SeaORM entity.
pub mod user {
    use kms_fields::KmsEncrypted;
    use kms_fields_seaorm::KmsKey;
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Default, DeriveEntityModel, KmsEncrypted)]
    #[sea_orm(table_name = "users")]
    #[kms(
        model_name = "User",
        key(key_id = "insecure-test-key"),
        key(name = "phone", key_id = "insecure-test-key")
    )]
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
        #[sea_orm(column_type = "Blob", nullable)]
        #[kms(encrypted, serde = crate::models::Address)]
        pub address_enc: Option<Vec<u8>>,
        #[sea_orm(column_type = "Text", nullable)]
        pub encrypted_kms_key: KmsKey,
        #[sea_orm(column_type = "Text", nullable)]
        pub encrypted_kms_key_phone: KmsKey,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A model whose key is on Vault (`vault/users`).
pub mod vault_user {
    use kms_fields::KmsEncrypted;
    use kms_fields_seaorm::KmsKey;
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Default, DeriveEntityModel, KmsEncrypted)]
    #[sea_orm(table_name = "users")]
    #[kms(model_name = "User", key(key_id = "vault/users"))]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[sea_orm(column_type = "Text", nullable)]
        #[kms(encrypted)]
        pub email_enc: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        pub encrypted_kms_key: KmsKey,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// [`vault_user`] at key version 2 (same Vault key, version 1 still read).
pub mod vault_user_v2 {
    use kms_fields::KmsEncrypted;
    use kms_fields_seaorm::KmsKey;
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Default, DeriveEntityModel, KmsEncrypted)]
    #[sea_orm(table_name = "users")]
    #[kms(
        model_name = "User",
        key(key_id = "vault/users", version = 2, previous(1 = "vault/users"))
    )]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[sea_orm(column_type = "Text", nullable)]
        #[kms(encrypted)]
        pub email_enc: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        pub encrypted_kms_key: KmsKey,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Version 2 with version 1 accepted.
pub mod user_v2 {
    use kms_fields::KmsEncrypted;
    use kms_fields_seaorm::KmsKey;
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Default, DeriveEntityModel, KmsEncrypted)]
    #[sea_orm(table_name = "users")]
    #[kms(model_name = "User")]
    #[kms(key(key_id = "insecure-test-key", version = 2, previous(1 = "insecure-test-key")))]
    #[kms(key(name = "phone", key_id = "insecure-test-key", version = 2, previous(1 = "insecure-test-key")))]
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
        #[sea_orm(column_type = "Blob", nullable)]
        #[kms(encrypted, serde = crate::models::Address)]
        pub address_enc: Option<Vec<u8>>,
        #[sea_orm(column_type = "Text", nullable)]
        pub encrypted_kms_key: KmsKey,
        #[sea_orm(column_type = "Text", nullable)]
        pub encrypted_kms_key_phone: KmsKey,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A custom context `{"Name": name}` (eager flow).
pub mod account {
    use kms_fields::{EncryptionContext, KmsEncrypted};
    use kms_fields_seaorm::KmsKey;
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Default, DeriveEntityModel, KmsEncrypted)]
    #[sea_orm(table_name = "users")]
    #[kms(model_name = "Account", key(key_id = "insecure-test-key", context = Model::context))]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub name: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        #[kms(encrypted)]
        pub email_enc: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        pub encrypted_kms_key: KmsKey,
    }

    impl Model {
        fn context(&self, _version: u32) -> kms_fields::Result<EncryptionContext> {
            Ok(EncryptionContext::new().with("Name", self.name.clone().unwrap_or_default()))
        }
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The hook-driven entity: `am.insert(db)` runs the save flows itself.
pub mod hooked {
    use kms_fields::KmsEncrypted;
    use kms_fields_seaorm::KmsKey;
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Default, DeriveEntityModel, KmsEncrypted)]
    #[sea_orm(table_name = "users")]
    #[kms(model_name = "User", seaorm_hooks = crate::sea::kms)]
    #[kms(
        key(key_id = "insecure-test-key"),
        key(name = "phone", key_id = "insecure-test-key")
    )]
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

/// [`crate::models::Person`] as a SeaORM entity.
pub mod person {
    use kms_fields::KmsEncrypted;
    use kms_fields_seaorm::KmsKey;
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Default, DeriveEntityModel, KmsEncrypted)]
    #[sea_orm(table_name = "people")]
    #[kms(model_name = "Person", key(key_id = "insecure-test-key"))]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[sea_orm(column_type = "Text", nullable)]
        #[kms(
            encrypted,
            blind_index(expression = kms_fields::blind_index::normalize::trim_lowercase, unique),
            blind_index(column = "email_exact_bidx", algorithm = "pbkdf2_sha256", iterations = 1000, size = 16, master_key = "v2")
        )]
        pub email_enc: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        pub email_bidx: Option<String>,
        #[sea_orm(column_type = "Blob", nullable)]
        pub email_exact_bidx: Option<Vec<u8>>,
        #[sea_orm(column_type = "Text", nullable)]
        pub encrypted_kms_key: KmsKey,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A SeaORM connection to a test database (search path / file / database of its own).
pub async fn connect(url: &str, pg_schema: Option<&str>) -> sea_orm::DatabaseConnection {
    let mut opts = sea_orm::ConnectOptions::new(url.to_owned());
    opts.max_connections(4).sqlx_logging(false);
    if let Some(schema) = pg_schema {
        opts.set_schema_search_path(schema.to_owned());
    }
    sea_orm::Database::connect(opts)
        .await
        .expect("SeaORM connect")
}

/// A Postgres schema of its own (migrated) and a SeaORM connection to it.
pub async fn pg() -> (crate::db::PgDb, sea_orm::DatabaseConnection) {
    let (db, _conn) = crate::db::PgDb::new();
    let sea = connect(&crate::db::pg_url(), Some(&db.schema)).await;
    (db, sea)
}

/// A SQLite file of its own (migrated) and a SeaORM connection to it.
pub async fn sqlite() -> (crate::db::SqliteDb, sea_orm::DatabaseConnection) {
    let (db, _conn) = crate::db::SqliteDb::new();
    let sea = connect(&format!("sqlite://{}?mode=rwc", db.path()), None).await;
    (db, sea)
}

/// A MariaDB/MySQL database of its own (migrated) and a SeaORM connection to it.
pub async fn mysql() -> (crate::db::MysqlDb, sea_orm::DatabaseConnection) {
    use crate::db::TestDb;
    let (db, _conn) = crate::db::MysqlDb::new();
    let sea = connect(&db.url(), None).await;
    (db, sea)
}
