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
#[cfg(feature = "seaorm")]
pub mod sea {
    use sea_orm_migration::prelude::*;
    use sea_orm_migration::sea_orm::DbBackend;

    /// The migrator of the example/test schema.
    #[derive(Debug)]
    pub struct Migrator;

    #[async_trait::async_trait]
    impl MigratorTrait for Migrator {
        fn migrations() -> Vec<Box<dyn MigrationTrait>> {
            vec![Box::new(CreateUsers)]
        }
    }

    /// `users` and `lockbox_users`: the SQL of the Diesel migrations, per backend.
    #[derive(Debug, DeriveMigrationName)]
    pub struct CreateUsers;

    fn sql(backend: DbBackend, up: bool) -> &'static str {
        match (backend, up) {
            (DbBackend::Postgres, true) => {
                include_str!("../diesel/postgres/2026-11-22-000001_create_users/up.sql")
            }
            (DbBackend::Postgres, false) => {
                include_str!("../diesel/postgres/2026-11-22-000001_create_users/down.sql")
            }
            (DbBackend::MySql, true) => {
                include_str!("../diesel/mysql/2026-11-22-000001_create_users/up.sql")
            }
            (DbBackend::MySql, false) => {
                include_str!("../diesel/mysql/2026-11-22-000001_create_users/down.sql")
            }
            (_, true) => include_str!("../diesel/sqlite/2026-11-22-000001_create_users/up.sql"),
            (_, false) => include_str!("../diesel/sqlite/2026-11-22-000001_create_users/down.sql"),
        }
    }

    async fn run(manager: &SchemaManager<'_>, up: bool) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for stmt in sql(manager.get_database_backend(), up)
            .split(';')
            .map(str::trim)
        {
            let body: String = stmt
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n");
            if !body.trim().is_empty() {
                db.execute_unprepared(&body).await?;
            }
        }
        Ok(())
    }

    #[async_trait::async_trait]
    impl MigrationTrait for CreateUsers {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            run(manager, true).await
        }
        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            run(manager, false).await
        }
    }
}

#[allow(unused_imports)]
use {EmbeddedMigrations as _, embed_migrations as _};
