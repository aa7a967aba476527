//! Real databases for the tests, each test isolated: its own Postgres schema, its own MySQL
//! database, its own SQLite file. URLs from `KMS_FIELDS_PG_URL` / `KMS_FIELDS_MYSQL_URL`
//! (defaults: the development machine's servers), started by scripts/test.sh when missing.

use diesel::connection::SimpleConnection;
use diesel::{Connection, MysqlConnection, PgConnection, SqliteConnection};
use diesel_migrations::MigrationHarness;

pub fn pg_url() -> String {
    std::env::var("KMS_FIELDS_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn mysql_url() -> String {
    std::env::var("KMS_FIELDS_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// A short random suffix for schema/database names.
pub fn unique(prefix: &str) -> String {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).expect("random");
    format!("{prefix}_{}", hex::encode(b))
}

/// A database a test owns.
pub trait TestDb {
    type Conn: Connection;
    /// A new connection to the test's database (for threads, second processes).
    fn connect(&self) -> Self::Conn;
    /// A URL another process (the CLI) can use.
    fn url(&self) -> String;
}

/// A Postgres schema of its own, dropped at the end.
pub struct PgDb {
    pub schema: String,
}

impl PgDb {
    pub fn new() -> (Self, PgConnection) {
        let (db, mut conn) = Self::empty();
        conn.run_pending_migrations(kms_fields_migrations::POSTGRES)
            .expect("migrations");
        (db, conn)
    }

    /// A schema of its own without the migrations run.
    pub fn empty() -> (Self, PgConnection) {
        let db = PgDb {
            schema: unique("kmsf"),
        };
        let mut conn = PgConnection::establish(&pg_url())
            .unwrap_or_else(|e| panic!("Postgres at {}: {e}", pg_url()));
        conn.batch_execute(&format!(
            "CREATE SCHEMA {0}; SET search_path TO {0}",
            db.schema
        ))
        .expect("schema");
        (db, conn)
    }
}

impl TestDb for PgDb {
    type Conn = PgConnection;
    fn connect(&self) -> PgConnection {
        let mut conn = PgConnection::establish(&pg_url()).expect("Postgres");
        conn.batch_execute(&format!("SET search_path TO {}", self.schema))
            .expect("search_path");
        conn
    }
    fn url(&self) -> String {
        let base = pg_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options=-csearch_path%3D{}", self.schema)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if let Ok(mut c) = PgConnection::establish(&pg_url()) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}

/// A SQLite file of its own (several connections can share it).
pub struct SqliteDb {
    pub dir: tempfile::TempDir,
}

impl SqliteDb {
    pub fn new() -> (Self, SqliteConnection) {
        let (db, mut conn) = Self::empty();
        conn.run_pending_migrations(kms_fields_migrations::SQLITE)
            .expect("migrations");
        (db, conn)
    }

    /// A file of its own without the migrations run.
    pub fn empty() -> (Self, SqliteConnection) {
        let db = SqliteDb {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        let conn = db.connect();
        (db, conn)
    }

    pub fn path(&self) -> String {
        self.dir.path().join("test.sqlite3").display().to_string()
    }
}

impl TestDb for SqliteDb {
    type Conn = SqliteConnection;
    fn connect(&self) -> SqliteConnection {
        let mut conn = SqliteConnection::establish(&self.path()).expect("SQLite");
        conn.batch_execute("PRAGMA busy_timeout = 20000; PRAGMA journal_mode = WAL;")
            .expect("pragmas");
        conn
    }
    fn url(&self) -> String {
        format!("sqlite://{}", self.path())
    }
}

/// A MySQL/MariaDB database of its own, dropped at the end.
pub struct MysqlDb {
    pub name: String,
}

impl MysqlDb {
    pub fn new() -> (Self, MysqlConnection) {
        let (db, mut conn) = Self::empty();
        conn.run_pending_migrations(kms_fields_migrations::MYSQL)
            .expect("migrations");
        (db, conn)
    }

    /// A database of its own without the migrations run.
    pub fn empty() -> (Self, MysqlConnection) {
        let db = MysqlDb {
            name: unique("kmsf"),
        };
        let mut admin = MysqlConnection::establish(&mysql_url())
            .unwrap_or_else(|e| panic!("MySQL at {}: {e}", mysql_url()));
        admin
            .batch_execute(&format!("CREATE DATABASE {}", db.name))
            .expect("create database");
        let conn = db.connect();
        (db, conn)
    }
}

impl TestDb for MysqlDb {
    type Conn = MysqlConnection;
    fn connect(&self) -> MysqlConnection {
        MysqlConnection::establish(&self.url()).expect("MySQL")
    }
    fn url(&self) -> String {
        let base = mysql_url();
        let root = base
            .rsplit_once('/')
            .map(|(r, _)| r.to_owned())
            .unwrap_or(base);
        format!("{root}/{}", self.name)
    }
}

impl Drop for MysqlDb {
    fn drop(&mut self) {
        if let Ok(mut c) = MysqlConnection::establish(&mysql_url()) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {}", self.name));
        }
    }
}
