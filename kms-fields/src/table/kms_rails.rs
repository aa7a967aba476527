//! Migrating a table's kms_rails values to the per-record format (feature `kms-rails`).

use std::time::Instant;

use super::compute::{NewValues, raw_ciphertext, row_location, stored_ciphertext};
use super::run::{compute, distinct_errors, report, run_kms};
use super::statements;
use super::{Row, RowError, Summary, TableDb, TableOptions, TableSpec};
use crate::data_key::DataKey;
use crate::error::{Error, ErrorKind, Result};
use crate::kms::Kms;
use crate::kms_rails::Envelope;

/// Move every kms_rails value of `t.table` to the per-record format: rows whose key column is
/// NULL and whose kms_rails columns (the [`AttrSpec`](super::AttrSpec)s with `kms_rails` set;
/// [`TableSpec::of_model`] takes them from `#[kms(encrypted, kms_rails(…))]`) hold a value.
/// Each row gets a new data key: its kms_rails envelopes are opened (the value's own data key
/// with the current version's key id and the attribute's kms_rails context), encrypted again
/// under the new key, the key wrapped with the row's context, and the row written with ONE
/// guarded `UPDATE … WHERE id = ? AND <key column> IS NULL AND <each column> = <old value>` —
/// a row the application wrote meanwhile is left alone. Resumable; runs several passes like
/// [`rotate_table`](super::rotate_table).
///
/// [`Summary::remaining`] counts the rows still holding kms_rails values when it returns: `0`
/// means the migration is finished, and the `kms_rails` flag should then be removed from the
/// model — while it is there, a database writer who NULLs a record's key column makes reads
/// take the unauthenticated kms_rails path for values in kms_rails form.
pub async fn migrate_kms_rails_table<D: TableDb + ?Sized>(
    db: &mut D,
    kms: &Kms,
    t: &TableSpec,
    mut opts: TableOptions<'_>,
) -> Result<Summary> {
    if !t.attributes.iter().any(|a| a.kms_rails.is_some()) {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "{}.{}: no attribute is marked kms_rails: nothing to migrate",
                t.table, t.key_column
            ),
        ));
    }
    let started = Instant::now();
    let b = db.backend();
    let kms = run_kms(kms, &opts);
    let filter = statements::kms_rails_filter(b, t);
    let total = db.count(&statements::count(b, t, &filter)).await?;
    let mut summary = Summary::default();
    let mut batches = 0;
    'passes: for _pass in 0..MAX_PASSES {
        let done_before = summary.done;
        let mut after: Option<String> = None;
        loop {
            if opts.max_batches.is_some_and(|m| batches >= m) {
                break 'passes;
            }
            batches += 1;
            let (sql, binds) = statements::select_batch(
                b,
                t,
                &filter,
                after.as_deref(),
                opts.batch_size.max(1),
                false,
                &[],
            );
            let rows = db.load_rows(&sql, binds).await?;
            let Some(last) = rows.last().map(|r| r.id.clone()) else {
                break;
            };
            let results =
                compute(&rows, &opts, batches == 1, |row| migrate_row(&kms, t, row)).await?;
            for (row, result) in rows.into_iter().zip(results) {
                match result {
                    Err(error) => summary.errors.push(RowError { id: row.id, error }),
                    Ok(new) => {
                        let (sql, binds) = statements::guarded_update(b, t, &row, new);
                        if db.execute(&sql, binds).await? == 1 {
                            summary.done += 1;
                        } else {
                            // written meanwhile (by the application, or another worker)
                            summary.conflicts += 1;
                        }
                    }
                }
            }
            after = Some(last);
            report(&mut opts, &summary, total, started);
        }
        summary.remaining = db.count(&statements::count(b, t, &filter)).await?;
        let failed = distinct_errors(&mut summary.errors);
        if summary.remaining <= failed || summary.done == done_before {
            break;
        }
    }
    summary.remaining = db.count(&statements::count(b, t, &filter)).await?;
    distinct_errors(&mut summary.errors);
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Passes over the table, at most.
const MAX_PASSES: usize = 4;

async fn migrate_row(kms: &Kms, t: &TableSpec, row: &Row) -> Result<NewValues> {
    migrate_row_inner(kms, t, row)
        .await
        .map_err(|e| e.context(row_location(t, row)))
}

async fn migrate_row_inner(kms: &Kms, t: &TableSpec, row: &Row) -> Result<NewValues> {
    let version = t.spec.resolve(t.spec.current_version(), None)?;
    let fresh = DataKey::generate()?;
    let mut cols = Vec::with_capacity(t.attributes.len());
    for (a, value) in t.attributes.iter().zip(&row.cols) {
        cols.push(match (value, &a.kms_rails) {
            (None, _) => None,
            (Some(v), _) if v.is_empty() => Some(Vec::new()),
            (Some(v), Some(rails)) => {
                let envelope = Envelope::parse(&raw_ciphertext(a, v)?).map_err(|_| {
                    Error::new(
                        ErrorKind::BadFormat,
                        format!(
                            "{} holds a value that is not a kms_rails envelope",
                            a.column
                        ),
                    )
                })?;
                let context = rails
                    .context
                    .as_ref()
                    .map(|(k, v)| (k.as_str(), v.as_str()));
                let plaintext = envelope.decrypt(kms, &version, context).await?;
                Some(stored_ciphertext(a, &fresh, &plaintext)?)
            }
            (Some(_), None) => {
                return Err(Error::new(
                    ErrorKind::BadFormat,
                    format!("{} has a ciphertext but {} is NULL", a.column, t.key_column),
                ));
            }
        });
    }
    let ctx = t.context(&row.id);
    let key = kms
        .wrap_data_key(&t.spec, None, &fresh, &move |_| Ok(Some(ctx.clone())))
        .await?;
    Ok(NewValues {
        key,
        cols: Some(cols),
    })
}
