//! SQL for your own migrations (Diesel `up.sql`, SeaORM `execute_unprepared`): the key column(s), ciphertext columns and blind-index columns
//! kms-fields needs, per backend (put the output in a Diesel `up.sql` / `down.sql`).
//!
//! ```
//! use kms_fields::sql::BackendKind;
//! use kms_fields::migration::{Column, add_columns, drop_columns};
//! let cols = [Column::key("encrypted_kms_key"), Column::ciphertext("email_enc"), Column::blind_index("email_bidx", true)];
//! assert_eq!(
//!     add_columns(BackendKind::Postgres, "users", &cols),
//!     "ALTER TABLE \"users\" ADD COLUMN \"encrypted_kms_key\" TEXT;\n\
//!      ALTER TABLE \"users\" ADD COLUMN \"email_enc\" TEXT;\n\
//!      ALTER TABLE \"users\" ADD COLUMN \"email_bidx\" TEXT;\n\
//!      CREATE UNIQUE INDEX \"index_users_on_email_bidx\" ON \"users\" (\"email_bidx\");\n"
//! );
//! assert!(drop_columns(BackendKind::Sqlite, "users", &cols).starts_with("DROP INDEX"));
//! ```

use crate::KmsModel;
use crate::sql::BackendKind;

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// A key column (`encrypted_kms_key`): text, nullable.
    Key,
    /// A ciphertext in a text column (base64).
    CiphertextText,
    /// A ciphertext in a binary column.
    CiphertextBinary,
    /// A blind index (base64 text), indexed, optionally unique.
    BlindIndex {
        /// `CREATE UNIQUE INDEX` rather than `CREATE INDEX`.
        unique: bool,
        /// Raw bytes in a binary column instead of base64.
        binary: bool,
    },
}

/// A column to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: ColumnKind,
}

impl Column {
    /// A key column.
    pub fn key(name: &str) -> Self {
        Self {
            name: name.into(),
            kind: ColumnKind::Key,
        }
    }
    /// A text ciphertext column.
    pub fn ciphertext(name: &str) -> Self {
        Self {
            name: name.into(),
            kind: ColumnKind::CiphertextText,
        }
    }
    /// A binary ciphertext column.
    pub fn binary_ciphertext(name: &str) -> Self {
        Self {
            name: name.into(),
            kind: ColumnKind::CiphertextBinary,
        }
    }
    /// A blind-index column (base64), with a unique or plain index.
    pub fn blind_index(name: &str, unique: bool) -> Self {
        Self {
            name: name.into(),
            kind: ColumnKind::BlindIndex {
                unique,
                binary: false,
            },
        }
    }
}

fn sql_type(b: BackendKind, kind: ColumnKind) -> &'static str {
    match (b, kind) {
        (
            BackendKind::Postgres,
            ColumnKind::CiphertextBinary | ColumnKind::BlindIndex { binary: true, .. },
        ) => "BYTEA",
        (BackendKind::Postgres, _) => "TEXT",
        (
            BackendKind::Sqlite,
            ColumnKind::CiphertextBinary | ColumnKind::BlindIndex { binary: true, .. },
        ) => "BLOB",
        (BackendKind::Sqlite, _) => "TEXT",
        // indexed columns need a bounded type on MySQL; 44 chars hold a base64 32-byte index
        (BackendKind::Mysql, ColumnKind::BlindIndex { binary: false, .. }) => "VARCHAR(64)",
        (BackendKind::Mysql, ColumnKind::BlindIndex { binary: true, .. }) => "VARBINARY(32)",
        (BackendKind::Mysql, ColumnKind::Key) => "TEXT",
        (BackendKind::Mysql, ColumnKind::CiphertextText) => "LONGTEXT",
        (BackendKind::Mysql, ColumnKind::CiphertextBinary) => "LONGBLOB",
    }
}

fn index_name(table: &str, column: &str) -> String {
    format!("index_{table}_on_{column}")
}

/// `ALTER TABLE … ADD COLUMN …` for each column (nullable), and the blind indexes' indexes.
pub fn add_columns(b: BackendKind, table: &str, columns: &[Column]) -> String {
    let t = b.quote(table);
    let mut out = String::new();
    for c in columns {
        out.push_str(&format!(
            "ALTER TABLE {t} ADD COLUMN {} {};\n",
            b.quote(&c.name),
            sql_type(b, c.kind)
        ));
    }
    for c in columns {
        if let ColumnKind::BlindIndex { unique, .. } = c.kind {
            let u = if unique { "UNIQUE " } else { "" };
            out.push_str(&format!(
                "CREATE {u}INDEX {} ON {t} ({});\n",
                b.quote(&index_name(table, &c.name)),
                b.quote(&c.name)
            ));
        }
    }
    out
}

/// The reverse of [`add_columns`] (SQLite needs 3.35 or later for `DROP COLUMN`).
pub fn drop_columns(b: BackendKind, table: &str, columns: &[Column]) -> String {
    let t = b.quote(table);
    let mut out = String::new();
    for c in columns {
        if matches!(c.kind, ColumnKind::BlindIndex { .. }) {
            let idx = b.quote(&index_name(table, &c.name));
            match b {
                BackendKind::Mysql => out.push_str(&format!("DROP INDEX {idx} ON {t};\n")),
                _ => out.push_str(&format!("DROP INDEX {idx};\n")),
            }
        }
    }
    for c in columns.iter().rev() {
        out.push_str(&format!(
            "ALTER TABLE {t} DROP COLUMN {};\n",
            b.quote(&c.name)
        ));
    }
    out
}

/// The key, ciphertext and blind-index columns of model `M`.
pub fn model_columns<M: KmsModel>() -> Vec<Column> {
    let mut cols: Vec<Column> = M::KEYS.iter().map(|k| Column::key(k.column)).collect();
    cols.extend(M::ATTRIBUTES.iter().map(|a| {
        if a.binary {
            Column::binary_ciphertext(a.column)
        } else {
            Column::ciphertext(a.column)
        }
    }));
    cols.extend(M::BLIND_INDEXES.iter().map(|b| Column {
        name: b.column.into(),
        kind: ColumnKind::BlindIndex {
            unique: b.unique,
            binary: b.binary,
        },
    }));
    cols
}

/// `up.sql` adding model `M`'s key, ciphertext and blind-index columns (with their indexes) to
/// its table.
pub fn model_up<M: KmsModel>(b: BackendKind) -> crate::Result<String> {
    let table = M::TABLE.ok_or_else(|| {
        crate::Error::new(
            crate::ErrorKind::Config,
            format!("{}: table name unknown", M::MODEL_NAME),
        )
    })?;
    Ok(add_columns(b, table, &model_columns::<M>()))
}

/// `down.sql` for [`model_up`].
pub fn model_down<M: KmsModel>(b: BackendKind) -> crate::Result<String> {
    let table = M::TABLE.ok_or_else(|| {
        crate::Error::new(
            crate::ErrorKind::Config,
            format!("{}: table name unknown", M::MODEL_NAME),
        )
    })?;
    Ok(drop_columns(b, table, &model_columns::<M>()))
}
