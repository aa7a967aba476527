//! What the save flows need from each backend.

use diesel::QueryResult;
use diesel::connection::Connection;
pub use kms_fields::sql::{BackendKind, SqlValue};

/// A Diesel connection the save flows can drive: `PgConnection`, `SqliteConnection`,
/// `MysqlConnection` (behind the features of the same names), and anything that derefs to them
/// (`&mut *pooled_connection`).
pub trait KmsConnection: Connection {
    /// The database family.
    const BACKEND: BackendKind;

    /// The id the last INSERT of this connection got: `last_insert_rowid()` (SQLite),
    /// `LAST_INSERT_ID()` (MySQL) — both unaffected by a trigger's inserts. Postgres refuses:
    /// `lastval()` is another sequence's value when a trigger inserts elsewhere, so the save
    /// engine takes ids from the id's sequence before the `INSERT`.
    fn kms_last_insert_id(&mut self) -> QueryResult<i64>;

    /// Run a statement with positional binds; returns the affected row count.
    fn kms_execute(&mut self, sql: &str, binds: Vec<SqlValue>) -> QueryResult<usize>;

    /// Load the rows of a table operation (internal).
    #[doc(hidden)]
    fn kms_load_rows(
        &mut self,
        sql: &str,
        binds: Vec<SqlValue>,
    ) -> QueryResult<Vec<kms_fields::table::Row>>;

    /// A statement returning one text column `kmsf_id` per row (`… RETURNING`).
    #[doc(hidden)]
    fn kms_load_ids(&mut self, sql: &str, binds: Vec<SqlValue>) -> QueryResult<Vec<String>>;

    /// `SELECT COUNT(*) AS n …`.
    #[doc(hidden)]
    fn kms_count(&mut self, sql: &str) -> QueryResult<i64>;

    /// `SELECT <text> AS kmsf_version, COUNT(*) AS n … GROUP BY 1`.
    #[doc(hidden)]
    fn kms_group_counts(&mut self, sql: &str) -> QueryResult<Vec<(String, u64)>>;
}

#[derive(diesel::QueryableByName)]
pub(crate) struct CountRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) n: i64,
}

#[derive(diesel::QueryableByName)]
pub(crate) struct IdText {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(crate) kmsf_id: String,
}

#[derive(diesel::QueryableByName)]
pub(crate) struct GroupRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(crate) kmsf_version: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) n: i64,
}

#[derive(diesel::QueryableByName)]
pub(crate) struct IdRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub(crate) id: i64,
}

macro_rules! impl_execute {
    ($backend:ty) => {
        fn kms_execute(&mut self, sql: &str, binds: Vec<SqlValue>) -> QueryResult<usize> {
            use diesel::RunQueryDsl;
            bound::<$backend>(sql, binds).execute(self)
        }

        fn kms_load_rows(
            &mut self,
            sql: &str,
            binds: Vec<SqlValue>,
        ) -> QueryResult<Vec<kms_fields::table::Row>> {
            use diesel::RunQueryDsl;
            let rows: Vec<crate::rotation::RowByName> = bound::<$backend>(sql, binds).load(self)?;
            Ok(rows.into_iter().map(|r| r.0).collect())
        }

        fn kms_load_ids(&mut self, sql: &str, binds: Vec<SqlValue>) -> QueryResult<Vec<String>> {
            use diesel::RunQueryDsl;
            let rows: Vec<IdText> = bound::<$backend>(sql, binds).load(self)?;
            Ok(rows.into_iter().map(|r| r.kmsf_id).collect())
        }

        fn kms_count(&mut self, sql: &str) -> QueryResult<i64> {
            use diesel::RunQueryDsl;
            diesel::sql_query(sql.to_owned())
                .get_result::<CountRow>(self)
                .map(|r| r.n)
        }

        fn kms_group_counts(&mut self, sql: &str) -> QueryResult<Vec<(String, u64)>> {
            use diesel::RunQueryDsl;
            let rows: Vec<GroupRow> = diesel::sql_query(sql.to_owned()).load(self)?;
            Ok(rows
                .into_iter()
                .map(|r| (r.kmsf_version, r.n.max(0) as u64))
                .collect())
        }
    };
}

/// A raw statement with its positional binds.
#[allow(dead_code)]
pub(crate) fn bound<DB>(
    sql: &str,
    binds: Vec<SqlValue>,
) -> diesel::query_builder::BoxedSqlQuery<'static, DB, diesel::query_builder::SqlQuery>
where
    DB: diesel::backend::Backend
        + diesel::sql_types::HasSqlType<diesel::sql_types::Text>
        + diesel::sql_types::HasSqlType<diesel::sql_types::Binary>
        + diesel::sql_types::HasSqlType<diesel::sql_types::BigInt>,
    Option<String>:
        diesel::serialize::ToSql<diesel::sql_types::Nullable<diesel::sql_types::Text>, DB>,
    Option<Vec<u8>>:
        diesel::serialize::ToSql<diesel::sql_types::Nullable<diesel::sql_types::Binary>, DB>,
    i64: diesel::serialize::ToSql<diesel::sql_types::BigInt, DB>,
{
    use diesel::sql_types::{BigInt, Binary, Nullable, Text};
    let mut q = diesel::sql_query(sql.to_owned()).into_boxed::<DB>();
    for b in binds {
        q = match b {
            SqlValue::Text(v) => q.bind::<Nullable<Text>, _>(v),
            SqlValue::Bytes(v) => q.bind::<Nullable<Binary>, _>(v),
            SqlValue::Int(v) => q.bind::<BigInt, _>(v),
        };
    }
    q
}

#[cfg(feature = "postgres")]
impl KmsConnection for diesel::PgConnection {
    const BACKEND: BackendKind = BackendKind::Postgres;

    fn kms_last_insert_id(&mut self) -> QueryResult<i64> {
        Err(diesel::result::Error::QueryBuilderError(
            "Postgres: ids come from the id's sequence before the INSERT, never from lastval()"
                .into(),
        ))
    }

    impl_execute!(diesel::pg::Pg);
}

#[cfg(feature = "sqlite")]
impl KmsConnection for diesel::SqliteConnection {
    const BACKEND: BackendKind = BackendKind::Sqlite;

    fn kms_last_insert_id(&mut self) -> QueryResult<i64> {
        use diesel::RunQueryDsl;
        let row: IdRow = diesel::sql_query("SELECT last_insert_rowid() AS id").get_result(self)?;
        Ok(row.id)
    }

    impl_execute!(diesel::sqlite::Sqlite);
}

#[cfg(feature = "mysql")]
impl KmsConnection for diesel::MysqlConnection {
    const BACKEND: BackendKind = BackendKind::Mysql;

    fn kms_last_insert_id(&mut self) -> QueryResult<i64> {
        use diesel::RunQueryDsl;
        let row: IdRow =
            diesel::sql_query("SELECT CAST(LAST_INSERT_ID() AS SIGNED) AS id").get_result(self)?;
        Ok(row.id)
    }

    impl_execute!(diesel::mysql::Mysql);
}
