//! Deduplication by content hash, the import job queue and watched sources' files.

use super::*;

/// Deduplication by content hash, the job queue and source files.
pub async fn imports(s: &dyn Store) {
    let (u, lib) = new_user("conf_imports");
    let (_, other_lib) = new_user("conf_imports_other");
    s.create_user(&u, &lib).await.unwrap();
    let now = Timestamp::now();
    let job = |path: &str| ImportJob {
        id: JobId::generate(),
        library_id: lib.id,
        user_id: Some(u.id),
        source: BookSource::Folder,
        source_key: Some("folder:test".into()),
        path: path.into(),
        filename: path.into(),
        staged: false,
        state: JobState::Queued,
        attempts: 0,
        run_at: now,
        book_id: None,
        duplicate_of: None,
        error: None,
        warnings: vec![],
        created_at: now,
        updated_at: now,
        node: None,
    };
    let j1 = job("a.epub");
    let mut later = job("b.epub");
    later.run_at = Timestamp::from_millis(now.millis() + 60_000);
    s.upsert_job(&j1).await.unwrap();
    s.upsert_job(&later).await.unwrap();
    assert_eq!(s.next_job_at("a").await.unwrap(), Some(now));
    let claimed = s.claim_jobs(now, 10, "a").await.unwrap();
    assert_eq!(claimed.len(), 1, "only due jobs are claimed");
    assert_eq!(claimed[0].state, JobState::Running);
    assert!(
        s.claim_jobs(now, 10, "b").await.unwrap().is_empty(),
        "a claimed job is not claimed twice"
    );
    assert_eq!(
        s.requeue_running_jobs("b").await.unwrap(),
        0,
        "a node requeues only its own jobs"
    );
    assert_eq!(s.requeue_running_jobs("a").await.unwrap(), 1);
    assert_eq!(
        s.job(j1.id).await.unwrap().unwrap().state,
        JobState::Queued,
        "requeued after a restart"
    );
    // A job whose file is on one node's disk is that node's to run.
    let mut staged = job("staged.epub");
    staged.library_id = LibraryId::generate();
    staged.node = Some("a".into());
    staged.staged = true;
    s.upsert_job(&staged).await.unwrap();
    let by_b = s.claim_jobs(now, 10, "b").await.unwrap();
    assert_eq!(by_b.len(), 1, "b takes the job any node may run, only");
    assert_eq!(by_b[0].id, j1.id);
    let by_a = s.claim_jobs(now, 10, "a").await.unwrap();
    assert_eq!(by_a.len(), 1);
    assert_eq!(by_a[0].id, staged.id);
    assert_eq!(by_a[0].node.as_deref(), Some("a"), "the node round-trips");
    // b dies: the job it held goes back to the queue; a's staged job stays a's.
    assert_eq!(s.requeue_jobs_of(&["b".to_string()]).await.unwrap(), 1);
    assert_eq!(
        s.requeue_jobs_of(&["a".to_string()]).await.unwrap(),
        0,
        "a job tied to a lost node's disk waits for it"
    );
    assert_eq!(s.job(j1.id).await.unwrap().unwrap().state, JobState::Queued);
    assert_eq!(s.next_job_at("b").await.unwrap(), Some(now));
    s.claim_jobs(now, 10, "a").await.unwrap();
    assert_eq!(s.requeue_running_jobs("a").await.unwrap(), 2);
    s.claim_jobs(now, 10, "a").await.unwrap();
    let mut failed = s.job(staged.id).await.unwrap().unwrap();
    failed.state = JobState::Failed;
    s.upsert_job(&failed).await.unwrap();
    // Jobs `dogear import` marked running itself and left: requeued once old enough.
    let mut left = job("left.epub");
    left.library_id = LibraryId::generate();
    left.state = JobState::Running;
    left.updated_at = Timestamp::from_millis(now.millis() - 3_600_000);
    s.upsert_job(&left).await.unwrap();
    assert_eq!(
        s.requeue_abandoned_jobs(Timestamp::from_millis(now.millis() - 7_200_000))
            .await
            .unwrap(),
        0,
        "not yet: it changed after the cut-off"
    );
    assert_eq!(
        s.requeue_abandoned_jobs(Timestamp::from_millis(now.millis() - 60_000))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.job(left.id).await.unwrap().unwrap().state,
        JobState::Queued
    );
    let mut gone = s.job(left.id).await.unwrap().unwrap();
    gone.state = JobState::Failed;
    s.upsert_job(&gone).await.unwrap();

    let mut b = book(lib.id, "Hashed", "A");
    b.meta.formats = vec![file(Format::Epub, "00000000000000aa")];
    let src = SourceFile {
        source: "folder:test".into(),
        path: "a.epub".into(),
        library_id: lib.id,
        hash: "00000000000000aa".into(),
        size: 42,
        mtime: 7,
        book_id: Some(b.id),
    };
    let mut done = j1.clone();
    done.state = JobState::Done;
    done.book_id = Some(b.id);
    assert_eq!(
        s.register_import(&b, Some(&src), Some(&done))
            .await
            .unwrap(),
        RegisterOutcome::Created
    );
    assert_eq!(
        s.job(j1.id).await.unwrap().unwrap().book_id,
        Some(b.id),
        "job finished with the book"
    );
    assert_eq!(
        s.source_files("folder:test").await.unwrap(),
        vec![src.clone()]
    );
    assert_eq!(s.source_files_of_book(b.id).await.unwrap().len(), 1);
    assert_eq!(
        s.book_by_hash(lib.id, "00000000000000aa").await.unwrap(),
        Some(b.id)
    );
    assert_eq!(
        s.book_by_hash(other_lib.id, "00000000000000aa")
            .await
            .unwrap(),
        None,
        "per library"
    );
    let mut again = book(lib.id, "Same bytes", "B");
    again.meta.formats = vec![file(Format::Epub, "00000000000000aa")];
    assert_eq!(
        s.register_import(&again, None, None).await.unwrap(),
        RegisterOutcome::Duplicate(b.id),
        "same hash in the same library is a duplicate"
    );
    assert!(
        s.book(again.id).await.unwrap().is_none(),
        "nothing written for a duplicate"
    );
    let mut gone = b.clone();
    gone.deleted_at = Some(Timestamp::now());
    gone.version = 2;
    s.update_book(&gone).await.unwrap();
    assert_eq!(
        s.book_by_hash(lib.id, "00000000000000aa").await.unwrap(),
        None,
        "a tombstone frees its hash"
    );
    let mut moved = src.clone();
    moved.path = "sub/a.epub".into();
    s.put_source_files(&[moved.clone()], &[("folder:test".into(), "a.epub".into())])
        .await
        .unwrap();
    assert_eq!(s.source_files("folder:test").await.unwrap(), vec![moved]);
    let all = s.list_jobs(&[lib.id], None, None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![later.id, j1.id],
        "newest first"
    );
    let done_only = s
        .list_jobs(&[lib.id], Some(JobState::Done), None, 10)
        .await
        .unwrap();
    assert_eq!(done_only.len(), 1);
    assert_eq!(done_only[0].id, j1.id);
    let older = s
        .list_jobs(&[lib.id], None, Some(later.id), 10)
        .await
        .unwrap();
    assert_eq!(older.len(), 1, "paging by id");
    assert!(
        s.list_jobs(&[other_lib.id], None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let counts = s.job_counts().await.unwrap();
    assert!(
        counts.contains(&(JobState::Done, 1)) && counts.contains(&(JobState::Queued, 1)),
        "{counts:?}"
    );
}
