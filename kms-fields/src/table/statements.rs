//! The SQL of the table operations, per database: batch `SELECT`s, guarded `UPDATE`s, counts.
//! Rows come back by alias: `kmsf_id` (text), `kmsf_key`, `kmsf_n` (column count) and
//! `kmsf_t<i>` (text) / `kmsf_b<i>` (binary).

use super::compute::NewValues;
use super::{AttrSpec, Row, TableSpec};
use crate::model::IdKind;
use crate::sql::{BackendKind, SqlValue};

/// A statement and its positional binds.
pub(crate) type Statement = (String, Vec<SqlValue>);

fn id_as_text(b: BackendKind, col: &str) -> String {
    match b {
        BackendKind::Mysql => format!("CAST({col} AS CHAR)"),
        _ => format!("CAST({col} AS TEXT)"),
    }
}

fn null_safe_eq(b: BackendKind, col: &str, placeholder: &str) -> String {
    match b {
        BackendKind::Postgres => format!("{col} IS NOT DISTINCT FROM {placeholder}"),
        BackendKind::Mysql => format!("{col} <=> {placeholder}"),
        BackendKind::Sqlite => format!("{col} IS {placeholder}"),
    }
}

/// `SELECT` of a batch: rows matching `filter`, after the cursor, with `extra_cols` (read as
/// text) before the attribute columns.
pub(crate) fn select_batch(
    b: BackendKind,
    t: &TableSpec,
    filter: &str,
    after: Option<&str>,
    limit: usize,
    lock: bool,
    extra_cols: &[String],
) -> Statement {
    let q = |s: &str| b.quote(s);
    let id = q(&t.id_column);
    let mut cols = vec![
        format!("{} AS kmsf_id", id_as_text(b, &id)),
        format!("{} AS kmsf_key", q(&t.key_column)),
    ];
    let n = extra_cols.len() + t.attributes.len();
    let int = if b == BackendKind::Mysql {
        "SIGNED"
    } else {
        "BIGINT"
    };
    cols.push(format!("CAST({n} AS {int}) AS kmsf_n"));
    for (i, c) in extra_cols.iter().enumerate() {
        cols.push(format!("{} AS kmsf_t{i}", q(c)));
    }
    for (i, a) in t.attributes.iter().enumerate() {
        let alias = if a.binary { "b" } else { "t" };
        cols.push(format!(
            "{} AS kmsf_{alias}{}",
            q(&a.column),
            i + extra_cols.len()
        ));
    }
    let mut binds = Vec::new();
    let mut sql = format!(
        "SELECT {} FROM {} WHERE ({filter})",
        cols.join(", "),
        q(&t.table)
    );
    if let Some(after) = after {
        match t.id_kind {
            IdKind::Integer => {
                binds.push(SqlValue::Int(after.parse().unwrap_or(i64::MIN)));
                sql.push_str(&format!(" AND {id} > {}", b.placeholder(binds.len())));
            }
            IdKind::Other => {
                binds.push(SqlValue::Text(Some(after.to_owned())));
                sql.push_str(&format!(
                    " AND {} > {}",
                    id_as_text(b, &id),
                    b.placeholder(binds.len())
                ));
            }
        }
    }
    let order = match t.id_kind {
        IdKind::Integer => id.clone(),
        IdKind::Other => id_as_text(b, &id),
    };
    sql.push_str(&format!(" ORDER BY {order} LIMIT {limit}"));
    if lock && b == BackendKind::Postgres {
        sql.push_str(" FOR UPDATE SKIP LOCKED");
    }
    (sql, binds)
}

/// The single-row re-read of a row that lost a guarded update.
pub(crate) fn select_one(b: BackendKind, t: &TableSpec, id: &str) -> Statement {
    let filter = format!("{} = {}", id_column_expr(b, t), b.placeholder(1));
    let (sql, _) = select_batch(b, t, &filter, None, 1, false, &[]);
    (sql, vec![id_bind(t, id)])
}

pub(crate) fn id_bind(t: &TableSpec, id: &str) -> SqlValue {
    match t.id_kind {
        IdKind::Integer => SqlValue::Int(id.parse().unwrap_or_default()),
        IdKind::Other => SqlValue::Text(Some(id.to_owned())),
    }
}

/// The id column as compared with a bound id: itself, or its text for non-integer ids.
fn id_column_expr(b: BackendKind, t: &TableSpec) -> String {
    match t.id_kind {
        IdKind::Integer => b.quote(&t.id_column),
        IdKind::Other => id_as_text(b, &b.quote(&t.id_column)),
    }
}

/// Rows whose key column is set and not at the current version.
pub(crate) fn not_current(b: BackendKind, t: &TableSpec) -> String {
    let col = b.quote(&t.key_column);
    format!(
        "{col} IS NOT NULL AND {col} NOT LIKE 'v{}:%'",
        t.spec.current_version()
    )
}

/// Rows without a key whose kms_rails columns hold something (their values are kms_rails
/// envelopes still to migrate).
#[cfg(feature = "kms-rails")]
pub(crate) fn kms_rails_filter(b: BackendKind, t: &TableSpec) -> String {
    let cols: Vec<String> = t
        .attributes
        .iter()
        .filter(|a| a.kms_rails.is_some())
        .map(|a| format!("{} IS NOT NULL", b.quote(&a.column)))
        .collect();
    format!(
        "{} IS NULL AND ({})",
        b.quote(&t.key_column),
        cols.join(" OR ")
    )
}

/// Rows without a key whose plaintext columns hold something (backfill).
pub(crate) fn backfill_filter(b: BackendKind, t: &TableSpec, sources: &[&str]) -> String {
    format!(
        "{} IS NULL AND ({})",
        b.quote(&t.key_column),
        sources
            .iter()
            .map(|s| format!("{} IS NOT NULL", b.quote(s)))
            .collect::<Vec<_>>()
            .join(" OR ")
    )
}

pub(crate) fn count(b: BackendKind, t: &TableSpec, filter: &str) -> String {
    format!(
        "SELECT COUNT(*) AS n FROM {} WHERE {filter}",
        b.quote(&t.table)
    )
}

fn col_value(a: &AttrSpec, v: Option<Vec<u8>>) -> SqlValue {
    if a.binary {
        SqlValue::Bytes(v)
    } else {
        SqlValue::Text(v.map(|b| String::from_utf8(b).unwrap_or_default()))
    }
}

/// `UPDATE … SET key (and ciphertexts) WHERE <guards> AND id = ?` of one row: the guards are
/// the key column's old value and, when the ciphertexts are rewritten, their old values.
pub(crate) fn guarded_update(
    b: BackendKind,
    t: &TableSpec,
    row: &Row,
    new: NewValues,
) -> Statement {
    let mut binds = vec![SqlValue::Text(Some(new.key))];
    let mut sets = vec![format!("{} = {}", b.quote(&t.key_column), b.placeholder(1))];
    let mut guards = Vec::new();
    if let Some(cols) = new.cols {
        for (a, v) in t.attributes.iter().zip(cols) {
            binds.push(col_value(a, v));
            sets.push(format!(
                "{} = {}",
                b.quote(&a.column),
                b.placeholder(binds.len())
            ));
        }
        for (a, old) in t.attributes.iter().zip(&row.cols) {
            binds.push(col_value(a, old.clone()));
            guards.push(null_safe_eq(
                b,
                &b.quote(&a.column),
                &b.placeholder(binds.len()),
            ));
        }
    }
    match &row.key {
        Some(old) => {
            binds.push(SqlValue::Text(Some(old.clone())));
            guards.push(format!(
                "{} = {}",
                b.quote(&t.key_column),
                b.placeholder(binds.len())
            ));
        }
        // a row without a key yet (a kms_rails migration): it must still have none
        None => guards.push(format!("{} IS NULL", b.quote(&t.key_column))),
    }
    binds.push(id_bind(t, &row.id));
    // `?` placeholders bind in text order: guards first, then the id, as the binds were pushed
    let sql = format!(
        "UPDATE {} SET {} WHERE {} AND {} = {}",
        b.quote(&t.table),
        sets.join(", "),
        guards.join(" AND "),
        id_column_expr(b, t),
        b.placeholder(binds.len())
    );
    (sql, binds)
}

/// Postgres: the rows of a batch in guarded `UPDATE … FROM (VALUES …) RETURNING id`
/// statements (as few as the bind limit allows); each returns the ids it updated.
pub(crate) fn batch_update_pg(t: &TableSpec, rows: &[(Row, NewValues)]) -> Vec<Statement> {
    let b = BackendKind::Postgres;
    let full = rows.first().is_some_and(|(_, n)| n.cols.is_some());
    let per_row = 3 + if full { 2 * t.attributes.len() } else { 0 };
    // Postgres allows 65535 binds per statement
    let chunk = (60_000 / per_row).max(1);
    let mut names = vec![
        "kmsf_id".to_owned(),
        "kmsf_old".to_owned(),
        "kmsf_new".to_owned(),
    ];
    let mut sets = vec![format!("{} = v.kmsf_new", b.quote(&t.key_column))];
    let mut guards = vec![format!("t.{} = v.kmsf_old", b.quote(&t.key_column))];
    if full {
        for (i, a) in t.attributes.iter().enumerate() {
            names.push(format!("kmsf_n{i}"));
            names.push(format!("kmsf_o{i}"));
            sets.push(format!("{} = v.kmsf_n{i}", b.quote(&a.column)));
            guards.push(format!(
                "t.{} IS NOT DISTINCT FROM v.kmsf_o{i}",
                b.quote(&a.column)
            ));
        }
    }
    let id_match = match t.id_kind {
        IdKind::Integer => format!("t.{} = v.kmsf_id", b.quote(&t.id_column)),
        IdKind::Other => format!("CAST(t.{} AS TEXT) = v.kmsf_id", b.quote(&t.id_column)),
    };
    let id_cast = if t.id_kind == IdKind::Integer {
        "::bigint"
    } else {
        "::text"
    };
    rows.chunks(chunk)
        .map(|part| {
            let mut binds = Vec::with_capacity(part.len() * per_row);
            let mut tuples = Vec::with_capacity(part.len());
            for (row, new) in part {
                let mut ph = Vec::with_capacity(per_row);
                binds.push(id_bind(t, &row.id));
                ph.push(format!("{}{id_cast}", b.placeholder(binds.len())));
                binds.push(SqlValue::Text(row.key.clone()));
                ph.push(format!("{}::text", b.placeholder(binds.len())));
                binds.push(SqlValue::Text(Some(new.key.clone())));
                ph.push(format!("{}::text", b.placeholder(binds.len())));
                if let Some(cols) = &new.cols {
                    for ((a, new_v), old_v) in t.attributes.iter().zip(cols).zip(&row.cols) {
                        let cast = if a.binary { "::bytea" } else { "::text" };
                        binds.push(col_value(a, new_v.clone()));
                        ph.push(format!("{}{cast}", b.placeholder(binds.len())));
                        binds.push(col_value(a, old_v.clone()));
                        ph.push(format!("{}{cast}", b.placeholder(binds.len())));
                    }
                }
                tuples.push(format!("({})", ph.join(", ")));
            }
            let sql = format!(
                "UPDATE {} AS t SET {} FROM (VALUES {}) AS v({}) WHERE {id_match} AND {} RETURNING CAST(t.{} AS TEXT) AS kmsf_id",
                b.quote(&t.table),
                sets.join(", "),
                tuples.join(", "),
                names.join(", "),
                guards.join(" AND "),
                b.quote(&t.id_column)
            );
            (sql, binds)
        })
        .collect()
}

/// The backfill write of one row: key and ciphertexts, only while the key column is NULL.
pub(crate) fn backfill_update(
    b: BackendKind,
    t: &TableSpec,
    id: &str,
    new: NewValues,
) -> Statement {
    let mut binds = vec![SqlValue::Text(Some(new.key))];
    let mut sets = vec![format!("{} = {}", b.quote(&t.key_column), b.placeholder(1))];
    for (a, v) in t.attributes.iter().zip(new.cols.unwrap_or_default()) {
        binds.push(col_value(a, v));
        sets.push(format!(
            "{} = {}",
            b.quote(&a.column),
            b.placeholder(binds.len())
        ));
    }
    binds.push(id_bind(t, id));
    let sql = format!(
        "UPDATE {} SET {} WHERE {} = {} AND {} IS NULL",
        b.quote(&t.table),
        sets.join(", "),
        id_column_expr(b, t),
        b.placeholder(binds.len()),
        b.quote(&t.key_column)
    );
    (sql, binds)
}

/// Rows per key version: `kmsf_version` (`v1:`, `NULL`, `legacy`, `malformed` — a `vN:`
/// value whose version is not a number or whose rest is empty or not base64) and `n`.
pub(crate) fn key_versions(b: BackendKind, table: &str, key_column: &str) -> String {
    let k = b.quote(key_column);
    let prefix = match b {
        BackendKind::Postgres => format!("substring({k} from 1 for position(':' in {k}))"),
        BackendKind::Sqlite => format!("substr({k}, 1, instr({k}, ':'))"),
        BackendKind::Mysql => format!("SUBSTRING({k}, 1, LOCATE(':', {k}))"),
    };
    let well_formed = "'^v[0-9]+:[A-Za-z0-9+/=[:space:]]+$'";
    let malformed = match b {
        BackendKind::Postgres => format!("{k} !~ {well_formed}"),
        BackendKind::Mysql => format!("{k} NOT REGEXP {well_formed}"),
        BackendKind::Sqlite => format!(
            "(substr({prefix}, 2, length({prefix}) - 2) GLOB '*[^0-9]*' OR length({prefix}) < 3 \
             OR substr({k}, instr({k}, ':') + 1) = '' \
             OR substr({k}, instr({k}, ':') + 1) GLOB '*[^A-Za-z0-9+/=' || char(9, 10, 13, 32) || ']*')"
        ),
    };
    format!(
        "SELECT CASE WHEN {k} IS NULL THEN 'NULL' \
         WHEN {k} LIKE 'v%:%' AND {k} NOT LIKE 'vault:%' AND {malformed} THEN 'malformed' \
         WHEN {k} LIKE 'v%:%' AND {k} NOT LIKE 'vault:%' THEN {prefix} ELSE 'legacy' END AS kmsf_version, COUNT(*) AS n \
         FROM {} GROUP BY 1 ORDER BY 1",
        b.quote(table)
    )
}

/// `UPDATE … SET <bidx> = ? WHERE <key> = <old> AND <ciphertext> = <old> AND <bidx> IS NULL
/// AND id = ?` (blind-index backfill; `t` holds only the indexed attribute).
pub(crate) fn bidx_update(
    b: BackendKind,
    t: &TableSpec,
    bidx_column: &str,
    row: &Row,
    value: SqlValue,
) -> Statement {
    let mut binds = vec![value];
    let mut guards = Vec::new();
    for (a, old) in t.attributes.iter().zip(&row.cols) {
        binds.push(col_value(a, old.clone()));
        guards.push(null_safe_eq(
            b,
            &b.quote(&a.column),
            &b.placeholder(binds.len()),
        ));
    }
    binds.push(SqlValue::Text(row.key.clone()));
    guards.push(format!(
        "{} = {}",
        b.quote(&t.key_column),
        b.placeholder(binds.len())
    ));
    binds.push(id_bind(t, &row.id));
    let sql = format!(
        "UPDATE {} SET {} = {} WHERE {} AND {} IS NULL AND {} = {}",
        b.quote(&t.table),
        b.quote(bidx_column),
        b.placeholder(1),
        guards.join(" AND "),
        b.quote(bidx_column),
        id_column_expr(b, t),
        b.placeholder(binds.len())
    );
    (sql, binds)
}
