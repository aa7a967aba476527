//! Migrations of the kms-fields example/test schema.
//!
//! Diesel SQL migrations live in `migrations/diesel/<backend>/` (runnable with
//! `diesel migration run --migration-dir migrations/diesel/postgres`) and are embedded here:
//!
//! ```no_run
//! # #[cfg(feature = "sqlite")] {
//! use diesel::Connection;
//! use diesel_migrations::MigrationHarness;
//! let mut conn = diesel::SqliteConnection::establish(":memory:").unwrap();
//! conn.run_pending_migrations(kms_fields_migrations::SQLITE).unwrap();
//! # }
//! ```

use diesel_migrations::{EmbeddedMigrations, embed_migrations};

/// The PostgreSQL migrations.
#[cfg(feature = "postgres")]
pub const POSTGRES: EmbeddedMigrations = embed_migrations!("diesel/postgres");
/// The SQLite migrations.
#[cfg(feature = "sqlite")]
pub const SQLITE: EmbeddedMigrations = embed_migrations!("diesel/sqlite");
/// The MySQL / MariaDB migrations.
#[cfg(feature = "mysql")]
pub const MYSQL: EmbeddedMigrations = embed_migrations!("diesel/mysql");

/// The same schema as sea-orm-migration migrations (feature `seaorm`): `Migrator::up(&db, None)`.
/// The tables are created with sea-query's schema builder, then the kms-fields columns are added
/// with [`kms_fields_seaorm::migration`] — the way an application adds them to its own tables.
#[cfg(feature = "seaorm")]
pub mod sea {
    use kms_fields_seaorm::migration::{Column, ColumnKind, add_columns, drop_columns};
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::schema::{pk_auto, text_null, timestamp_null};

    /// The migrator of the example/test schema.
    #[derive(Debug)]
    pub struct Migrator;

    #[async_trait::async_trait]
    impl MigratorTrait for Migrator {
        fn migrations() -> Vec<Box<dyn MigrationTrait>> {
            vec![
                Box::new(CreateUsers),
                Box::new(AddKmsColumns),
                Box::new(CreatePeople),
                Box::new(CreateLockboxProfiles),
            ]
        }
    }

    /// `users` and `lockbox_users`, without their kms-fields columns.
    #[derive(Debug)]
    pub struct CreateUsers;

    impl MigrationName for CreateUsers {
        fn name(&self) -> &str {
            "m20261122_000001_create_users"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for CreateUsers {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table("users")
                        .col(pk_auto("id"))
                        .col(text_null("name"))
                        .col(timestamp_null("updated_at"))
                        .to_owned(),
                )
                .await?;
            manager
                .create_table(
                    Table::create()
                        .table("lockbox_users")
                        .col(pk_auto("id"))
                        .to_owned(),
                )
                .await
        }
        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .drop_table(Table::drop().table("lockbox_users").to_owned())
                .await?;
            manager
                .drop_table(Table::drop().table("users").to_owned())
                .await
        }
    }

    /// The key and ciphertext columns, added with kms-fields' migration helpers.
    #[derive(Debug)]
    pub struct AddKmsColumns;

    impl MigrationName for AddKmsColumns {
        fn name(&self) -> &str {
            "m20261122_000002_add_kms_columns"
        }
    }

    fn users_columns() -> [Column; 5] {
        [
            Column::ciphertext("email_enc"),
            Column::ciphertext("phone_enc"),
            Column::binary_ciphertext("address_enc"),
            Column::key("encrypted_kms_key"),
            Column::key("encrypted_kms_key_phone"),
        ]
    }

    fn lockbox_columns() -> [Column; 4] {
        [
            Column::ciphertext("email_ciphertext"),
            Column::ciphertext("phone_ciphertext"),
            Column::key("encrypted_kms_key"),
            Column::key("encrypted_kms_key_phone"),
        ]
    }

    #[async_trait::async_trait]
    impl MigrationTrait for AddKmsColumns {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            let db = manager.get_connection();
            add_columns(db, "users", &users_columns()).await?;
            add_columns(db, "lockbox_users", &lockbox_columns()).await
        }
        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            let db = manager.get_connection();
            drop_columns(db, "lockbox_users", &lockbox_columns()).await?;
            drop_columns(db, "users", &users_columns()).await
        }
    }

    /// `people`, found by email through blind indexes: a unique case-insensitive one (text)
    /// and an exact one (binary).
    #[derive(Debug)]
    pub struct CreatePeople;

    impl MigrationName for CreatePeople {
        fn name(&self) -> &str {
            "m20261201_000001_create_people"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for CreatePeople {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table("people")
                        .col(pk_auto("id"))
                        .to_owned(),
                )
                .await?;
            let exact = Column {
                name: "email_exact_bidx".into(),
                kind: ColumnKind::BlindIndex {
                    unique: false,
                    binary: true,
                },
            };
            add_columns(
                manager.get_connection(),
                "people",
                &[
                    Column::ciphertext("email_enc"),
                    Column::blind_index("email_bidx", true),
                    exact,
                    Column::key("encrypted_kms_key"),
                ],
            )
            .await
        }
        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .drop_table(Table::drop().table("people").to_owned())
                .await
        }
    }

    /// `lockbox_profiles`: Lockbox-mode typed attributes and padded strings, one kms key.
    #[derive(Debug)]
    pub struct CreateLockboxProfiles;

    impl MigrationName for CreateLockboxProfiles {
        fn name(&self) -> &str {
            "m20261210_000001_create_lockbox_profiles"
        }
    }

    fn lockbox_profile_columns() -> Vec<Column> {
        [
            "age",
            "score",
            "active",
            "born_on",
            "signed_at",
            "opens_at",
            "balance",
            "data",
            "ssn",
            "motto",
        ]
        .iter()
        .map(|a| Column::ciphertext(&format!("{a}_ciphertext")))
        .chain([Column::key("encrypted_kms_key")])
        .collect()
    }

    #[async_trait::async_trait]
    impl MigrationTrait for CreateLockboxProfiles {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table("lockbox_profiles")
                        .col(pk_auto("id"))
                        .to_owned(),
                )
                .await?;
            add_columns(
                manager.get_connection(),
                "lockbox_profiles",
                &lockbox_profile_columns(),
            )
            .await
        }
        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .drop_table(Table::drop().table("lockbox_profiles").to_owned())
                .await
        }
    }
}

#[allow(unused_imports)]
use {EmbeddedMigrations as _, embed_migrations as _};
