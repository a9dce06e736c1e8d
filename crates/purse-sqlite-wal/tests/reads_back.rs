//! What is written through the VFS reads back the same from every connection, whatever
//! SQLite does with its WAL: frames written before the commit when the page cache spills,
//! frames rewritten in place, frames read back before the commit, checkpoints, rollbacks.

use rusqlite::{Connection, OpenFlags};

fn open(path: &std::path::Path) -> Connection {
    purse_sqlite_wal::register().unwrap();
    let c = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), purse_sqlite_wal::NAME).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;").unwrap();
    c
}

fn state(c: &Connection) -> (i64, i64, String) {
    let (n, sum) =
        c.query_row("SELECT count(*), coalesce(sum(v), 0) FROM t", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    (n, sum, ok)
}

#[test]
fn what_is_written_reads_back_the_same_from_every_connection() {
    let dir = std::env::temp_dir().join(format!("purse-wal-back-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("db");
    let writer = open(&path);
    // A page cache of 8 pages: a transaction of thousands of rows spills frames into the WAL
    // before its commit, rewrites some of them, and reads them back.
    writer
        .execute_batch(
            "PRAGMA cache_size=8; CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL, pad BLOB); \
             CREATE INDEX t_v ON t (v);",
        )
        .unwrap();
    let reader = open(&path);
    let plain = Connection::open(&path).unwrap();
    let mut expected = (0i64, 0i64);
    for round in 0..5i64 {
        writer.execute_batch("BEGIN").unwrap();
        for i in 0..3000i64 {
            let id = (i * 7919 + round * 13) % 5000;
            writer
                .execute(
                    "INSERT INTO t (id, v, pad) VALUES (?1, ?2, zeroblob(100)) ON CONFLICT (id) DO UPDATE SET v = v + ?2",
                    [id, i + 1],
                )
                .unwrap();
        }
        // Read inside the transaction: pages of this transaction come back from the WAL.
        let inside = state(&writer);
        writer.execute_batch("COMMIT").unwrap();
        let after = state(&writer);
        assert_eq!(inside, after, "round {round}");
        assert_eq!(after.2, "ok");
        assert_eq!(state(&reader), after, "another connection through the VFS, round {round}");
        assert_eq!(state(&plain), after, "a connection of the platform's VFS, round {round}");
        // A rolled-back transaction leaves nothing, its spilled frames included.
        writer.execute_batch("BEGIN").unwrap();
        for i in 0..2000i64 {
            writer.execute("UPDATE t SET v = v + 1000000 WHERE id = ?1", [i]).unwrap();
        }
        writer.execute_batch("ROLLBACK").unwrap();
        assert_eq!(state(&reader), after, "after a rollback, round {round}");
        if round % 2 == 1 {
            writer.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
        }
        expected = (after.0, after.1);
    }
    drop((writer, reader, plain));
    // Opened again, from the file and its WAL alone.
    let again = open(&path);
    let (n, sum, ok) = state(&again);
    assert_eq!((n, sum), expected);
    assert_eq!(ok, "ok");
    let _ = std::fs::remove_dir_all(&dir);
}
