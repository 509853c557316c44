//! Closing a store: reads and writes are refused afterwards.

use super::*;

pub async fn closing(s: &dyn Store) {
    s.ping().await.expect("ping on an open store");
    s.close().await.expect("close");
    assert!(s.ping().await.is_err(), "a closed store refuses reads");
    let (u, lib) = new_user("conf_late");
    assert!(
        s.create_user(&u, &lib).await.is_err(),
        "a closed store refuses writes"
    );
}
