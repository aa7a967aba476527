//! Backfill of a blind-index column over a table (an index added to an existing attribute, or
//! the second column of an index being rotated).

use std::time::Instant;

use super::compute::raw_ciphertext;
use super::run::{Row, TableDb, compute, report, run_kms};
use super::statements;
use super::{RowError, Summary, TableOptions, TableSpec};
use crate::blind_index::{BidxValue, BlindIndex, MasterKey};
use crate::cipher;
use crate::error::{Error, ErrorKind, Result};
use crate::kms::Kms;
use crate::model::{BidxHandle, KeyHandle, KmsModel};
use crate::sql::SqlValue;

/// What one index backfill needs: the table (with only the indexed attribute), the index and
/// its master key.
struct Target<'a> {
    t: TableSpec,
    column: &'static str,
    binary: bool,
    index: &'static BlindIndex,
    master: &'a MasterKey,
}

impl Target<'_> {
    async fn compute(&self, kms: &Kms, row: &Row) -> Result<Option<BidxValue>> {
        let Some(stored) = row.cols.first().and_then(|c| c.as_ref()) else {
            return Ok(None);
        };
        let attr = &self.t.attributes[0];
        let plaintext = if stored.is_empty() {
            // Lockbox leaves "" unencrypted
            zeroize::Zeroizing::new(Vec::new())
        } else {
            let key_col = row
                .key
                .as_deref()
                .ok_or_else(|| Error::new(ErrorKind::BadFormat, "NULL key column"))?;
            let ctx = self.t.context(&row.id);
            let key = kms
                .unwrap_data_key(&self.t.spec, None, key_col, &move |_| Ok(Some(ctx.clone())))
                .await?;
            cipher::decrypt(&key, &raw_ciphertext(attr, stored)?, attr.options())?
        };
        let text = std::str::from_utf8(&plaintext)
            .map_err(|_| Error::new(ErrorKind::Codec, "the attribute is not UTF-8 text"))?;
        self.index.compute_async(self.master, text).await.map(Some)
    }
}

/// Fill blind index `bidx` of model `M` (a position in `M::BLIND_INDEXES`) for every row whose
/// index column is NULL and whose attribute is not: decrypt the attribute (one KMS `Decrypt`
/// per row, concurrent up to `opts.concurrency`), compute the index on tokio's blocking pool
/// and write it with `UPDATE … SET <bidx> = ? WHERE id = ? AND <key> = <old> AND <ciphertext>
/// = <old> AND <bidx> IS NULL` — so a row the application changed meanwhile is left to the
/// application (it writes the index itself), and a rerun continues where a stopped run ended.
/// `bidx` is the derive's constant (`Person::EMAIL_BIDX`). Needs the model's default context (`{model_name, model_id}`), like the other table
/// operations.
pub async fn backfill_blind_index<M: KmsModel, D: TableDb + ?Sized>(
    db: &mut D,
    kms: &Kms,
    handle: BidxHandle<M>,
    mut opts: TableOptions<'_>,
) -> Result<Summary> {
    let bidx = handle.index();
    let def = M::BLIND_INDEXES.get(bidx).ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            format!("{} has no blind index #{bidx}", M::MODEL_NAME),
        )
    })?;
    let attr = &M::ATTRIBUTES[def.attr];
    let mut t = TableSpec::of_model(KeyHandle::<M>::__new(attr.key))?;
    t.attributes.retain(|a| a.column == attr.column);
    let target = Target {
        t,
        column: def.column,
        binary: def.binary,
        index: M::blind_index(bidx)?,
        master: kms.blind_index_key(def.master_key)?,
    };
    let kms = run_kms(kms, &opts);
    let started = Instant::now();
    let b = db.backend();
    let t = &target.t;
    let filter = format!(
        "{} IS NULL AND {} IS NOT NULL AND {} IS NOT NULL",
        b.quote(target.column),
        b.quote(attr.column),
        b.quote(&t.key_column)
    );
    let total = db.count(&statements::count(b, t, &filter)).await?;
    let mut summary = Summary::default();
    let mut after: Option<String> = None;
    let mut batches = 0;
    while opts.max_batches.is_none_or(|m| batches < m) {
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
        let results = compute(&rows, &opts, batches == 1, |row| target.compute(&kms, row)).await?;
        for (row, result) in rows.into_iter().zip(results) {
            match result {
                Err(error) => summary.errors.push(RowError {
                    error: error.context(format!("{}#{} {}", t.model_name, row.id, target.column)),
                    id: row.id,
                }),
                Ok(None) => summary.skipped += 1,
                Ok(Some(value)) => {
                    let value = if target.binary {
                        SqlValue::Bytes(Some(value.into_bytes()))
                    } else {
                        SqlValue::Text(value.into_string())
                    };
                    let (sql, binds) = statements::bidx_update(b, t, target.column, &row, value);
                    if db.execute(&sql, binds).await? == 1 {
                        summary.done += 1;
                    } else {
                        summary.skipped += 1;
                    }
                }
            }
        }
        after = Some(last);
        report(&mut opts, &summary, total, started);
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}
