//! A dev gateway whose store sits on a disk the test can make fail (`events`' test disk: every
//! write and sync answers ENOSPC or EROFS while the switch is on).
//!
//! **Invariant:** the store's reopen after a failed write goes through the same opener, so it
//! sees the same switch.

use events::store::CheckpointPolicy;
use events::store::redb::{Options, RedbStore};
pub use events::store::test_disk::{Disk, Failure};
use projections::Projections;
use rack_gateway::keys::Keys;
use rack_gateway::server::dev::DEV_ORIGIN;

use crate::support::{TestGateway, log_path};

/// A dev gateway whose store sits on a disk the test can make fail.
pub async fn gateway_on_failing_disk() -> (TestGateway, Disk) {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::init(dir.path(), DEV_ORIGIN).unwrap();
    let disk = Disk::default();
    let store = RedbStore::open_with(
        disk.opener(&log_path(dir.path())),
        Options {
            origin: keys.checkpoint.name().to_owned(),
            signer: keys.checkpoint.clone(),
            policy: CheckpointPolicy::default(),
        },
        Projections::default(),
    )
    .unwrap();
    let gateway = TestGateway::start_on(dir, store, keys).await;
    (gateway, disk)
}
