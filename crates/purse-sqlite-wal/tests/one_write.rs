//! A commit's WAL frames go to the file in as few write calls as the platform VFS takes. (Alone in its test binary: the
//! count of write calls is the process's.)

use rusqlite::{Connection, OpenFlags};

#[test]
fn a_commit_of_many_pages_takes_a_few_write_calls_not_two_a_page() {
    purse_sqlite_wal::register().unwrap();
    let dir = std::env::temp_dir().join(format!("purse-wal-one-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("db");
    let c = Connection::open_with_flags_and_vfs(&path, OpenFlags::default(), purse_sqlite_wal::NAME).unwrap();
    c.execute_batch(
        "PRAGMA page_size=8192; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
         CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL);",
    )
    .unwrap();
    let before = purse_sqlite_wal::wal_writes();
    c.execute_batch("BEGIN").unwrap();
    for i in 0..200 {
        c.execute("INSERT INTO t (id, v) VALUES (?1, zeroblob(2000))", [i]).unwrap();
    }
    c.execute_batch("COMMIT").unwrap();
    let frames: i64 = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1)).unwrap();
    // About 60 pages of 8 KiB, each frame two writes without this VFS (120 calls): with it,
    // the frames in calls of up to 124 KiB (15 frames each), the new WAL's header with them.
    assert!(frames >= 50, "{frames} frames");
    let writes = purse_sqlite_wal::wal_writes() - before;
    let bytes = 32 + frames * (8192 + 24);
    assert_eq!(writes, (bytes as u64).div_ceil(0x1f000), "write calls for {frames} frames");
    let _ = std::fs::remove_dir_all(&dir);
}
