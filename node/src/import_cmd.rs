//! `dogear import PATH [--library ID|USER]`: the import pipeline on the command line, with
//! a progress bar on a terminal and a summary at the end.

use crate::config::Config;
use crate::serve::{resolve_library, start_app};
use dogear_actors::import::folder;
use dogear_actors::import::pipeline::Importer;
use dogear_storage::{BookSource, JobState, LibraryId, Store};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the run did; `Err` only for problems that stopped it.
pub struct Summary {
    pub imported: usize,
    pub duplicates: usize,
    pub rejected: Vec<(String, String, String)>,
}

async fn default_library(store: &Arc<dyn Store>) -> Result<LibraryId, String> {
    // The first administrator's personal library: the natural owner of a command-line run.
    let Some(admin) = first_admin(store).await? else {
        return Err("no administrator exists yet: create one with `dogear user add NAME --admin --password-stdin`, or pass --library".into());
    };
    resolve_library(store, "--library", &admin).await
}

async fn first_admin(store: &Arc<dyn Store>) -> Result<Option<String>, String> {
    store.first_admin().await.map_err(|e| e.to_string())
}

fn files_under(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let seen = folder::walk(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(seen.into_iter().map(|s| path.join(s.path)).collect())
}

pub async fn run(cfg: Config, path: &Path, library: Option<&str>) -> Result<Summary, String> {
    let files = files_under(path)?;
    let (app, _, _) = start_app(&cfg, false).await?;
    let importer = app.importer().clone();
    let store = importer.store().clone();
    let library = match library {
        Some(l) => resolve_library(&store, "--library", l).await?,
        None => default_library(&store).await?,
    };
    let total = files.len();
    let tty = std::io::stderr().is_terminal();
    let mut summary = Summary {
        imported: 0,
        duplicates: 0,
        rejected: Vec::new(),
    };
    let workers = importer.settings().workers.max(1);
    let sem = Arc::new(tokio::sync::Semaphore::new(workers));
    let mut tasks = tokio::task::JoinSet::new();
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut job = Importer::new_job(library, None, BookSource::Upload, None, &f, &name, false);
        // Marked running at once: a server sharing this database must not take it too.
        job.state = JobState::Running;
        store.upsert_job(&job).await.map_err(|e| e.to_string())?;
        let (imp, sem) = (importer.clone(), sem.clone());
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            (f, imp.run(job).await)
        });
    }
    let mut done: usize = 0;
    while let Some(r) = tasks.join_next().await {
        let Ok((file, job)) = r else { continue };
        done += 1;
        match (job.state, job.duplicate_of, &job.error) {
            (JobState::Done, Some(_), _) => summary.duplicates += 1,
            (JobState::Done, None, _) => summary.imported += 1,
            (_, _, Some(e)) => summary.rejected.push((
                file.display().to_string(),
                e.code.clone(),
                e.message.clone(),
            )),
            (_, _, None) => summary.rejected.push((
                file.display().to_string(),
                "unknown".into(),
                "not imported".into(),
            )),
        }
        if tty {
            let width: usize = 30;
            let filled = (done * width).checked_div(total).unwrap_or(width);
            eprint!(
                "\r[{}{}] {done}/{total}  imported {}  duplicates {}  rejected {}",
                "#".repeat(filled),
                " ".repeat(width - filled),
                summary.imported,
                summary.duplicates,
                summary.rejected.len()
            );
            let _ = std::io::stderr().flush();
        }
    }
    if tty {
        eprintln!();
    }
    app.shutdown().await;
    Ok(summary)
}

pub fn print(s: &Summary) {
    println!(
        "imported {}, duplicates {}, rejected {}",
        s.imported,
        s.duplicates,
        s.rejected.len()
    );
    for (file, code, message) in &s.rejected {
        println!("  rejected {file}: {code}: {message}");
    }
}
