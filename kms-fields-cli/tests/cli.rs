//! The `kms-fields` binary end to end, on a SQLite file, Postgres and MariaDB/MySQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};
use std::time::Duration;

use kms_fields_tests::db::{MysqlDb, PgDb, SqliteDb, TestDb};
use kms_fields_tests::seed_users;

fn cli() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kms-fields"));
    c.env_remove("KMS_KEY_ID")
        .env_remove("DATABASE_URL")
        // these tests use the insecure test key
        .env("KMS_FIELDS_INSECURE_TEST_KEY", "1");
    c
}

fn run(args: &[&str]) -> Output {
    cli().args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn rewrap_args(url: &str) -> Vec<String> {
    [
        "rewrap",
        "--database-url",
        url,
        "--table",
        "users",
        "--model-name",
        "User",
        "--to-version",
        "2",
        "--key-id",
        "insecure-test-key",
        "--previous",
        "1=insecure-test-key",
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn status_of(url: &str) -> String {
    let o = run(&["status", "--database-url", url, "--table", "users"]);
    assert!(o.status.success(), "{}", text(&o));
    text(&o)
}

/// `status`, `rewrap`, `status` again and a rerun that has nothing to do.
macro_rules! status_and_rewrap {
    ($name:ident, $db:ty) => {
        #[test]
        fn $name() {
            let (db, mut conn) = <$db>::new();
            seed_users(&mut conn, 300);
            let url = db.url();
            let s = status_of(&url);
            assert!(
                s.contains("users.encrypted_kms_key: 300 rows")
                    && s.contains("v1                       300"),
                "{s}"
            );
            let o = cli()
                .args(rewrap_args(&url))
                .args(["--batch", "70", "--concurrency", "8"])
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", text(&o));
            assert!(
                text(&o).contains("re-wrapped 300 rows to v2"),
                "{}",
                text(&o)
            );
            let s = status_of(&url);
            assert!(
                s.contains("v2                       300") && !s.contains("v1 "),
                "{s}"
            );
            let o = cli().args(rewrap_args(&url)).output().unwrap();
            assert!(text(&o).contains("re-wrapped 0 rows"), "{}", text(&o));
        }
    };
}

status_and_rewrap!(status_and_rewrap_on_a_sqlite_file, SqliteDb);
status_and_rewrap!(status_and_rewrap_on_postgres, PgDb);
status_and_rewrap!(status_and_rewrap_on_mysql, MysqlDb);

/// Kill the process mid-run, run it again: every row at v2, readable. The kill comes once the
/// database shows the first re-wrapped batch, not after a fixed time; the rate limit (200 KMS
/// requests per second, two per row: at least 20 s for 2,000 rows) guarantees that rows are
/// still left then, however loaded the machine is.
macro_rules! interrupted_rewrap {
    ($name:ident, $db:ty) => {
        #[test]
        fn $name() {
            let (db, mut conn) = <$db>::new();
            seed_users(&mut conn, 2000);
            let url = db.url();
            let mut child = cli()
                .args(rewrap_args(&url))
                .args(["--batch", "50", "--rate", "200"])
                .spawn()
                .unwrap();
            {
                use diesel::prelude::*;
                use kms_fields_tests::schema::users;
                let mut watch = db.connect();
                loop {
                    // a read can meet SQLite's write lock: then look again
                    let done: Option<i64> = users::table
                        .filter(users::encrypted_kms_key.like("v2:%"))
                        .count()
                        .get_result(&mut watch)
                        .ok();
                    if done.is_some_and(|n| n > 0) {
                        break;
                    }
                    assert!(child.try_wait().unwrap().is_none(), "rewrap exited early");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            child.kill().unwrap();
            child.wait().unwrap();
            let mid = status_of(&url);
            assert!(
                mid.contains("v1") && mid.contains("v2"),
                "killed mid-way: {mid}"
            );
            let o = cli().args(rewrap_args(&url)).output().unwrap();
            assert!(o.status.success(), "{}", text(&o));
            let s = status_of(&url);
            assert!(s.contains("v2                       2000"), "{s}");
            use diesel::prelude::*;
            use kms_fields_tests::models::UserV2;
            use kms_fields_tests::schema::users;
            let mut conn = db.connect();
            let rows: Vec<UserV2> = users::table
                .select(UserV2::as_select())
                .load(&mut conn)
                .unwrap();
            let kms = kms_fields::Kms::new();
            let unlocked =
                kms_fields::blocking::block_on(kms_fields::bulk::unlock_many(&kms, &rows, 64))
                    .unwrap();
            assert!(unlocked.iter().all(|r| r.is_ok()));
        }
    };
}

interrupted_rewrap!(an_interrupted_rewrap_finishes_when_run_again, SqliteDb);
interrupted_rewrap!(
    an_interrupted_rewrap_on_postgres_finishes_when_run_again,
    PgDb
);

#[test]
fn two_rewrap_processes_at_once_on_postgres() {
    let (db, mut conn) = PgDb::new();
    seed_users(&mut conn, 3000);
    let url = db.url();
    let children: Vec<_> = (0..2)
        .map(|_| {
            cli()
                .args(rewrap_args(&url))
                .args(["--batch", "100"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut total = 0u64;
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        let n: u64 = out
            .split("re-wrapped ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        total += n;
    }
    assert_eq!(
        total, 3000,
        "every row re-wrapped exactly once across both processes"
    );
    assert!(status_of(&url).contains("v2                       3000"));
}

/// A missing table or column (exit 2), and a row the KMS refuses: the row and the key id are
/// named, the other rows are done, exit 1.
macro_rules! clear_errors {
    ($name:ident, $db:ty) => {
        #[test]
        fn $name() {
            let (db, mut conn) = <$db>::new();
            let ids = seed_users(&mut conn, 20);
            let url = db.url();
            let o = run(&["status", "--database-url", &url, "--table", "nope"]);
            assert_eq!(o.status.code(), Some(2), "{}", text(&o));
            assert!(
                text(&o).contains("table nope with column(s) encrypted_kms_key not found"),
                "{}",
                text(&o)
            );
            let o = run(&[
                "status",
                "--database-url",
                &url,
                "--table",
                "users",
                "--key-column",
                "missing_col",
            ]);
            assert_eq!(o.status.code(), Some(2), "{}", text(&o));
            assert!(text(&o).contains("missing_col"), "{}", text(&o));
            let mut args = rewrap_args(&url);
            args[4] = "nope".into();
            let o = cli().args(&args).output().unwrap();
            assert_eq!(o.status.code(), Some(2), "{}", text(&o));
            assert!(text(&o).contains("table nope"), "{}", text(&o));
            use diesel::prelude::*;
            use kms_fields_tests::schema::users;
            let other = run(&[
                "box",
                "encrypt",
                "--key-id",
                "insecure-test-key",
                "--context",
                "model_name=User",
                "--context",
                "model_id=999",
                "x",
            ]);
            let wrong_ctx = String::from_utf8(other.stdout).unwrap();
            diesel::update(users::table.find(ids[3]))
                .set(users::encrypted_kms_key.eq(wrong_ctx.trim()))
                .execute(&mut conn)
                .unwrap();
            let o = cli().args(rewrap_args(&url)).output().unwrap();
            assert_eq!(o.status.code(), Some(1), "{}", text(&o));
            let t = text(&o);
            assert!(
                t.contains(&format!("row {}", ids[3]))
                    && t.contains("key insecure-test-key")
                    && t.contains("Decryption failed"),
                "{t}"
            );
            assert!(t.contains("re-wrapped 19 rows"), "{t}");
        }
    };
}

clear_errors!(clear_errors_and_exit_codes_on_sqlite, SqliteDb);
clear_errors!(clear_errors_and_exit_codes_on_postgres, PgDb);
clear_errors!(clear_errors_and_exit_codes_on_mysql, MysqlDb);

#[test]
fn bad_and_unreachable_database_urls() {
    let o = run(&[
        "status",
        "--database-url",
        "redis://localhost",
        "--table",
        "users",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("unsupported database URL"),
        "{}",
        text(&o)
    );
    for (url, says) in [
        ("postgres://nobody:secret@127.0.0.1:1/x", "cannot connect"),
        ("mysql://nobody:secret@127.0.0.1:1/x", "cannot connect"),
        (
            "sqlite:///nonexistent-dir/x/y.sqlite3",
            "no SQLite database at",
        ),
    ] {
        let o = run(&["status", "--database-url", url, "--table", "users"]);
        assert_eq!(o.status.code(), Some(2), "{url}: {}", text(&o));
        assert!(
            text(&o).contains(says) && !text(&o).contains("secret"),
            "{url}: {}",
            text(&o)
        );
    }
}

#[test]
fn box_and_keygen() {
    let o = run(&[
        "box",
        "encrypt",
        "--key-id",
        "insecure-test-key",
        "--context",
        "purpose=test",
        "hello",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let ct = String::from_utf8(o.stdout).unwrap();
    assert!(ct.starts_with("v1:"));
    let o = run(&[
        "box",
        "decrypt",
        "--key-id",
        "insecure-test-key",
        "--context",
        "purpose=test",
        ct.trim(),
    ]);
    assert_eq!(o.stdout, b"hello");
    let o = run(&[
        "box",
        "decrypt",
        "--key-id",
        "insecure-test-key",
        "--context",
        "purpose=other",
        ct.trim(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("Decryption failed"));
    let o = run(&[
        "box",
        "decrypt",
        "--key-id",
        "insecure-test-key",
        "--version",
        "2",
        ct.trim(),
    ]);
    assert!(text(&o).contains("Version not active: 1"), "{}", text(&o));
    let k1 = String::from_utf8(run(&["keygen"]).stdout).unwrap();
    let k2 = String::from_utf8(run(&["keygen"]).stdout).unwrap();
    assert_eq!(k1.trim().len(), 64);
    assert!(k1.trim().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(k1, k2);
    // a generated key works as a local master key
    let o = cli()
        .env("KMS_FIELDS_LOCAL_KEY_CLI", k1.trim())
        .args(["box", "encrypt", "--key-id", "local/cli", "secret"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let ct = String::from_utf8(o.stdout).unwrap();
    let o = cli()
        .env("KMS_FIELDS_LOCAL_KEY_CLI", k1.trim())
        .args(["box", "decrypt", "--key-id", "local/cli", ct.trim()])
        .output()
        .unwrap();
    assert_eq!(o.stdout, b"secret");
}

#[test]
fn migration_sql_prints_a_runnable_migration() {
    let o = run(&[
        "migration-sql",
        "--backend",
        "sqlite",
        "--table",
        "users",
        "--text",
        "ssn_enc",
        "--unique-index",
        "ssn_bidx",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let up = String::from_utf8(o.stdout).unwrap();
    assert!(
        up.contains("ADD COLUMN `encrypted_kms_key` TEXT") && up.contains("CREATE UNIQUE INDEX"),
        "{up}"
    );
    let (db, _conn) = SqliteDb::new();
    let mut conn = db.connect();
    use diesel::connection::SimpleConnection;
    conn.batch_execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY)")
        .unwrap();
    let up = String::from_utf8(
        run(&[
            "migration-sql",
            "--backend",
            "sqlite",
            "--table",
            "accounts",
            "--text",
            "ssn_enc",
        ])
        .stdout,
    )
    .unwrap();
    conn.batch_execute(&up).unwrap();
    let down = String::from_utf8(
        run(&[
            "migration-sql",
            "--backend",
            "sqlite",
            "--table",
            "accounts",
            "--text",
            "ssn_enc",
            "--down",
        ])
        .stdout,
    )
    .unwrap();
    conn.batch_execute(&down).unwrap();
    assert_eq!(
        run(&["migration-sql", "--backend", "oracle", "--table", "x"])
            .status
            .code(),
        Some(2)
    );
}

/// `kms-fields context-hash` against the real OpenBao server: the hash it prints is the
/// `context` of record 42's decrypt in the server's audit log (device `file/`).
#[test]
#[cfg_attr(
    kmsf_no_vault,
    ignore = "KMS_FIELDS_VAULT_URL is not set: scripts/test.sh starts an OpenBao dev server"
)]
fn context_hash_matches_the_openbao_audit_log() {
    use kms_fields::{EncryptionContext, KeySpec, Kms, blocking};
    let t = kms_fields_tests::openbao::Transit::new();
    t.create_key("users", true);
    let kms = Kms::builder()
        .insecure_test_key()
        .vault(t.provider(&kms_fields_tests::openbao::root_token()))
        .build();
    let spec = KeySpec::new().key_id("vault/users");
    let ctx = EncryptionContext::for_model("User", 42);
    let stored = blocking::run(kms.encrypt(&spec, None, b"k", &|_| Ok(Some(ctx.clone())))).unwrap();
    blocking::run(kms.decrypt(&spec, None, &stored, &|_| Ok(Some(ctx.clone())))).unwrap();
    let o = cli()
        .env("VAULT_ADDR", kms_fields_tests::vault_url())
        .env("VAULT_TOKEN", kms_fields_tests::openbao::root_token())
        .args([
            "context-hash",
            "--audit-path",
            "file",
            "--context",
            "model_name=User",
            "--context",
            "model_id=42",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let hash = String::from_utf8(o.stdout).unwrap();
    let decrypts = t.audited("decrypt", "users");
    assert_eq!(decrypts.len(), 1);
    assert_eq!(
        decrypts[0]["request"]["data"]["context"].as_str(),
        Some(hash.trim())
    );
    let o = cli()
        .env_remove("VAULT_ADDR")
        .args(["context-hash", "--audit-path", "x", "--context", "a=b"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("VAULT_ADDR"));
}

/// A run that leaves rows on older versions (here: stopped by `--max-batches`) says how many
/// and exits 1 — a maintenance script can't mistake it for done; the next run finishes.
#[test]
fn rewrap_exits_1_while_rows_remain_on_older_versions() {
    let (db, mut conn) = SqliteDb::new();
    seed_users(&mut conn, 12);
    let url = db.url();
    let o = cli()
        .args(rewrap_args(&url))
        .args(["--batch", "5", "--max-batches", "1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("7 rows are not on v2 yet"),
        "{}",
        text(&o)
    );
    let o = cli().args(rewrap_args(&url)).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("0 rows still on older versions"),
        "{}",
        text(&o)
    );
}

/// Issue 19.6: the insecure test key is opt-in — a key id naming it fails loudly (a
/// misconfigured `KMS_KEY_ID` must not "encrypt" with a public key), unless
/// `KMS_FIELDS_INSECURE_TEST_KEY=1`.
#[test]
fn the_insecure_test_key_is_refused_unless_enabled() {
    let o = cli()
        .env_remove("KMS_FIELDS_INSECURE_TEST_KEY")
        .args(["box", "encrypt", "--key-id", "insecure-test-key"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("the insecure test key is not enabled"),
        "{}",
        text(&o)
    );
    assert!(o.stdout.is_empty(), "nothing written: {}", text(&o));
    let o = cli()
        .args(["box", "encrypt", "--key-id", "insecure-test-key"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("v1:"));
}

/// Issue 19.3: `migrate-kms-rails` moves kms_rails values (made as the gem makes them, on moto)
/// to the per-record format, exits 1 while values remain and says when it is finished.
#[test]
fn migrate_kms_rails_reports_when_the_table_is_done() {
    use diesel::prelude::*;
    use kms_fields_tests::models::{RAILS_KEY_ID, RailsUser};
    use kms_fields_tests::schema::users;

    let key_id = kms_fields_tests::moto_key();
    RAILS_KEY_ID.set(key_id.clone()).unwrap();
    let (db, mut conn) = PgDb::new();
    for i in 1..=3 {
        let value = kms_fields_tests::kms_rails_value(
            &key_id,
            ("purpose", "test"),
            &format!("{i} Main St"),
        );
        diesel::insert_into(users::table)
            .values((users::id.eq(i), users::address_enc.eq(&value)))
            .execute(&mut conn)
            .unwrap();
    }
    let migrate = |extra: &[&str]| {
        let mut c = cli();
        c.env("AWS_ENDPOINT_URL", kms_fields_tests::moto_url())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("DATABASE_URL", db.url())
            .args([
                "migrate-kms-rails",
                "--table",
                "users",
                "--model-name",
                "User",
                "--key-id",
                &key_id,
                "--column",
                "address_enc",
                "--context",
                "purpose=test",
                "--quiet",
            ])
            .args(extra);
        c.output().unwrap()
    };
    let o = migrate(&["--batch", "1", "--max-batches", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("2 rows still hold kms_rails values"),
        "{}",
        text(&o)
    );
    let o = migrate(&[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("migrated 2 rows"), "{}", text(&o));
    assert!(
        text(&o).contains("finished: no kms_rails values are left"),
        "{}",
        text(&o)
    );
    assert!(
        !text(&o).contains("warning"),
        "URL from the environment: {}",
        text(&o)
    );
    let kms = kms_fields_tests::moto_kms();
    let rows: Vec<RailsUser> = users::table
        .order(users::id)
        .select(RailsUser::as_select())
        .load(&mut conn)
        .unwrap();
    for (i, r) in rows.iter().enumerate() {
        assert!(r.encrypted_kms_key.stored().unwrap().starts_with("v1:"));
        assert_eq!(
            r.address_blocking(&kms).unwrap(),
            Some(format!("{} Main St", i + 1))
        );
    }
}

/// Issue 19.7: secrets on the command line (a password in --database-url, a box message as
/// an argument) work but warn, naming the safer way.
#[test]
fn secrets_on_the_command_line_warn() {
    let o = run(&[
        "status",
        "--database-url",
        "postgres://postgres:secret@127.0.0.1:1/none",
        "--table",
        "users",
    ]);
    assert!(
        text(&o).contains("password is on the command line") && text(&o).contains("DATABASE_URL"),
        "{}",
        text(&o)
    );
    assert!(
        !text(&o).contains("secret"),
        "the password is never printed: {}",
        text(&o)
    );
    let o = run(&["box", "encrypt", "--key-id", "insecure-test-key", "hello"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("pipe it on stdin"), "{}", text(&o));
}

/// Issue 17.4: a rewrap whose first rows all fail the same way — no `--previous`, a wrong
/// `--model-name`, no AWS credentials — stops at once with one line saying what to check,
/// instead of one error per row over the whole table; no row changed.
macro_rules! stops_early {
    ($name:ident, $db:ty) => {
        #[test]
        fn $name() {
            let (db, mut conn) = <$db>::new();
            seed_users(&mut conn, 300);
            let url = db.url();
            let check = |args: Vec<String>, env: &[(&str, &str)], expect: &[&str]| {
                let mut c = cli();
                for k in [
                    "AWS_ACCESS_KEY_ID",
                    "AWS_SECRET_ACCESS_KEY",
                    "AWS_SESSION_TOKEN",
                    "AWS_PROFILE",
                ] {
                    c.env_remove(k);
                }
                for (k, v) in env {
                    c.env(k, v);
                }
                let o = c.args(&args).output().unwrap();
                let t = text(&o);
                assert_eq!(o.status.code(), Some(1), "{t}");
                for e in expect {
                    assert!(t.contains(e), "{e:?} in {t}");
                }
                assert!(
                    t.contains("stopped: the first 20 rows all failed the same way"),
                    "{t}"
                );
                assert!(t.lines().count() <= 2, "one line, not one per row: {t}");
                assert!(t.len() < 1000, "{} bytes: {t}", t.len());
            };
            // no --previous: the rows' version 1 is unknown
            let mut args = rewrap_args(&url);
            let at = args.iter().position(|a| a == "--previous").unwrap();
            args.drain(at..at + 2);
            check(args, &[], &["Version not active: 1", "--previous 1=KEY_ID"]);
            // a wrong model name: the context does not match
            let mut args = rewrap_args(&url);
            let at = args.iter().position(|a| a == "--model-name").unwrap();
            args[at + 1] = "Person".into();
            check(args, &[], &["Decryption failed", "--model-name"]);
            // an AWS key id and no credentials anywhere
            let mut args = rewrap_args(&url);
            let at = args.iter().position(|a| a == "--key-id").unwrap();
            args[at + 1] = "alias/users-2026".into();
            check(
                args,
                &[
                    ("AWS_CONFIG_FILE", "/nonexistent/kms-fields"),
                    ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/kms-fields"),
                    ("AWS_EC2_METADATA_DISABLED", "true"),
                    ("AWS_REGION", "us-east-1"),
                    ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
                ],
                &["no AWS credentials were found", "AWS_PROFILE"],
            );
            let s = status_of(&url);
            assert!(
                s.contains("v1                       300"),
                "nothing changed: {s}"
            );
        }
    };
}

stops_early!(rewrap_stops_early_on_a_sqlite_file, SqliteDb);
stops_early!(rewrap_stops_early_on_postgres, PgDb);

/// Issue 17.4: `status` counts a malformed `v1:!!!` value as malformed, not as v1.
macro_rules! status_malformed {
    ($name:ident, $db:ty) => {
        #[test]
        fn $name() {
            use diesel::prelude::*;
            use kms_fields_tests::schema::users;
            let (db, mut conn) = <$db>::new();
            let ids = seed_users(&mut conn, 5);
            for (id, bad) in [(ids[0], "v1:!!!"), (ids[1], "v1:"), (ids[2], "vx:AAAA")] {
                diesel::update(users::table.find(id))
                    .set(users::encrypted_kms_key.eq(bad))
                    .execute(&mut conn)
                    .unwrap();
            }
            let s = status_of(&db.url());
            assert!(s.contains("v1                       2"), "{s}");
            assert!(
                s.contains("malformed (vN: but not base64 — unreadable) 3"),
                "{s}"
            );
        }
    };
}

status_malformed!(status_counts_malformed_values_on_sqlite, SqliteDb);
status_malformed!(status_counts_malformed_values_on_postgres, PgDb);
status_malformed!(status_counts_malformed_values_on_mysql, MysqlDb);

/// Issue 17.4: `--text a,b` means two columns, as `--text a --text b`.
#[test]
fn migration_sql_takes_comma_separated_columns() {
    let o = run(&[
        "migration-sql",
        "--backend",
        "postgres",
        "--table",
        "users",
        "--text",
        "email_enc,phone_enc",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let sql = String::from_utf8_lossy(&o.stdout);
    assert!(
        sql.contains("\"email_enc\"") && sql.contains("\"phone_enc\""),
        "{sql}"
    );
    assert!(!sql.contains("email_enc,phone_enc"), "{sql}");
}

/// Issue 17.4: `box decrypt` ends its output with a newline on a terminal (a pseudo-terminal
/// from util-linux `script`), and prints the message bytes exactly when piped.
#[test]
fn box_decrypt_ends_the_line_on_a_terminal() {
    let ct = cli()
        .args(["box", "encrypt", "--key-id", "insecure-test-key"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"hello")?;
            c.wait_with_output()
        })
        .unwrap();
    let ct = String::from_utf8(ct.stdout).unwrap();
    let piped = run(&["box", "decrypt", "--key-id", "insecure-test-key", ct.trim()]);
    assert_eq!(piped.stdout, b"hello", "exact bytes when piped");
    let cmd = format!(
        "{} box decrypt --key-id insecure-test-key {}",
        env!("CARGO_BIN_EXE_kms-fields"),
        ct.trim()
    );
    let tty = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("KMS_FIELDS_INSECURE_TEST_KEY", "1")
        .output()
        .unwrap();
    assert!(tty.status.success(), "{}", text(&tty));
    assert!(
        tty.stdout.ends_with(b"hello\r\n"),
        "{:?}",
        String::from_utf8_lossy(&tty.stdout)
    );
}
