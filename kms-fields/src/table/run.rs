//! The table loops and what they need from a database connection.

use std::collections::HashSet;
use std::time::Instant;

use super::compute::{NewValues, backfill_row, for_each_row, rotate_row};
use super::statements::{self, Statement};
use super::{Progress, RotationMode, RowError, Summary, TableOptions, TableSpec};
use crate::envelope::StoredKey;
use crate::error::{Error, ErrorKind, Result};
use crate::kms::Kms;
use crate::sql::{BackendKind, SqlValue};

/// A row as the table operations read it: its id as text, its key column and the columns the
/// operation asked for (the `kmsf_t<i>` / `kmsf_b<i>` aliases, in order). Built by
/// [`TableDb`] implementations.
#[derive(Clone)]
pub struct Row {
    /// `kmsf_id`.
    pub id: String,
    /// `kmsf_key`.
    pub key: Option<String>,
    /// `kmsf_t0`/`kmsf_b0`, `kmsf_t1`/`kmsf_b1`, … (`kmsf_n` of them); text as UTF-8 bytes.
    pub cols: Vec<Option<Vec<u8>>>,
}

impl std::fmt::Debug for Row {
    /// Ciphertexts and key values are not printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Row")
            .field("id", &self.id)
            .field("columns", &self.cols.len())
            .finish_non_exhaustive()
    }
}

/// What the table operations need from a database connection. Implemented by the ORM crates
/// (`kms_fields_diesel`, `kms_fields_seaorm`) for their connections; statements use the
/// backend's placeholders (`$n` on Postgres, `?` elsewhere) and bind [`SqlValue`]s.
#[async_trait::async_trait]
pub trait TableDb: Send {
    /// The database family.
    fn backend(&self) -> BackendKind;
    /// Load rows by the aliases of [`Row`] (`kmsf_id`, `kmsf_key`, `kmsf_n`, `kmsf_t<i>` /
    /// `kmsf_b<i>`).
    async fn load_rows(&mut self, sql: &str, binds: Vec<SqlValue>) -> Result<Vec<Row>>;
    /// A statement returning one text column `kmsf_id` per row (`… RETURNING`).
    async fn load_ids(&mut self, sql: &str, binds: Vec<SqlValue>) -> Result<Vec<String>>;
    /// Run a statement; the affected row count.
    async fn execute(&mut self, sql: &str, binds: Vec<SqlValue>) -> Result<usize>;
    /// `SELECT COUNT(*) AS n …`.
    async fn count(&mut self, sql: &str) -> Result<u64>;
    /// `SELECT <text> AS kmsf_version, COUNT(*) AS n … GROUP BY 1`.
    async fn group_counts(&mut self, sql: &str) -> Result<Vec<(String, u64)>>;
    /// Start a transaction; the statements until [`commit`](Self::commit) or
    /// [`rollback`](Self::rollback) run in it.
    async fn begin(&mut self) -> Result<()>;
    /// Commit the transaction.
    async fn commit(&mut self) -> Result<()>;
    /// Roll the transaction back.
    async fn rollback(&mut self) -> Result<()>;
}

/// End the transaction `f` ran in: commit when it succeeded, roll back when it failed.
pub(crate) async fn finish<D: TableDb + ?Sized, T>(db: &mut D, result: Result<T>) -> Result<T> {
    match result {
        Ok(v) => {
            db.commit().await?;
            Ok(v)
        }
        Err(e) => {
            // the original error matters more than a failed rollback
            let _ = db.rollback().await;
            Err(e)
        }
    }
}

/// Rows per key version of a key column: `("v1:", n)`, `("NULL", n)`, `("legacy", n)`, and
/// `("malformed", n)` for `vN:` values that are not base64 (unreadable).
pub async fn key_versions<D: TableDb + ?Sized>(
    db: &mut D,
    table: &str,
    key_column: &str,
) -> Result<Vec<(String, u64)>> {
    let sql = statements::key_versions(db.backend(), table, key_column);
    db.group_counts(&sql).await
}

/// The rate-limited handle of a run.
pub(super) fn run_kms(kms: &Kms, opts: &TableOptions<'_>) -> Kms {
    match opts.rate_per_second {
        Some(rate) => kms.with_rate_limit(rate),
        None => kms.clone(),
    }
}

pub(super) fn report(opts: &mut TableOptions<'_>, summary: &Summary, total: u64, started: Instant) {
    if let Some(cb) = opts.progress.as_mut() {
        cb(&Progress {
            done: summary.done,
            total,
            errors: summary.errors.len() as u64,
            conflicts: summary.conflicts,
            elapsed: started.elapsed(),
        });
    }
}

/// Compute `rows` with `f` (bounded concurrency, results in order). On a run's first batch
/// (`probe`), the first [`TableOptions::give_up_after`] rows go first: when every one of them
/// fails with the same kind of error, the configuration is wrong (a version the key spec does
/// not name, a wrong model name, missing credentials) and the run stops with ONE error saying
/// what to check — no KMS call is spent on the rest of the table.
pub(super) async fn compute<'r, F, Fut, T>(
    rows: &'r [Row],
    opts: &TableOptions<'_>,
    probe: bool,
    f: F,
) -> Result<Vec<Result<T>>>
where
    F: Fn(&'r Row) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let n = if probe {
        opts.give_up_after.min(rows.len())
    } else {
        0
    };
    let (head, tail) = rows.split_at(n);
    let mut results = for_each_row(head, opts.concurrency, &f).await;
    if n > 0 {
        let errors: Vec<&Error> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        if errors.len() == n
            && let Some(e) = give_up(&errors)
        {
            return Err(e);
        }
    }
    results.extend(for_each_row(tail, opts.concurrency, &f).await);
    Ok(results)
}

/// The one error of a run whose first rows all failed with `errors[0]`'s kind, if that kind
/// points at the configuration.
fn give_up(errors: &[&Error]) -> Option<Error> {
    let first = *errors.first()?;
    if !errors.iter().all(|e| e.kind() == first.kind()) {
        return None;
    }
    let hint = match first.kind() {
        ErrorKind::VersionNotActive(v) => format!(
            "the rows are on key version {v}, which the key spec does not name: give that version's key id (CLI: --previous {v}=KEY_ID; KeySpec::previous_version)"
        ),
        ErrorKind::DecryptionFailed => "the rows' encryption context or key does not match: check the model name (CLI: --model-name), the id column and each version's key id".to_owned(),
        ErrorKind::AccessDenied
        | ErrorKind::Provider
        | ErrorKind::ProviderUnavailable
        | ErrorKind::MissingKeyId
        | ErrorKind::KeyUnusable
        | ErrorKind::KeyNotDerived
        | ErrorKind::Config => {
            "check the KMS configuration: credentials, region or endpoint, and the key ids".to_owned()
        }
        _ => return None,
    };
    Some(Error::new(
        first.kind(),
        format!(
            "stopped: the first {} rows all failed the same way ({first}): {hint}",
            errors.len()
        ),
    ))
}

/// Rotate every row of `t.table` whose key column is not at the current version (see the
/// [module documentation](super)). `db` is a connection of an ORM crate: call
/// `kms_fields_diesel::rotation::rotate_table` or `kms_fields_seaorm::rotation::rotate_table`.
pub async fn rotate_table<D: TableDb + ?Sized>(
    db: &mut D,
    kms: &Kms,
    t: &TableSpec,
    mut opts: TableOptions<'_>,
) -> Result<Summary> {
    if t.encrypts_files && opts.mode == RotationMode::NewDataKey {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "{}.{}: this key also encrypts files, which new data keys would leave unreadable: re-wrap the table (RotationMode::Rewrap) or rotate each record with rotate_kms_key_with_attachments",
                t.table, t.key_column
            ),
        ));
    }
    let started = Instant::now();
    let b = db.backend();
    let kms = run_kms(kms, &opts);
    let filter = statements::not_current(b, t);
    let total = db.count(&statements::count(b, t, &filter)).await?;
    let mut summary = Summary::default();
    let mut batches = 0;
    // A pass walks the table by primary key once. Rows a pass could not take — locked by a
    // concurrent writer (`SKIP LOCKED`), or written between its batches — are still on an old
    // version afterwards: walk again until none are left, or a pass moves none of them.
    let mut pass = 0;
    'passes: loop {
        pass += 1;
        let done_before = summary.done + summary.skipped;
        let mut after: Option<String> = None;
        loop {
            if opts.max_batches.is_some_and(|m| batches >= m) {
                break 'passes;
            }
            batches += 1;
            let select = statements::select_batch(
                b,
                t,
                &filter,
                after.as_deref(),
                opts.batch_size.max(1),
                true,
                &[],
            );
            let batch = Batch {
                kms: &kms,
                t,
                opts: &opts,
                probe: batches == 1,
            };
            let last = if b == BackendKind::Postgres {
                // the batch's rows stay locked (FOR UPDATE SKIP LOCKED) until it is written
                db.begin().await?;
                let result = batch.run(db, select, &mut summary).await;
                finish(db, result).await?
            } else {
                batch.run(db, select, &mut summary).await?
            };
            let Some(last) = last else { break };
            after = Some(last);
            report(&mut opts, &summary, total, started);
        }
        summary.remaining = db.count(&statements::count(b, t, &filter)).await?;
        let failed = distinct_errors(&mut summary.errors);
        let progressed = summary.done + summary.skipped > done_before;
        if summary.remaining <= failed || pass >= MAX_PASSES {
            break;
        }
        if !progressed {
            // the rows left are locked (another worker's batch, a writer's transaction): give
            // them a moment before the next pass
            tokio::time::sleep(PASS_BACKOFF * (1 << (pass - 1).min(5))).await;
        }
        tracing::debug!(target: "kms_fields::table", table = %t.table, pass, remaining = summary.remaining, "rows left on old versions: another pass");
    }
    summary.remaining = db.count(&statements::count(b, t, &filter)).await?;
    distinct_errors(&mut summary.errors);
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Passes of [`rotate_table`] over the table, at most.
const MAX_PASSES: usize = 8;
/// The wait before a pass that follows one which moved no row (doubling, at most 32×).
const PASS_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

/// Keep one error per row (the last), in first-seen order; returns their number.
pub(super) fn distinct_errors(errors: &mut Vec<RowError>) -> u64 {
    let mut seen = std::collections::HashMap::new();
    let mut out: Vec<RowError> = Vec::with_capacity(errors.len());
    for e in errors.drain(..) {
        match seen.get(&e.id) {
            Some(&i) => out[i] = e,
            None => {
                seen.insert(e.id.clone(), out.len());
                out.push(e);
            }
        }
    }
    *errors = out;
    errors.len() as u64
}

/// One batch of a rotation.
#[derive(Clone, Copy)]
struct Batch<'a, 'o> {
    kms: &'a Kms,
    t: &'a TableSpec,
    opts: &'a TableOptions<'o>,
    /// The run's first batch (see [`compute`]).
    probe: bool,
}

impl Batch<'_, '_> {
    /// Rotate the rows `select` returns; the id of the last one, `None` when there are none.
    async fn run<D: TableDb + ?Sized>(
        self,
        db: &mut D,
        select: Statement,
        summary: &mut Summary,
    ) -> Result<Option<String>> {
        let (sql, binds) = select;
        let rows = db.load_rows(&sql, binds).await?;
        let Some(last) = rows.last().map(|r| r.id.clone()) else {
            return Ok(None);
        };
        let attempts = self.opts.max_attempts.max(1);
        let mut pending = rows;
        for attempt in 0..attempts {
            if pending.is_empty() {
                break;
            }
            let results = compute(&pending, self.opts, self.probe && attempt == 0, |row| {
                rotate_row(self.kms, self.t, self.opts.mode, row)
            })
            .await?;
            let mut ready = Vec::with_capacity(pending.len());
            for (row, result) in pending.into_iter().zip(results) {
                match result {
                    Err(error) => summary.errors.push(RowError { id: row.id, error }),
                    Ok(new) => ready.push((row, new)),
                }
            }
            let lost = self.write(db, ready, summary).await?;
            pending = self.reread_lost(db, lost, summary).await?;
            if attempt + 1 == attempts {
                for row in pending.drain(..) {
                    summary.errors.push(RowError {
                        id: row.id,
                        error: Error::new(
                            ErrorKind::Conflict,
                            "the row kept changing under concurrent writers",
                        ),
                    });
                }
            }
        }
        Ok(Some(last))
    }

    /// Write the batch — one statement on Postgres, one transaction elsewhere — and return the
    /// rows whose guard failed (a concurrent writer changed them).
    async fn write<D: TableDb + ?Sized>(
        self,
        db: &mut D,
        ready: Vec<(Row, NewValues)>,
        summary: &mut Summary,
    ) -> Result<Vec<Row>> {
        let b = db.backend();
        if b == BackendKind::Postgres {
            let mut updated = HashSet::new();
            for (sql, binds) in statements::batch_update_pg(self.t, &ready) {
                updated.extend(db.load_ids(&sql, binds).await?);
            }
            summary.done += updated.len() as u64;
            return Ok(ready
                .into_iter()
                .filter(|(r, _)| !updated.contains(&r.id))
                .map(|(r, _)| r)
                .collect());
        }
        db.begin().await?;
        let result = async {
            let mut lost = Vec::new();
            let mut done = 0;
            for (row, new) in ready {
                let (sql, binds) = statements::guarded_update(b, self.t, &row, new);
                if db.execute(&sql, binds).await? == 1 {
                    done += 1;
                } else {
                    lost.push(row);
                }
            }
            Ok((done, lost))
        }
        .await;
        let (done, lost) = finish(db, result).await?;
        summary.done += done;
        Ok(lost)
    }

    /// Re-read rows that lost their guarded update: retry those still not at the current
    /// version, count the others as skipped.
    async fn reread_lost<D: TableDb + ?Sized>(
        self,
        db: &mut D,
        lost: Vec<Row>,
        summary: &mut Summary,
    ) -> Result<Vec<Row>> {
        let mut retry = Vec::new();
        for row in lost {
            let (sql, binds) = statements::select_one(db.backend(), self.t, &row.id);
            let fresh = db.load_rows(&sql, binds).await?;
            match fresh.into_iter().next() {
                Some(r)
                    if r.key.is_some()
                        && r.key.as_deref().and_then(StoredKey::version_of)
                            != Some(self.t.spec.current_version()) =>
                {
                    summary.conflicts += 1;
                    retry.push(r);
                }
                _ => summary.skipped += 1,
            }
        }
        Ok(retry)
    }
}

/// Encrypt existing plaintext columns into the key and ciphertext columns of rows that have no
/// key yet (Lockbox's `migrate`): `sources[i]` is the plaintext column of `t.attributes[i]`,
/// read as text. Each row gets a new data key (one KMS `Encrypt`), and ONE guarded
/// `UPDATE … WHERE id = ? AND <key column> IS NULL`, so a rerun continues where a killed run
/// stopped and rows the application already wrote are left alone. The plaintext columns are
/// not cleared: drop them once the application reads the encrypted ones.
pub async fn backfill_table<D: TableDb + ?Sized>(
    db: &mut D,
    kms: &Kms,
    t: &TableSpec,
    sources: &[&str],
    mut opts: TableOptions<'_>,
) -> Result<Summary> {
    if sources.len() != t.attributes.len() {
        return Err(Error::new(
            ErrorKind::Config,
            "backfill: one plaintext column per attribute",
        ));
    }
    let started = Instant::now();
    let b = db.backend();
    let kms = run_kms(kms, &opts);
    let filter = statements::backfill_filter(b, t, sources);
    let total = db.count(&statements::count(b, t, &filter)).await?;
    let extra: Vec<String> = sources.iter().map(|s| (*s).to_owned()).collect();
    let plain_t = TableSpec {
        attributes: Vec::new(),
        ..t.clone()
    };
    let mut summary = Summary::default();
    let mut after: Option<String> = None;
    let mut batches = 0;
    while opts.max_batches.is_none_or(|m| batches < m) {
        batches += 1;
        let (sql, binds) = statements::select_batch(
            b,
            &plain_t,
            &filter,
            after.as_deref(),
            opts.batch_size.max(1),
            false,
            &extra,
        );
        let rows = db.load_rows(&sql, binds).await?;
        let Some(last) = rows.last().map(|r| r.id.clone()) else {
            break;
        };
        let results = compute(&rows, &opts, batches == 1, |row| backfill_row(&kms, t, row)).await?;
        for (row, result) in rows.into_iter().zip(results) {
            match result {
                Err(error) => summary.errors.push(RowError { id: row.id, error }),
                Ok(new) => {
                    let (sql, binds) = statements::backfill_update(b, t, &row.id, new);
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
