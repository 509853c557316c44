//! `dogear`: the command line. `serve` runs a node; `import` brings books in once; `user add`
//! creates accounts.

mod audit_cmd;
mod config;
mod import_cmd;
mod serve;
mod user_cmd;

use clap::{Parser, Subcommand};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Dogear keeps readers' place in their books across every device they own.
#[derive(Parser)]
#[command(name = "dogear", version, about, long_about = None)]
struct Cli {
    /// TOML configuration file (see cluster.toml). Also DOGEAR_CONFIG.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (SQLite database, secrets). Overrides storage.data_dir.
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: HTTP API, WebSocket sync and metrics.
    Serve {
        /// Address to listen on. Overrides server.listen.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Import a book file or every book under a folder (EPUB, PDF, CBZ), once.
    Import {
        /// A file or a folder.
        path: PathBuf,
        /// A library id, or a user name for that user's personal library (default: the
        /// first administrator's).
        #[arg(long, value_name = "ID|USER")]
        library: Option<String>,
    },
    /// Manage accounts.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// The audit log of shared libraries.
    Audit {
        #[command(subcommand)]
        action: AuditCmd,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check every library's hash chain (or one library's); exit 1 at the first entry that
    /// does not match, naming it.
    Verify {
        /// Only this library.
        #[arg(long, value_name = "ID")]
        library: Option<dogear_storage::LibraryId>,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Create an account with its personal library.
    Add {
        /// Username: 3-32 of a-z, 0-9, '_', '.', '-'.
        name: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Email address.
        #[arg(long)]
        email: Option<String>,
    },
    /// List every account.
    List,
    /// Disable an account: it cannot sign in, and every token it holds is refused.
    Disable {
        /// User name or id.
        user: String,
    },
    /// Enable a disabled account again (tokens from before stay refused).
    Enable {
        /// User name or id.
        user: String,
    },
    /// Set a new password (read from the first line of standard input); sessions end.
    ResetPassword {
        /// User name or id.
        user: String,
        /// Read the password from the first line of standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Delete an account and everything that is theirs alone (their shared libraries must
    /// be transferred or deleted first).
    Delete {
        /// User name or id.
        user: String,
        /// Confirms the deletion (it cannot be undone).
        #[arg(long, required = true)]
        yes: bool,
    },
}

/// mimalloc instead of glibc malloc: allocation is a tenth of the request path's CPU with
/// glibc, and glibc keeps freed large blocks (argon2's ~19 MiB per hash) in per-thread
/// arenas, which after a burst of logins held gigabytes.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's options (the order of `mi_option_e` in the vendored v3 `mimalloc.h`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const MI_OPTION_DISALLOW_ARENA_ALLOC: libmimalloc_sys::mi_option_t = 26;

/// By default mimalloc keeps freed memory in its arenas and gives it back to the system
/// only after a delay, and pages of exited threads stay with the arena: after a burst of writes and logins the process held 90 MiB more than
/// idle for good. Without arenas and with immediate purging it returns to about 60 MiB
/// above idle within seconds (BENCHMARKS.md, issue 11). These are defaults: mimalloc's own
/// environment variables (`MIMALLOC_DISALLOW_ARENA_ALLOC=0`, `MIMALLOC_PURGE_DELAY=1000`)
/// still win, for an operator who prefers the CPU that the arenas save to the memory they
/// keep (docs/configuration.md).
fn tune_allocator() {
    // SAFETY: mi_option_set_default stores an integer option; it is called before any other
    // thread exists, with option numbers of the vendored mimalloc's own enum.
    unsafe {
        libmimalloc_sys::mi_option_set_default(MI_OPTION_DISALLOW_ARENA_ALLOC, 1);
        libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, 0);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let config_path = cli
        .config
        .clone()
        .or_else(|| std::env::var_os("DOGEAR_CONFIG").map(PathBuf::from));
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("DOGEAR_"))
        .collect();
    let listen = match &cli.command {
        Command::Serve { listen } => *listen,
        _ => None,
    };
    let flags = config::Overrides {
        data: cli.data.clone(),
        listen,
    };
    let cfg = match config::load(config_path.as_deref(), &env, &flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dogear: {e}");
            return ExitCode::from(2);
        }
    };
    serve::init_tracing(&cfg);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        // Blocking work is SQLite reads and password hashes, both bounded elsewhere; a
        // smaller pool caps the memory that idle blocking threads keep.
        .max_blocking_threads(64)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dogear: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { .. } => serve::serve(cfg).await,
            Command::Audit {
                action: AuditCmd::Verify { library },
            } => audit_cmd::verify(cfg, library).await,
            Command::Import { path, library } => {
                let summary = import_cmd::run(cfg, &path, library.as_deref()).await?;
                import_cmd::print(&summary);
                if summary.rejected.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{} file(s) rejected", summary.rejected.len()))
                }
            }
            Command::User {
                action:
                    UserAction::Add {
                        name,
                        admin,
                        password_stdin: _,
                        email,
                    },
            } => {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .map_err(|e| format!("reading the password from stdin: {e}"))?;
                let password = line.trim_end_matches(['\n', '\r']);
                serve::add_user(cfg, &name, password, email.as_deref(), admin).await
            }
            Command::User {
                action: UserAction::List,
            } => user_cmd::list(cfg).await,
            Command::User {
                action: UserAction::Disable { user },
            } => user_cmd::set_disabled(cfg, &user, true).await,
            Command::User {
                action: UserAction::Enable { user },
            } => user_cmd::set_disabled(cfg, &user, false).await,
            Command::User {
                action:
                    UserAction::ResetPassword {
                        user,
                        password_stdin: _,
                    },
            } => {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .map_err(|e| format!("reading the password from stdin: {e}"))?;
                let password = line.trim_end_matches(['\n', '\r']);
                user_cmd::reset_password(cfg, &user, password).await
            }
            Command::User {
                action: UserAction::Delete { user, yes: _ },
            } => user_cmd::delete(cfg, &user).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dogear: {e}");
            ExitCode::FAILURE
        }
    }
}
