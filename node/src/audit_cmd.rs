//! `dogear audit verify`: walks the audit log of every library (or one) and checks its hash
//! chain, so that an entry changed, inserted or removed in the middle directly in the
//! database is found. The last entry's hash is printed: kept elsewhere, it also shows a log
//! cut short at the end.

use crate::config::Config;
use dogear_storage::{LibraryId, LibraryKind, check_chain};

const PAGE: usize = 1_000;

pub async fn verify(cfg: Config, library: Option<LibraryId>) -> Result<(), String> {
    let (store, _) = crate::serve::open_store(&cfg).await?;
    let result = walk(&*store, library).await;
    let _ = store.close().await;
    result
}

async fn walk(store: &dyn dogear_storage::Store, library: Option<LibraryId>) -> Result<(), String> {
    let libraries = match library {
        Some(l) => vec![l],
        None => store
            .audited_libraries()
            .await
            .map_err(|e| format!("reading the audit log: {e}"))?,
    };
    let mut total = 0u64;
    for lib in &libraries {
        let (mut seq, mut prev) = (1u64, String::new());
        let mut after = 0;
        loop {
            let page = store
                .audit_entries(*lib, after, PAGE)
                .await
                .map_err(|e| format!("reading the audit log of library {lib}: {e}"))?;
            if let Err(brk) = check_chain(&page, &mut seq, &mut prev) {
                println!("FAILED {brk}");
                return Err(format!(
                    "the audit log of library {lib} does not verify at entry {}",
                    brk.seq
                ));
            }
            let Some(last) = page.last() else { break };
            after = last.seq;
            if page.len() < PAGE {
                break;
            }
        }
        let entries = seq - 1;
        if entries == 0 {
            // A shared library's log starts with its creation: none at all is a log removed.
            let shared = store
                .library(*lib)
                .await
                .map_err(|e| format!("reading library {lib}: {e}"))?
                .is_some_and(|l| l.kind == LibraryKind::Shared);
            if shared {
                println!("FAILED library {lib} entry 1: missing (a shared library has no log)");
                return Err(format!("the audit log of library {lib} is missing"));
            }
            println!("library {lib}: no audit entries");
            continue;
        }
        total += entries;
        println!("ok library {lib}: {entries} entries, last hash {prev}");
    }
    println!(
        "audit log verified: {total} entries in {} libraries",
        libraries.len()
    );
    Ok(())
}
