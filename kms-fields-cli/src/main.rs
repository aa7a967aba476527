//! `kms-fields`: maintenance of tables encrypted with kms-fields.
//!
//! ```text
//! kms-fields status --database-url URL --table users [--key-column encrypted_kms_key]
//! kms-fields rewrap --database-url URL --table users --model-name User --to-version 2 \
//!     --key-id alias/users-2026 [--previous 1=alias/users] [--batch 1000] [--concurrency 64] [--rate 500]
//! kms-fields migrate-kms-rails --database-url URL --table users --model-name User --key-id K \
//!     --column address_enc [--context purpose=test] [--batch 1000] [--concurrency 64]
//! kms-fields box encrypt --key-id K [--context k=v]... [MESSAGE]   (stdin when no MESSAGE)
//! kms-fields box decrypt --key-id K [--version N] [--previous N=K]... [--context k=v]... [CIPHERTEXT]
//! kms-fields keygen
//! kms-fields context-hash --audit-path file --context model_name=User --context model_id=42
//! kms-fields migration-sql --backend postgres --table users --text email_enc [--binary …] [--unique-index email_bidx] [--down]
//! ```
//!
//! Key ids pick their provider as in the library (`insecure-test-key`, `local/<name>`, AWS ARNs,
//! aliases and UUIDs with the standard AWS configuration). URLs: `postgres://…`, `mysql://…`,
//! `sqlite://<path>` or a file path — prefer `DATABASE_URL` in the environment to
//! `--database-url` when it holds a password, and stdin to a `box encrypt` MESSAGE argument
//! (arguments are visible in `ps` and shell history; the command warns). Exit status: 0
//! success, 1 rows or values failed (or rows remain), 2 usage or connection errors.

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use diesel::{Connection, MysqlConnection, PgConnection, SqliteConnection};
use kms_fields::{EncryptionContext, KeySpec, Kms, KmsBox};
use kms_fields_diesel::KmsConnection;
use kms_fields_diesel::rotation::{self, Progress, TableOptions, TableSpec};

#[derive(Parser)]
#[command(
    name = "kms-fields",
    version,
    about = "Maintenance of tables encrypted with kms-fields"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Rows per key version (v1:, v2:, …), NULL keys and legacy values.
    Status(Status),
    /// Re-wrap every row's data key with the current version (resumable, safe to interrupt).
    Rewrap(Rewrap),
    /// Move kms_rails values (rows with a NULL key column) to the per-record format; exits 0
    /// once none are left — then remove the attributes' kms_rails flag.
    MigrateKmsRails(MigrateKmsRails),
    /// Encrypt or decrypt a value with the KMS directly (kms_encrypted's Box format).
    #[command(subcommand, name = "box")]
    Box(BoxCmd),
    /// Print a new random 32-byte master key for the local provider (hex).
    Keygen,
    /// Print the Vault audit-log hash of a record's context (VAULT_ADDR, VAULT_TOKEN).
    ContextHash(ContextHash),
    /// Print the SQL adding (or, with --down, dropping) kms-fields columns, for a migration.
    MigrationSql(MigrationSql),
}

#[derive(Args)]
struct ContextHash {
    /// The audit device path (as in `vault audit enable -path=<path> file …`).
    #[arg(long)]
    audit_path: String,
    /// Context pairs `k=v` (repeatable), e.g. --context model_name=User --context model_id=42.
    #[arg(long = "context", value_parser = parse_pair, required = true)]
    context: Vec<(String, String)>,
}

#[derive(Args)]
struct MigrationSql {
    /// postgres, sqlite or mysql.
    #[arg(long)]
    backend: String,
    /// The table.
    #[arg(long)]
    table: String,
    /// Key columns (default: encrypted_kms_key).
    #[arg(long = "key", value_delimiter = ',')]
    keys: Vec<String>,
    /// Text (base64) ciphertext columns.
    #[arg(long = "text", value_delimiter = ',')]
    text: Vec<String>,
    /// Binary ciphertext columns.
    #[arg(long = "binary", value_delimiter = ',')]
    binary: Vec<String>,
    /// Blind-index columns with a unique index.
    #[arg(long = "unique-index", value_delimiter = ',')]
    unique_index: Vec<String>,
    /// Blind-index columns with a plain index.
    #[arg(long = "index", value_delimiter = ',')]
    index: Vec<String>,
    /// Print the down migration instead.
    #[arg(long)]
    down: bool,
}

#[derive(Args)]
struct Db {
    /// postgres://…, mysql://…, sqlite://path or a file path.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// The table.
    #[arg(long)]
    table: String,
    /// The key column.
    #[arg(long, default_value = "encrypted_kms_key")]
    key_column: String,
}

#[derive(Args)]
struct Status {
    #[command(flatten)]
    db: Db,
}

#[derive(Args)]
struct Rewrap {
    #[command(flatten)]
    db: Db,
    /// The model name of the default context {model_name, model_id}.
    #[arg(long)]
    model_name: String,
    /// The primary key column (integer).
    #[arg(long, default_value = "id")]
    id_column: String,
    /// The version to move every row to.
    #[arg(long)]
    to_version: u32,
    /// The key id of that version.
    #[arg(long)]
    key_id: String,
    /// A version rows may still have, with its key id: `1=alias/old` (repeatable).
    #[arg(long = "previous", value_parser = parse_previous)]
    previous: Vec<(u32, String)>,
    #[command(flatten)]
    run: Run,
}

/// Batching and progress options shared by the table commands.
#[derive(Args)]
struct Run {
    /// Rows per batch.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// KMS calls in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// KMS requests per second, at most.
    #[arg(long)]
    rate: Option<f64>,
    /// Stop after this many batches (a slice of the work; the run exits 1 while rows remain).
    #[arg(long)]
    max_batches: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct MigrateKmsRails {
    #[command(flatten)]
    db: Db,
    /// The model name of the default context {model_name, model_id}.
    #[arg(long)]
    model_name: String,
    /// The primary key column (integer).
    #[arg(long, default_value = "id")]
    id_column: String,
    /// The key id the kms_rails values were encrypted with, which also wraps the new
    /// per-record keys (version 1, as the model's key).
    #[arg(long)]
    key_id: String,
    /// A binary `<attr>_enc` column holding kms_rails values (repeatable); native mode, its
    /// attribute name (associated data) is the column name without `_enc`.
    #[arg(long = "column", required = true)]
    columns: Vec<String>,
    /// kms_rails' `context_key=context_value`, if the attributes had one.
    #[arg(long, value_parser = parse_pair)]
    context: Option<(String, String)>,
    #[command(flatten)]
    run: Run,
}

#[derive(Subcommand)]
enum BoxCmd {
    /// Encrypt MESSAGE (or stdin); prints `vN:…`.
    Encrypt(BoxArgs),
    /// Decrypt CIPHERTEXT (or stdin); prints the message bytes.
    Decrypt(BoxArgs),
}

#[derive(Args)]
struct BoxArgs {
    /// The key id (of the current version).
    #[arg(long, env = "KMS_KEY_ID")]
    key_id: String,
    /// The current version.
    #[arg(long, default_value_t = 1)]
    version: u32,
    /// Previous versions: `1=alias/old` (repeatable).
    #[arg(long = "previous", value_parser = parse_previous)]
    previous: Vec<(u32, String)>,
    /// Context pairs `k=v` (repeatable); none: no context.
    #[arg(long = "context", value_parser = parse_pair)]
    context: Vec<(String, String)>,
    /// The input; stdin when absent.
    input: Option<String>,
}

fn parse_previous(s: &str) -> Result<(u32, String), String> {
    let (v, k) = s
        .split_once('=')
        .ok_or("expected VERSION=KEY_ID, e.g. 1=alias/old")?;
    Ok((
        v.parse()
            .map_err(|_| format!("not a version number: {v}"))?,
        k.to_owned(),
    ))
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or("expected KEY=VALUE")?;
    Ok((k.to_owned(), v.to_owned()))
}

/// A failure and its exit status.
struct Failure(u8, String);

impl From<kms_fields::Error> for Failure {
    fn from(e: kms_fields::Error) -> Self {
        Failure(1, e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Status(s) => status(s),
        Command::Rewrap(r) => rewrap(r),
        Command::MigrateKmsRails(m) => migrate_kms_rails(m),
        Command::Box(b) => boxed(b),
        Command::Keygen => keygen(),
        Command::ContextHash(c) => context_hash(c),
        Command::MigrationSql(m) => migration_sql(m),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, message)) => {
            eprintln!("kms-fields: {message}");
            ExitCode::from(code)
        }
    }
}

enum AnyConnection {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
    Mysql(MysqlConnection),
}

fn connect(url: &str) -> Result<AnyConnection, Failure> {
    if redact_url(url) != url && std::env::var("DATABASE_URL").ok().as_deref() != Some(url) {
        eprintln!(
            "kms-fields: warning: the database password is on the command line (visible in ps and shell history): set DATABASE_URL in the environment instead"
        );
    }
    let fail = |e: diesel::ConnectionError| {
        Failure(2, format!("cannot connect to {}: {e}", redact_url(url)))
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        PgConnection::establish(url)
            .map(AnyConnection::Pg)
            .map_err(fail)
    } else if url.starts_with("mysql://") {
        MysqlConnection::establish(url)
            .map(AnyConnection::Mysql)
            .map_err(fail)
    } else if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .or((!url.contains("://")).then_some(url))
    {
        if !std::path::Path::new(path).exists() {
            return Err(Failure(2, format!("no SQLite database at {path}")));
        }
        SqliteConnection::establish(path)
            .map(AnyConnection::Sqlite)
            .map_err(fail)
    } else {
        Err(Failure(
            2,
            format!(
                "unsupported database URL {}: use postgres://, mysql://, sqlite:// or a file path",
                redact_url(url)
            ),
        ))
    }
}

/// Hide a password in a URL.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

macro_rules! with_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            AnyConnection::Pg(ref mut $c) => $body,
            AnyConnection::Sqlite(ref mut $c) => $body,
            AnyConnection::Mysql(ref mut $c) => $body,
        }
    };
}

/// Fail clearly when the table or column is missing.
fn check_columns<C: KmsConnection>(
    conn: &mut C,
    table: &str,
    columns: &[&str],
) -> Result<(), Failure> {
    let b = C::BACKEND;
    let probe: Vec<String> = columns
        .iter()
        .map(|c| format!("{} IS NULL", b.quote(c)))
        .collect();
    let sql = format!(
        "SELECT COUNT(*) AS n FROM {} WHERE 1 = 0 AND ({})",
        b.quote(table),
        probe.join(" OR ")
    );
    conn.kms_count(&sql).map(|_| ()).map_err(|e| {
        Failure(
            2,
            format!(
                "table {table} with column(s) {} not found: {e}",
                columns.join(", ")
            ),
        )
    })
}

fn status(s: Status) -> Result<(), Failure> {
    let mut conn = connect(&s.db.database_url)?;
    let rows = with_conn!(conn, c => {
        check_columns(c, &s.db.table, &[&s.db.key_column])?;
        rotation::key_versions(c, &s.db.table, &s.db.key_column)?
    });
    let total: u64 = rows.iter().map(|(_, n)| n).sum();
    println!("{}.{}: {total} rows", s.db.table, s.db.key_column);
    for (version, n) in rows {
        let label = match version.as_str() {
            "NULL" => "NULL (no key)".to_owned(),
            "legacy" => "legacy (no vN: prefix)".to_owned(),
            "malformed" => "malformed (vN: but not base64 — unreadable)".to_owned(),
            v => v.trim_end_matches(':').to_owned(),
        };
        println!("  {label:<24} {n}");
    }
    Ok(())
}

fn rewrap(r: Rewrap) -> Result<(), Failure> {
    let mut spec = KeySpec::new().key_id(&r.key_id).version(r.to_version);
    for (v, k) in &r.previous {
        spec = spec.previous_version(*v, k);
    }
    let mut table = TableSpec::new(&r.db.table, &r.model_name, &r.db.key_column, spec);
    table.id_column = r.id_column.clone();
    let kms = Kms::from_env().map_err(|e| Failure(2, e.to_string()))?;
    let mut conn = connect(&r.db.database_url)?;
    let bar = progress_bar(&r.run);
    let mut report = |p: &Progress| show_progress(&bar, p);
    let opts = r.run.options(&mut report);
    let summary = with_conn!(conn, c => {
        check_columns(c, &r.db.table, &[&r.id_column, &r.db.key_column])?;
        rotation::rotate_table(c, &kms, &table, opts)?
    });
    bar.finish_and_clear();
    println!(
        "re-wrapped {} rows to v{} in {:.1} s ({:.0} rows/s); {} already done, {} conflicts retried, {} errors; {} rows still on older versions",
        summary.done,
        r.to_version,
        summary.elapsed.as_secs_f64(),
        summary.done as f64 / summary.elapsed.as_secs_f64().max(1e-9),
        summary.skipped,
        summary.conflicts,
        summary.errors.len(),
        summary.remaining
    );
    print_row_errors(&summary, &r.id_column);
    if summary.errors.is_empty() && summary.remaining == 0 {
        return Ok(());
    }
    Err(Failure(
        1,
        format!(
            "{} rows are not on v{} yet ({} failed; the others were not reached or kept changing): fix what the errors say and run again",
            summary.remaining,
            r.to_version,
            summary.errors.len()
        ),
    ))
}

fn progress_bar(run: &Run) -> indicatif::ProgressBar {
    let bar = if run.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(0)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} rows  {per_sec}  eta {eta}  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

fn show_progress(bar: &indicatif::ProgressBar, p: &Progress) {
    bar.set_length(p.total);
    bar.set_position(p.done);
    if p.errors > 0 || p.conflicts > 0 {
        bar.set_message(format!(
            "{} errors, {} conflicts retried",
            p.errors, p.conflicts
        ));
    }
}

impl Run {
    fn options<'a>(&self, report: &'a mut (dyn FnMut(&Progress) + Send)) -> TableOptions<'a> {
        TableOptions {
            batch_size: self.batch,
            concurrency: self.concurrency,
            rate_per_second: self.rate,
            max_batches: self.max_batches,
            progress: Some(report),
            ..Default::default()
        }
    }
}

fn print_row_errors(summary: &rotation::Summary, id_column: &str) {
    for e in summary.errors.iter().take(20) {
        eprintln!("  row {} ({id_column}={}): {}", e.id, e.id, e.error);
    }
    if summary.errors.len() > 20 {
        eprintln!("  … and {} more", summary.errors.len() - 20);
    }
}

fn migrate_kms_rails(m: MigrateKmsRails) -> Result<(), Failure> {
    let spec = KeySpec::new().key_id(&m.key_id);
    let mut table = TableSpec::new(&m.db.table, &m.model_name, &m.db.key_column, spec);
    table.id_column = m.id_column.clone();
    table.attributes = m
        .columns
        .iter()
        .map(|c| rotation::AttrSpec {
            column: c.clone(),
            binary: true,
            associated_data: c.strip_suffix("_enc").unwrap_or(c).as_bytes().to_vec(),
            padding: None,
            kms_rails: Some(rotation::KmsRailsSource {
                context: m.context.clone(),
            }),
        })
        .collect();
    let kms = Kms::from_env().map_err(|e| Failure(2, e.to_string()))?;
    let mut conn = connect(&m.db.database_url)?;
    let bar = progress_bar(&m.run);
    let mut report = |p: &Progress| show_progress(&bar, p);
    let opts = m.run.options(&mut report);
    let mut columns: Vec<&str> = vec![&m.id_column, &m.db.key_column];
    columns.extend(m.columns.iter().map(String::as_str));
    let summary = with_conn!(conn, c => {
        check_columns(c, &m.db.table, &columns)?;
        rotation::migrate_kms_rails_table(c, &kms, &table, opts)?
    });
    bar.finish_and_clear();
    println!(
        "migrated {} rows from kms_rails to the per-record format in {:.1} s; {} written meanwhile by others, {} errors; {} rows still hold kms_rails values",
        summary.done,
        summary.elapsed.as_secs_f64(),
        summary.conflicts,
        summary.errors.len(),
        summary.remaining
    );
    print_row_errors(&summary, &m.id_column);
    if summary.remaining == 0 {
        println!(
            "finished: no kms_rails values are left in {} ({}) — remove the kms_rails flag from these attributes now (while it is there, a NULLed key column makes reads take the unauthenticated kms_rails path)",
            m.db.table,
            m.columns.join(", ")
        );
        return Ok(());
    }
    Err(Failure(
        1,
        format!(
            "{} rows still hold kms_rails values ({} failed): fix what the errors say and run again",
            summary.remaining,
            summary.errors.len()
        ),
    ))
}

fn read_input(input: Option<String>) -> Result<Vec<u8>, Failure> {
    match input {
        Some(s) => Ok(s.into_bytes()),
        None => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| Failure(2, format!("reading stdin: {e}")))?;
            Ok(buf)
        }
    }
}

fn boxed(cmd: BoxCmd) -> Result<(), Failure> {
    let (encrypt, args) = match cmd {
        BoxCmd::Encrypt(a) => (true, a),
        BoxCmd::Decrypt(a) => (false, a),
    };
    let mut spec = KeySpec::new().key_id(&args.key_id).version(args.version);
    for (v, k) in &args.previous {
        spec = spec.previous_version(*v, k);
    }
    let b = KmsBox::new(
        Kms::from_env().map_err(|e| Failure(2, e.to_string()))?,
        spec,
    );
    let ctx: Option<EncryptionContext> =
        (!args.context.is_empty()).then(|| args.context.iter().cloned().collect());
    if encrypt && args.input.is_some() {
        eprintln!(
            "kms-fields: warning: the message is on the command line (visible in ps and shell history): pipe it on stdin instead"
        );
    }
    let input = read_input(args.input)?;
    let mut out = std::io::stdout();
    if encrypt {
        let ct = b.encrypt_blocking(&input, ctx.as_ref())?;
        writeln!(out, "{ct}").map_err(|e| Failure(2, e.to_string()))?;
    } else {
        let text = String::from_utf8(input)
            .map_err(|_| Failure(2, "the ciphertext is not text".into()))?;
        let pt = b.decrypt_blocking(text.trim(), ctx.as_ref())?;
        out.write_all(&pt).map_err(|e| Failure(2, e.to_string()))?;
        // the message bytes exactly when piped; a terminal's prompt on a line of its own
        if std::io::IsTerminal::is_terminal(&out) && !pt.ends_with(b"\n") {
            writeln!(out).map_err(|e| Failure(2, e.to_string()))?;
        }
    }
    Ok(())
}

fn keygen() -> Result<(), Failure> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| Failure(2, format!("random number generator: {e}")))?;
    println!("{}", hex::encode(key));
    Ok(())
}

fn migration_sql(m: MigrationSql) -> Result<(), Failure> {
    use kms_fields_diesel::BackendKind;
    use kms_fields_diesel::migration::{Column, add_columns, drop_columns};
    let backend = match m.backend.as_str() {
        "postgres" | "postgresql" | "pg" => BackendKind::Postgres,
        "sqlite" => BackendKind::Sqlite,
        "mysql" | "mariadb" => BackendKind::Mysql,
        other => {
            return Err(Failure(
                2,
                format!("unknown backend {other}: use postgres, sqlite or mysql"),
            ));
        }
    };
    let keys = if m.keys.is_empty() {
        vec!["encrypted_kms_key".to_owned()]
    } else {
        m.keys
    };
    let mut cols: Vec<Column> = keys.iter().map(|k| Column::key(k)).collect();
    cols.extend(m.text.iter().map(|c| Column::ciphertext(c)));
    cols.extend(m.binary.iter().map(|c| Column::binary_ciphertext(c)));
    cols.extend(m.unique_index.iter().map(|c| Column::blind_index(c, true)));
    cols.extend(m.index.iter().map(|c| Column::blind_index(c, false)));
    let sql = if m.down {
        drop_columns(backend, &m.table, &cols)
    } else {
        add_columns(backend, &m.table, &cols)
    };
    print!("{sql}");
    Ok(())
}

fn context_hash(c: ContextHash) -> Result<(), Failure> {
    let vault = kms_fields::provider::vault::VaultProvider::from_env()
        .map_err(|e| Failure(2, e.to_string()))?;
    let ctx: EncryptionContext = c.context.into_iter().collect();
    let hash = kms_fields::blocking::run(vault.context_hash(&ctx, &c.audit_path))?;
    println!("{hash}");
    Ok(())
}
