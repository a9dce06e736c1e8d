//! A SQLite VFS that writes a WAL commit with a few write calls instead of two per page.
//!
//! SQLite appends each WAL frame with two `pwrite` calls, its 24-byte header and then its
//! page, and syncs once at the commit. A batch of 8,192 charges commits about 450 frames
//! (900 calls); a small batch over HTTP about 15 (30 calls), on the writer's thread, where
//! every request of the batch waits for them. This VFS is SQLite's own ("unix"), except that
//! the writes to a WAL file that follow one another are gathered in memory and handed to the
//! file in calls of 124 KiB as they fill, and the rest before anything else touches the file:
//! a sync, a read, a truncation, its size, any file control, its close, or a write somewhere
//! else. Measured on this machine (BENCHMARKS.md): 15 frames took 52 µs of write calls, 15 µs
//! as one call; 450 frames 1.17 ms and 0.70 ms.
//!
//! Why it is safe: nothing reads a WAL frame before it is committed, and SQLite commits
//! (with `synchronous=FULL`, which the store insists on) by syncing the WAL, which writes out
//! what is gathered first; only then does it publish the frames in the WAL index that readers
//! of this and other processes go by. A process that dies with writes gathered dies before
//! that sync, so before its commit, as if it had died before writing them; a write that fails
//! when gathered writes go out fails the sync (or read) that sent them, and SQLite rolls the
//! transaction back. Files other than WALs are the platform VFS's own, untouched.

use std::ffi::{c_int, c_void, CStr};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The VFS's name, for `Connection::open_with_flags_and_vfs`.
pub const NAME: &str = "purse-wal";
const NAME_C: &CStr = c"purse-wal";

/// The most one call hands the platform VFS: SQLite's unix VFS writes at most 128 KiB − 1
/// bytes per call (`seekAndWriteFd` masks the length with 0x1ffff), as SQLite itself never
/// writes more than a page and its header at once. 31 pages of 4 KiB.
const WRITE_MAX: usize = 0x1f000;

/// Write calls made to WAL files by this VFS since the process started (for tests).
static WAL_WRITES: AtomicU64 = AtomicU64::new(0);

/// Registers the VFS (once per process; later calls return the first call's outcome).
pub fn register() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    // SAFETY: runs once; `register_once` only reads the default VFS and registers a copy.
    REGISTERED.get_or_init(|| unsafe { register_once() }).clone()
}

/// Write calls made to WAL files through this VFS so far in this process.
pub fn wal_writes() -> u64 {
    WAL_WRITES.load(Ordering::Relaxed)
}

/// Where a wrapped file's own platform file starts in the memory SQLite gives us.
const fn inner_offset() -> usize {
    (std::mem::size_of::<WalFile>() + 15) & !15
}

unsafe fn register_once() -> Result<(), String> {
    // SAFETY: `sqlite3_vfs_find` initialises SQLite if needed and returns the default VFS,
    // which lives as long as the process.
    let inner = unsafe { ffi::sqlite3_vfs_find(ptr::null()) };
    if inner.is_null() {
        return Err("SQLite has no default VFS".into());
    }
    // A copy of the platform VFS with our open. Its other methods ignore the VFS pointer
    // they are given (SQLite's unix VFS uses it only in xOpen), so they run as they are.
    // SAFETY: `inner` points at a valid, registered `sqlite3_vfs`.
    let mut vfs: ffi::sqlite3_vfs = unsafe { ptr::read(inner) };
    // SAFETY: as above.
    let inner_size = usize::try_from(unsafe { (*inner).szOsFile }).map_err(|e| e.to_string())?;
    vfs.szOsFile = c_int::try_from(inner_offset() + inner_size).map_err(|e| e.to_string())?;
    vfs.pNext = ptr::null_mut();
    vfs.zName = NAME_C.as_ptr();
    vfs.pAppData = inner.cast::<c_void>();
    vfs.xOpen = Some(open);
    let vfs: &'static mut ffi::sqlite3_vfs = Box::leak(Box::new(vfs));
    // SAFETY: `vfs` is a valid VFS that lives as long as the process.
    match unsafe { ffi::sqlite3_vfs_register(vfs, 0) } {
        ffi::SQLITE_OK => Ok(()),
        rc => Err(format!("registering the {NAME} VFS: SQLite error {rc}")),
    }
}

/// A WAL file: SQLite's view of it, the platform file behind it, and the writes gathered.
#[repr(C)]
struct WalFile {
    /// First, so that a pointer to it is a pointer to this.
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    gathered: *mut Gathered,
}

/// Writes that follow one another, from offset `at`.
struct Gathered {
    at: i64,
    bytes: Vec<u8>,
}

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite calls this on the VFS registered above, whose app data is the platform
    // VFS, with `file` pointing at `szOsFile` bytes of its own.
    unsafe {
        let inner_vfs = (*vfs).pAppData.cast::<ffi::sqlite3_vfs>();
        let Some(inner_open) = (*inner_vfs).xOpen else { return ffi::SQLITE_ERROR };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            // Not a WAL: the platform's own file, in the memory SQLite gave us.
            return inner_open(inner_vfs, name, file, flags, out_flags);
        }
        let inner = file.cast::<u8>().add(inner_offset()).cast::<ffi::sqlite3_file>();
        (*inner).pMethods = ptr::null();
        let rc = inner_open(inner_vfs, name, inner, flags, out_flags);
        if (*inner).pMethods.is_null() {
            // Nothing to close: SQLite calls no method of a file without methods.
            (*file).pMethods = ptr::null();
            return rc;
        }
        let gathered = Box::into_raw(Box::new(Gathered { at: 0, bytes: Vec::new() }));
        ptr::write(
            file.cast::<WalFile>(),
            WalFile { base: ffi::sqlite3_file { pMethods: &WAL_METHODS }, inner, gathered },
        );
        rc
    }
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

/// The platform file behind `file` and its methods.
///
/// # Safety
/// `file` must be a WAL file opened by [`open`] and not yet closed.
unsafe fn inner(file: *mut ffi::sqlite3_file) -> (*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) {
    // SAFETY: per the contract, `file` is a `WalFile` whose platform file is open; the
    // platform's method tables are static.
    unsafe {
        let inner = (*file.cast::<WalFile>()).inner;
        (inner, &*(*inner).pMethods)
    }
}

/// Writes out what is gathered (nothing when nothing is).
///
/// # Safety
/// As [`inner`].
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: per the contract.
    unsafe { write_out(file, true) }
}

/// Writes out the gathered bytes in calls of [`WRITE_MAX`]: all of them, or (`all` false)
/// the whole calls' worth, keeping the rest gathered.
///
/// # Safety
/// As [`inner`].
unsafe fn write_out(file: *mut ffi::sqlite3_file, all: bool) -> c_int {
    // SAFETY: per the contract; SQLite never uses one file from two threads at once.
    unsafe {
        let gathered = &mut *(*file.cast::<WalFile>()).gathered;
        let keep = if all { 0 } else { gathered.bytes.len() % WRITE_MAX };
        let whole = gathered.bytes.len() - keep;
        if whole == 0 {
            return ffi::SQLITE_OK;
        }
        let (inner, methods) = inner(file);
        let Some(write) = methods.xWrite else { return ffi::SQLITE_IOERR_WRITE };
        let mut at = gathered.at;
        for chunk in gathered.bytes[..whole].chunks(WRITE_MAX) {
            WAL_WRITES.fetch_add(1, Ordering::Relaxed);
            let len = c_int::try_from(chunk.len()).expect("chunks are bounded");
            let rc = write(inner, chunk.as_ptr().cast::<c_void>(), len, at);
            if rc != ffi::SQLITE_OK {
                // Gone with the failure: it fails what sent them, and SQLite rolls the
                // transaction back.
                gathered.bytes.clear();
                return rc;
            }
            at += i64::from(len);
        }
        gathered.bytes.copy_within(whole.., 0);
        gathered.bytes.truncate(keep);
        gathered.at = at;
        ffi::SQLITE_OK
    }
}

/// Calls `then` after writing out what is gathered, or returns the write's error.
///
/// # Safety
/// As [`inner`].
unsafe fn flushed(file: *mut ffi::sqlite3_file, then: impl FnOnce() -> c_int) -> c_int {
    // SAFETY: per the contract.
    match unsafe { flush(file) } {
        ffi::SQLITE_OK => then(),
        rc => rc,
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file once, after its last use.
    unsafe {
        let written = flush(file);
        let (inner, methods) = inner(file);
        let closed = methods.xClose.map_or(ffi::SQLITE_OK, |close| close(inner));
        drop(Box::from_raw((*file.cast::<WalFile>()).gathered));
        (*file).pMethods = ptr::null();
        if written != ffi::SQLITE_OK {
            written
        } else {
            closed
        }
    }
}

unsafe extern "C" fn write(file: *mut ffi::sqlite3_file, buf: *const c_void, amt: c_int, offset: i64) -> c_int {
    // SAFETY: SQLite passes an open file and `amt` readable bytes at `buf`.
    unsafe {
        let gathered = &mut *(*file.cast::<WalFile>()).gathered;
        let end = gathered.at + gathered.bytes.len() as i64;
        if !gathered.bytes.is_empty() && offset != end {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        let gathered = &mut *(*file.cast::<WalFile>()).gathered;
        if gathered.bytes.is_empty() {
            gathered.at = offset;
        }
        let Ok(amt) = usize::try_from(amt) else { return ffi::SQLITE_IOERR_WRITE };
        gathered.bytes.extend_from_slice(std::slice::from_raw_parts(buf.cast::<u8>(), amt));
        // A whole call's worth goes out at once: what is gathered stays small (and in the
        // processor's cache), however many frames a commit has.
        if gathered.bytes.len() >= WRITE_MAX {
            return write_out(file, false);
        }
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn read(file: *mut ffi::sqlite3_file, buf: *mut c_void, amt: c_int, offset: i64) -> c_int {
    // SAFETY: SQLite passes an open file and `amt` writable bytes at `buf`.
    unsafe {
        flushed(file, || {
            let (inner, methods) = inner(file);
            methods.xRead.map_or(ffi::SQLITE_IOERR_READ, |read| read(inner, buf, amt, offset))
        })
    }
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: SQLite passes an open file.
    unsafe {
        flushed(file, || {
            let (inner, methods) = inner(file);
            methods.xTruncate.map_or(ffi::SQLITE_IOERR_TRUNCATE, |truncate| truncate(inner, size))
        })
    }
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: SQLite passes an open file.
    unsafe {
        flushed(file, || {
            let (inner, methods) = inner(file);
            methods.xSync.map_or(ffi::SQLITE_IOERR_FSYNC, |sync| sync(inner, flags))
        })
    }
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    // SAFETY: SQLite passes an open file and a place for the size.
    unsafe {
        flushed(file, || {
            let (inner, methods) = inner(file);
            methods.xFileSize.map_or(ffi::SQLITE_IOERR_FSTAT, |file_size| file_size(inner, size))
        })
    }
}

unsafe extern "C" fn file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    // SAFETY: SQLite passes an open file; `arg` is the platform's to read.
    unsafe {
        flushed(file, || {
            let (inner, methods) = inner(file);
            methods.xFileControl.map_or(ffi::SQLITE_NOTFOUND, |control| control(inner, op, arg))
        })
    }
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: SQLite passes an open file.
    unsafe {
        let (inner, methods) = inner(file);
        methods.xLock.map_or(ffi::SQLITE_OK, |lock| lock(inner, level))
    }
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: SQLite passes an open file.
    unsafe {
        let (inner, methods) = inner(file);
        methods.xUnlock.map_or(ffi::SQLITE_OK, |unlock| unlock(inner, level))
    }
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: SQLite passes an open file and a place for the answer.
    unsafe {
        let (inner, methods) = inner(file);
        methods.xCheckReservedLock.map_or(ffi::SQLITE_IOERR_CHECKRESERVEDLOCK, |check| check(inner, out))
    }
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite passes an open file.
    unsafe {
        let (inner, methods) = inner(file);
        methods.xSectorSize.map_or(4096, |size| size(inner))
    }
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite passes an open file.
    unsafe {
        let (inner, methods) = inner(file);
        methods.xDeviceCharacteristics.map_or(0, |characteristics| characteristics(inner))
    }
}

unsafe extern "C" fn shm_map(
    file: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: SQLite passes an open file and a place for the mapping.
    unsafe {
        let (inner, methods) = inner(file);
        methods.xShmMap.map_or(ffi::SQLITE_IOERR_SHMMAP, |map| map(inner, region, size, extend, out))
    }
}

unsafe extern "C" fn shm_lock(file: *mut ffi::sqlite3_file, offset: c_int, n: c_int, flags: c_int) -> c_int {
    // SAFETY: SQLite passes an open file.
    unsafe {
        let (inner, methods) = inner(file);
        methods.xShmLock.map_or(ffi::SQLITE_IOERR_SHMLOCK, |lock| lock(inner, offset, n, flags))
    }
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: SQLite passes an open file.
    unsafe {
        let (inner, methods) = inner(file);
        if let Some(barrier) = methods.xShmBarrier {
            barrier(inner);
        }
    }
}

unsafe extern "C" fn shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    // SAFETY: SQLite passes an open file.
    unsafe {
        let (inner, methods) = inner(file);
        methods.xShmUnmap.map_or(ffi::SQLITE_OK, |unmap| unmap(inner, delete))
    }
}

unsafe extern "C" fn fetch(file: *mut ffi::sqlite3_file, offset: i64, amt: c_int, out: *mut *mut c_void) -> c_int {
    // SAFETY: SQLite passes an open file and a place for the pointer.
    unsafe {
        flushed(file, || {
            let (inner, methods) = inner(file);
            match methods.xFetch {
                Some(fetch) => fetch(inner, offset, amt, out),
                None => {
                    *out = ptr::null_mut();
                    ffi::SQLITE_OK
                }
            }
        })
    }
}

unsafe extern "C" fn unfetch(file: *mut ffi::sqlite3_file, offset: i64, p: *mut c_void) -> c_int {
    // SAFETY: SQLite passes an open file and a pointer it fetched.
    unsafe {
        let (inner, methods) = inner(file);
        methods.xUnfetch.map_or(ffi::SQLITE_OK, |unfetch| unfetch(inner, offset, p))
    }
}
