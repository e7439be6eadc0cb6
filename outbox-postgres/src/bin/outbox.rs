//! `outbox`: inspect and repair a PostgreSQL outbox table from the shell.
//!
//! A thin layer over the admin methods of [`outbox_postgres::PgStore`]: `status`, `dead list`, `dead show`,
//! `replay`, `purge` and `migrate`. Human-readable tables by default; `--json` prints one JSON document per
//! command on stdout for scripts. Errors are one line on stderr (`error: ...`) with a documented exit code
//! (see [`EXIT_CODES`]).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{ArgGroup, Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use outbox_postgres::{
    DeadEvent, DeadEventDetail, Error, OutboxStatus, PgInboxConfig, PgOutboxConfig, PgStore,
    ReplaySelector, TableName,
};
use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// How long to wait for the database to answer a connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The exit codes, shown by `--help` and relied on by scripts.
const EXIT_CODES: &str = "\
Exit codes:
  0  success (also when a replay or purge selects nothing)
  1  database, connection or other runtime failure
  2  bad usage or input: unknown option, malformed duration, UUID or table name, no database URL
  3  not found: `dead show` of an id that is not a dead letter; `replay --id` with ids that are not dead
     letters (they are named, and nothing is replayed)
  4  the outbox table is missing: run `outbox migrate`

Errors are one line on stderr, starting with `error:`. With --json, stdout holds one JSON document.";

#[derive(Debug, Parser)]
#[command(
    name = "outbox",
    version,
    about = "Inspect and repair a PostgreSQL outbox table: status, dead letters, replay, purge, migrate",
    after_help = EXIT_CODES
)]
struct Cli {
    /// PostgreSQL URL, e.g. postgres://user:password@host:5432/db
    #[arg(
        long,
        env = "DATABASE_URL",
        global = true,
        help_heading = "Global options",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// The outbox table, as schema.name (or name, in schema public)
    #[arg(long, global = true, help_heading = "Global options", default_value = "public.outbox", value_parser = parse_table)]
    table: TableName,
    /// Print one JSON document on stdout instead of tables
    #[arg(long, global = true, help_heading = "Global options")]
    json: bool,
    /// No progress bars (they are also hidden when stdout or stderr is not a terminal)
    #[arg(long, short, global = true, help_heading = "Global options")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Counts by topic and status, the age of the oldest pending event, dead letters
    Status,
    /// Dead-lettered events: list them or show one
    Dead {
        #[command(subcommand)]
        command: DeadCommand,
    },
    /// Put dead letters back in their key's order, with a fresh attempt count (one transaction)
    Replay(ReplayArgs),
    /// Delete published rows older than a duration (tables with keep_published), in batches
    Purge(PurgeArgs),
    /// Create the outbox table and its indexes if they are missing (or the inbox table, with --inbox)
    Migrate(MigrateArgs),
}

#[derive(Debug, Subcommand)]
enum DeadCommand {
    /// The oldest dead letters, in outbox order
    List {
        /// Only this topic
        #[arg(long)]
        topic: Option<String>,
        /// At most this many
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
        limit: u64,
    },
    /// Everything stored about one dead letter: payload, headers, last error
    Show {
        /// The event id
        #[arg(value_parser = parse_id)]
        id: Uuid,
    },
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("selector").required(true).args(["ids", "key", "event_type", "all"])))]
struct ReplayArgs {
    /// These dead letters (all must be dead letters, or nothing is replayed)
    #[arg(long = "id", value_name = "ID", num_args = 1.., value_parser = parse_id)]
    ids: Vec<Uuid>,
    /// Every dead letter of one key
    #[arg(long, num_args = 2, value_names = ["TOPIC", "KEY"])]
    key: Option<Vec<String>>,
    /// Every dead letter of one event type
    #[arg(long, value_name = "TYPE")]
    event_type: Option<String>,
    /// Every dead letter
    #[arg(long)]
    all: bool,
    /// Show what would be replayed; change nothing
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct PurgeArgs {
    /// Delete rows published at least this long ago: 30s, 15m, 12h, 7d, 2w, or combined: 1h30m
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    published_before: Duration,
    /// Count what would be deleted; change nothing
    #[arg(long)]
    dry_run: bool,
    /// Rows deleted per statement (each its own transaction)
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
}

#[derive(Debug, Args)]
struct MigrateArgs {
    /// Create the inbox table instead of the outbox table
    #[arg(long)]
    inbox: bool,
    /// The inbox table, as schema.name (with --inbox)
    #[arg(long, default_value = "public.inbox", value_parser = parse_table, requires = "inbox")]
    inbox_table: TableName,
}

/// Why the command failed: its message (one line) and exit code.
#[derive(Debug)]
enum Failure {
    /// 1: the database or anything else at run time.
    Runtime(String),
    /// 2: bad usage or input.
    Usage(String),
    /// 3: what was asked for does not exist.
    NotFound(String),
    /// 4: the table is missing.
    MissingTable(String),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Runtime(_) => 1,
            Failure::Usage(_) => 2,
            Failure::NotFound(_) => 3,
            Failure::MissingTable(_) => 4,
        }
    }

    fn message(&self) -> &str {
        match self {
            Failure::Runtime(m)
            | Failure::Usage(m)
            | Failure::NotFound(m)
            | Failure::MissingTable(m) => m,
        }
    }

    fn from_error(error: Error, table: &TableName) -> Failure {
        match error {
            Error::MissingMigration { .. } => Failure::MissingTable(format!(
                "the outbox table {} does not exist: run `outbox migrate{}`",
                display_table(table),
                table_flag(table)
            )),
            Error::OutdatedTable { .. } => Failure::MissingTable(format!(
                "the outbox table {} lacks columns this version uses: compare it with \
                 outbox-postgres/migrations/0001_outbox.sql (`outbox migrate` creates missing tables, it does not \
                 change existing ones)",
                display_table(table)
            )),
            Error::NotDeadLetters { .. } => Failure::NotFound(error.to_string()),
            Error::InvalidIdentifier(_) => Failure::Usage(error.to_string()),
            other => Failure::Runtime(other.to_string()),
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            return match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
                }
                _ => {
                    eprintln!("{}", clap_error_line(&e));
                    ExitCode::from(2)
                }
            };
        }
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("cannot start the async runtime: {e}")))
        .and_then(|runtime| runtime.block_on(run(&cli)));
    match result {
        Ok(output) => {
            emit(&output);
            ExitCode::SUCCESS
        }
        Err(failure) => {
            let line = failure.message().replace(['\n', '\r'], " ");
            eprintln!("error: {line}");
            ExitCode::from(failure.exit_code())
        }
    }
}

/// clap's message without its usage block and tips, on one line.
fn clap_error_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let first_block = rendered.split("\n\n").next().unwrap_or_default();
    let line = first_block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if line.starts_with("error:") {
        line
    } else {
        format!("error: {line}")
    }
}

/// Runs the command and returns what to print on stdout.
async fn run(cli: &Cli) -> Result<String, Failure> {
    let url = cli
        .database_url
        .as_deref()
        .filter(|url| !url.trim().is_empty())
        .ok_or_else(|| {
            Failure::Usage("no database URL: pass --database-url or set DATABASE_URL".into())
        })?;
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e| Failure::Usage(format!("invalid database URL: {e}")))?;
    // One direct attempt first: a pool retries until its timeout and reports only that it timed out.
    let probe = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
        .await
        .map_err(|_| {
            Failure::Runtime(format!(
                "cannot connect to the database: no answer within {}",
                human_duration(CONNECT_TIMEOUT)
            ))
        })?
        .map_err(|e| Failure::Runtime(format!("cannot connect to the database: {e}")))?;
    let _ = probe.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_lazy_with(options);
    let config = PgOutboxConfig {
        table: cli.table.clone(),
        ..PgOutboxConfig::default()
    };
    let store = PgStore::new(pool.clone(), config.clone());
    let fail = |e: Error| Failure::from_error(e, &cli.table);
    let out = Output {
        json: cli.json,
        table: &cli.table,
    };
    let output = match &cli.command {
        Command::Status => out.status(&store.status().await.map_err(fail)?),
        Command::Dead {
            command: DeadCommand::List { topic, limit },
        } => {
            let limit = usize::try_from(*limit).unwrap_or(usize::MAX);
            let dead = match topic {
                Some(topic) => store.dead_letters_in_topic(topic, limit).await,
                None => store.dead_letters(limit).await,
            }
            .map_err(fail)?;
            out.dead_list(&dead, limit)
        }
        Command::Dead {
            command: DeadCommand::Show { id },
        } => match store.dead_letter(*id).await.map_err(fail)? {
            Some(dead) => out.dead_show(&dead),
            None => {
                return Err(Failure::NotFound(format!(
                    "no dead letter with id {id} in {} (unknown, pending or published)",
                    display_table(&cli.table)
                )))
            }
        },
        Command::Replay(args) => {
            let selector = args.selector();
            if args.dry_run {
                let preview = store.replay_preview(&selector).await.map_err(fail)?;
                out.replay_preview(&preview)
            } else {
                let bar = progress_bar(cli.quiet, "replaying");
                let replayed = store
                    .replay_with_progress(&selector, |done, total| {
                        bar.set_length(total);
                        bar.set_position(done);
                    })
                    .await;
                bar.finish_and_clear();
                out.replayed(&replayed.map_err(fail)?)
            }
        }
        Command::Purge(args) => {
            if args.dry_run {
                let count = store
                    .count_purgeable(args.published_before)
                    .await
                    .map_err(fail)?;
                out.purged(count, args.published_before, true)
            } else {
                let bar = progress_bar(cli.quiet, "purging");
                let batch = usize::try_from(args.batch).unwrap_or(usize::MAX);
                let deleted = store
                    .purge_published(args.published_before, batch, |done, total| {
                        bar.set_length(total);
                        bar.set_position(done);
                    })
                    .await;
                bar.finish_and_clear();
                out.purged(deleted.map_err(fail)?, args.published_before, false)
            }
        }
        Command::Migrate(args) => {
            if args.inbox {
                let inbox = PgInboxConfig {
                    table: args.inbox_table.clone(),
                };
                outbox_postgres::migrate_inbox_with(&pool, &inbox)
                    .await
                    .map_err(fail)?;
                out.migrated("inbox", &args.inbox_table)
            } else {
                outbox_postgres::migrate_with(&pool, &config)
                    .await
                    .map_err(fail)?;
                out.migrated("outbox", &cli.table)
            }
        }
    };
    pool.close().await;
    Ok(output)
}

impl ReplayArgs {
    fn selector(&self) -> ReplaySelector {
        if let Some([topic, key]) = self.key.as_deref() {
            ReplaySelector::Key {
                topic: topic.clone(),
                key: key.clone(),
            }
        } else if let Some(event_type) = &self.event_type {
            ReplaySelector::EventType(event_type.clone())
        } else if self.all {
            ReplaySelector::All
        } else {
            ReplaySelector::Ids(self.ids.clone())
        }
    }
}

/// Renders results as tables or as JSON documents.
struct Output<'a> {
    json: bool,
    table: &'a TableName,
}

impl Output<'_> {
    fn render(&self, json: impl Serialize, human: impl FnOnce() -> String) -> String {
        if self.json {
            let mut text = serde_json::to_string_pretty(&json).unwrap_or_default();
            text.push('\n');
            text
        } else {
            human()
        }
    }

    fn status(&self, status: &OutboxStatus) -> String {
        let doc = StatusJson {
            table: display_table(self.table),
            pending: status.pending,
            published: status.published,
            dead: status.dead,
            oldest_pending_secs: status.oldest_pending_age.map(|d| d.as_secs_f64()),
            topics: status
                .topics
                .iter()
                .map(|t| TopicJson {
                    topic: &t.topic,
                    pending: t.pending,
                    published: t.published,
                    dead: t.dead,
                    oldest_pending_secs: t.oldest_pending_age.map(|d| d.as_secs_f64()),
                })
                .collect(),
        };
        self.render(doc, || {
            let row =
                |name: &str, pending: u64, published: u64, dead: u64, oldest: Option<Duration>| {
                    vec![
                        name.to_owned(),
                        pending.to_string(),
                        published.to_string(),
                        dead.to_string(),
                        oldest.map_or_else(|| "-".to_owned(), human_duration),
                    ]
                };
            let mut rows: Vec<Vec<String>> = status
                .topics
                .iter()
                .map(|t| {
                    row(
                        &t.topic,
                        t.pending,
                        t.published,
                        t.dead,
                        t.oldest_pending_age,
                    )
                })
                .collect();
            rows.push(row(
                "total",
                status.pending,
                status.published,
                status.dead,
                status.oldest_pending_age,
            ));
            format!(
                "outbox table {}\n{}",
                display_table(self.table),
                text_table(
                    &["TOPIC", "PENDING", "PUBLISHED", "DEAD", "OLDEST PENDING"],
                    &[false, true, true, true, false],
                    &rows,
                )
            )
        })
    }

    fn dead_list(&self, dead: &[DeadEvent], limit: usize) -> String {
        let doc = DeadListJson {
            table: display_table(self.table),
            limit,
            dead_letters: dead.iter().map(DeadLetterJson::from).collect(),
        };
        self.render(doc, || {
            if dead.is_empty() {
                return format!("no dead letters in {}\n", display_table(self.table));
            }
            let mut text = dead_table(dead);
            if dead.len() == limit {
                text.push_str(&format!(
                    "(the first {limit}; there may be more: --limit N)\n"
                ));
            }
            text
        })
    }

    fn dead_show(&self, dead: &DeadEventDetail) -> String {
        let payload: Value = serde_json::from_str(&dead.payload)
            .unwrap_or_else(|_| Value::String(dead.payload.clone()));
        let doc = DeadShowJson {
            id: dead.id,
            seq: dead.seq,
            topic: &dead.topic,
            key: &dead.key,
            aggregate_type: &dead.aggregate_type,
            aggregate_id: &dead.aggregate_id,
            event_type: &dead.event_type,
            version: dead.version,
            attempts: dead.attempts,
            last_error: dead.last_error.as_deref(),
            age_secs: dead.age.as_secs_f64(),
            dead_for_secs: dead.dead_for.as_secs_f64(),
            headers: &dead.headers,
            payload: &payload,
        };
        self.render(doc, || {
            let headers = if dead.headers.is_empty() {
                "-".to_owned()
            } else {
                dead.headers
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let fields = [
                ("id", dead.id.to_string()),
                ("seq", dead.seq.to_string()),
                ("topic", dead.topic.clone()),
                ("key", dead.key.clone()),
                (
                    "aggregate",
                    format!("{} (id {})", dead.aggregate_type, dead.aggregate_id),
                ),
                (
                    "event type",
                    match dead.version {
                        Some(v) => format!("{} (version {v})", dead.event_type),
                        None => dead.event_type.clone(),
                    },
                ),
                ("attempts", dead.attempts.to_string()),
                ("enqueued", format!("{} ago", human_duration(dead.age))),
                ("dead for", human_duration(dead.dead_for)),
                ("last error", dead.last_error.clone().unwrap_or_default()),
                ("headers", headers),
            ];
            let mut text = String::new();
            for (name, value) in fields {
                // A multi-line value (an error with a cause chain) stays inside its field.
                let value = value.replace('\n', "\n            ");
                text.push_str(&format!("{:<12}{value}\n", format!("{name}:")));
            }
            let pretty = serde_json::to_string_pretty(&payload).unwrap_or_default();
            text.push_str(&format!("payload:\n{pretty}\n"));
            text
        })
    }

    fn replay_preview(&self, preview: &[DeadEvent]) -> String {
        let doc = ReplayJson {
            dry_run: true,
            count: preview.len(),
            ids: preview.iter().map(|d| d.id).collect(),
            events: Some(preview.iter().map(DeadLetterJson::from).collect()),
        };
        self.render(doc, || {
            if preview.is_empty() {
                return "dry run: no dead letters match; nothing would be replayed\n".to_owned();
            }
            format!(
                "dry run: would replay {} (nothing changed)\n{}",
                plural(preview.len() as u64, "dead letter"),
                dead_table(preview)
            )
        })
    }

    fn replayed(&self, ids: &[Uuid]) -> String {
        let doc = ReplayJson {
            dry_run: false,
            count: ids.len(),
            ids: ids.to_vec(),
            events: None,
        };
        self.render(doc, || {
            if ids.is_empty() {
                "no dead letters match; nothing replayed\n".to_owned()
            } else {
                format!(
                    "replayed {}: pending again, in their keys' order\n",
                    plural(ids.len() as u64, "dead letter")
                )
            }
        })
    }

    fn purged(&self, count: u64, published_before: Duration, dry_run: bool) -> String {
        let doc = PurgeJson {
            dry_run,
            count,
            published_before_secs: published_before.as_secs_f64(),
        };
        self.render(doc, || {
            let rows = plural(count, "row");
            let age = human_duration(published_before);
            if dry_run {
                format!("dry run: would delete {rows} published {age} ago or earlier (nothing changed)\n")
            } else {
                format!("deleted {rows} published {age} ago or earlier\n")
            }
        })
    }

    fn migrated(&self, kind: &str, table: &TableName) -> String {
        let doc = MigrateJson {
            kind,
            table: display_table(table),
        };
        self.render(doc, || {
            format!("{kind} table {} is up to date\n", display_table(table))
        })
    }
}

// The JSON documents of `--json`. Field names are part of the tool's interface (documented in the README):
// add fields, never rename or remove them. Durations are seconds, as floats, in fields named `*_secs`.

/// `status --json`.
#[derive(Serialize)]
struct StatusJson<'a> {
    table: String,
    pending: u64,
    published: u64,
    dead: u64,
    oldest_pending_secs: Option<f64>,
    topics: Vec<TopicJson<'a>>,
}

/// One topic of `status --json`.
#[derive(Serialize)]
struct TopicJson<'a> {
    topic: &'a str,
    pending: u64,
    published: u64,
    dead: u64,
    oldest_pending_secs: Option<f64>,
}

/// `dead list --json`.
#[derive(Serialize)]
struct DeadListJson<'a> {
    table: String,
    limit: usize,
    dead_letters: Vec<DeadLetterJson<'a>>,
}

/// One dead letter in `dead list --json` and `replay --dry-run --json`.
#[derive(Serialize)]
struct DeadLetterJson<'a> {
    id: Uuid,
    seq: i64,
    topic: &'a str,
    key: &'a str,
    event_type: &'a str,
    aggregate_type: &'a str,
    attempts: u32,
    last_error: Option<&'a str>,
    dead_for_secs: f64,
}

impl<'a> From<&'a DeadEvent> for DeadLetterJson<'a> {
    fn from(dead: &'a DeadEvent) -> Self {
        DeadLetterJson {
            id: dead.id,
            seq: dead.seq,
            topic: &dead.topic,
            key: &dead.key,
            event_type: &dead.event_type,
            aggregate_type: &dead.aggregate_type,
            attempts: dead.attempts,
            last_error: dead.last_error.as_deref(),
            dead_for_secs: dead.dead_for.as_secs_f64(),
        }
    }
}

/// `dead show ID --json`.
#[derive(Serialize)]
struct DeadShowJson<'a> {
    id: Uuid,
    seq: i64,
    topic: &'a str,
    key: &'a str,
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    event_type: &'a str,
    version: Option<u32>,
    attempts: u32,
    last_error: Option<&'a str>,
    age_secs: f64,
    dead_for_secs: f64,
    /// `[name, value]` pairs, in order.
    headers: &'a [(String, String)],
    payload: &'a Value,
}

/// `replay --json`; `events` only in a dry run.
#[derive(Serialize)]
struct ReplayJson<'a> {
    dry_run: bool,
    count: usize,
    ids: Vec<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<Vec<DeadLetterJson<'a>>>,
}

/// `purge --json`.
#[derive(Serialize)]
struct PurgeJson {
    dry_run: bool,
    count: u64,
    published_before_secs: f64,
}

/// `migrate --json`.
#[derive(Serialize)]
struct MigrateJson<'a> {
    kind: &'a str,
    table: String,
}

fn dead_table(dead: &[DeadEvent]) -> String {
    let rows: Vec<Vec<String>> = dead
        .iter()
        .map(|d| {
            vec![
                d.id.to_string(),
                d.seq.to_string(),
                d.topic.clone(),
                d.key.clone(),
                d.event_type.clone(),
                d.attempts.to_string(),
                human_duration(d.dead_for),
                shorten(d.last_error.as_deref().unwrap_or("-"), 60),
            ]
        })
        .collect();
    text_table(
        &[
            "ID",
            "SEQ",
            "TOPIC",
            "KEY",
            "EVENT TYPE",
            "ATTEMPTS",
            "DEAD FOR",
            "LAST ERROR",
        ],
        &[false, true, false, false, false, true, false, false],
        &rows,
    )
}

/// Aligned plain-text columns, two spaces apart; `right` marks the columns aligned right (numbers). The last
/// column is not padded, so lines carry no trailing spaces.
fn text_table(headers: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let width = |cell: &str| cell.chars().count();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let mut text = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let pad = widths[i].saturating_sub(width(cell));
            let last = i + 1 == row.len();
            if i > 0 {
                line.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if !last {
                    line.push_str(&" ".repeat(pad));
                }
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// One line of at most `max` characters.
fn shorten(text: &str, max: usize) -> String {
    let one_line = text.replace(['\n', '\r', '\t'], " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let mut short: String = one_line.chars().take(max.saturating_sub(1)).collect();
        short.push('…');
        short
    }
}

fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `schema.table`, as the user writes it.
fn display_table(table: &TableName) -> String {
    format!("{}.{}", table.schema(), table.table())
}

/// The `--table` flag that names `table`, or nothing for the default.
fn table_flag(table: &TableName) -> String {
    if *table == TableName::default() {
        String::new()
    } else {
        format!(" --table {}", display_table(table))
    }
}

fn parse_id(text: &str) -> Result<Uuid, String> {
    Uuid::parse_str(text).map_err(|e| format!("{text:?} is not an event id (a UUID): {e}"))
}

fn parse_table(text: &str) -> Result<TableName, String> {
    let (schema, table) = text.split_once('.').unwrap_or(("public", text));
    TableName::new(schema, table).map_err(|e| e.to_string())
}

/// The longest duration accepted: 1000 years, far from PostgreSQL's earliest timestamp (4713 BC).
const MAX_DURATION_SECS: u64 = 1000 * 365 * 86_400;

/// A duration as one or more `<number><unit>` parts: `30s`, `15m`, `12h`, `7d`, `2w`, `1h30m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || {
        format!("{text:?} is not a duration: use a number with a unit (s, m, h, d, w), e.g. 30s, 15m, 12h, 7d or 1h30m")
    };
    let mut total: u64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let seconds_per = match &rest[..unit_len] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 604_800,
            _ => return Err(invalid()),
        };
        rest = &rest[unit_len..];
        total = number
            .checked_mul(seconds_per)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| format!("{text:?} is too long a duration"))?;
    }
    // PostgreSQL cannot go further back than 4713 BC: a longer duration fails in the database as "timestamp
    // out of range" (a runtime error, exit 1) instead of being refused here as bad input.
    if total > MAX_DURATION_SECS {
        return Err(format!(
            "{text:?} is too long a duration (at most 1000 years)"
        ));
    }
    Ok(Duration::from_secs(total))
}

/// A readable age, its two largest units (the second one when not zero): `45s`, `3m12s`, `2h`, `3d4h`.
fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let parts = [
        (s / 86_400, "d"),
        (s / 3600 % 24, "h"),
        (s / 60 % 60, "m"),
        (s % 60, "s"),
    ];
    let Some(first) = parts.iter().position(|(n, _)| *n > 0) else {
        return "0s".to_owned();
    };
    let mut text = format!("{}{}", parts[first].0, parts[first].1);
    if let Some((n, unit)) = parts.get(first + 1).filter(|(n, _)| *n > 0) {
        text.push_str(&format!("{n}{unit}"));
    }
    text
}

/// A progress bar on stderr, hidden with `--quiet` or when the output is not a terminal (scripts, tests).
fn progress_bar(quiet: bool, label: &'static str) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() || !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        .with_style(style)
        .with_message(label)
}

/// Writes the result to stdout; a closed pipe (`outbox dead list | head`) is not an error.
fn emit(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_combinations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(1_209_600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1d2h3m4s"), Ok(Duration::from_secs(93_784)));
        assert_eq!(
            parse_duration("52000w"),
            Ok(Duration::from_secs(52_000 * 604_800))
        );
    }

    #[test]
    fn malformed_durations_are_refused() {
        for bad in [
            "",
            "7",
            "d",
            "7x",
            "7 d",
            "-1h",
            "1.5h",
            "h1",
            "99999999999999999999s",
            "99999999999d",
            "10000000w",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(parse_duration(&format!("{}w", u64::MAX / 2)).is_err());
    }

    #[test]
    fn ages_show_their_two_largest_units() {
        assert_eq!(human_duration(Duration::from_millis(400)), "0s");
        assert_eq!(human_duration(Duration::from_secs(45)), "45s");
        assert_eq!(human_duration(Duration::from_secs(192)), "3m12s");
        assert_eq!(human_duration(Duration::from_secs(7500)), "2h5m");
        assert_eq!(human_duration(Duration::from_secs(7205)), "2h");
        assert_eq!(human_duration(Duration::from_secs(86_400)), "1d");
        assert_eq!(
            human_duration(Duration::from_secs(3 * 86_400 + 4 * 3600 + 5)),
            "3d4h"
        );
    }

    #[test]
    fn tables_are_aligned_without_trailing_spaces() {
        let text = text_table(
            &["NAME", "N", "NOTE"],
            &[false, true, false],
            &[
                vec!["a".into(), "1".into(), "".into()],
                vec!["long name".into(), "100".into(), "x".into()],
            ],
        );
        assert_eq!(
            text,
            "NAME         N  NOTE\n\
             a            1\n\
             long name  100  x\n"
        );
    }

    #[test]
    fn table_names_default_to_the_public_schema() {
        assert_eq!(
            parse_table("outbox"),
            Ok(TableName::new("public", "outbox").unwrap())
        );
        assert_eq!(
            parse_table("billing.events"),
            Ok(TableName::new("billing", "events").unwrap())
        );
        assert!(parse_table("Billing.events").is_err());
        assert!(parse_table("a.b.c").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
