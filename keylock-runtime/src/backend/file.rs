//! The file backend: OS advisory file locks (`flock`), so that processes on
//! one host share locks.
//!
//! One lock file per resource and key, in a directory the application
//! names. A lock file's name is derived from the resource and key: at most
//! 40 readable characters of each (letters, digits, `-` and `_`; anything
//! else becomes `_`) and a 128-bit hash of the exact pair, so no key can
//! reach outside the directory, and two keys share a file only if their
//! hashes collide, which would only make them wait for each other.
//!
//! Lock files do not pile up. Creating and removing a file costs twice
//! what the rest of an acquisition does, so a released file stays for the
//! next use of its key, and each process removes the files it used beyond
//! the [`KEPT_FILES`] most recent, a few per release, oldest first, and
//! the rest when its backend is dropped; [`FileBackend::new`] also removes
//! the idle files other processes left. A file is removed only by a
//! process that holds its lock, and a process that opens a file and locks
//! it checks afterwards that the path still names the file it locked,
//! starting over if not, so removal never lets two holders lock two
//! different files for one key.
//!
//! Fencing tokens are kept in each lock file: a writer, holding the file
//! exclusively, reads the last token and writes the next, so grants of a
//! key never touch anything shared with other keys, and a process stopped
//! (`SIGSTOP`, a paused container) while it holds a key blocks that key
//! only. A reader carries the last writer's token. When a lock file is
//! removed, its last token goes into the directory's counter file
//! (`keylock.fence`, updated under its own short lock), from which a new
//! lock file starts: tokens of a key never go down across removals. (A
//! process stopped inside that short lock delays only the creation and
//! removal of lock files, which then wait or are skipped.) Nothing is
//! synced to disk on every grant, so a power loss may lose the last
//! tokens, and removing the directory starts them again.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Backend, BackendError, BoxFuture, Intent, Lease, Target};
use crate::access::Access;
use crate::sync::{self, Mutex};

/// The counter file of fencing tokens.
const FENCE_FILE: &str = "keylock.fence";
/// The suffix of lock files (and gate files), and only of them.
const LOCK_SUFFIX: &str = ".lock";
/// What a lock file's gate file adds before [`LOCK_SUFFIX`].
const GATE: &str = ".gate";
/// Readable characters kept of a resource name, and of a key.
const READABLE: usize = 40;
/// Lock files a process keeps after release, for the next use of their
/// keys.
pub(crate) const KEPT_FILES: usize = 256;
/// Files past [`KEPT_FILES`] removed per release, so removal keeps up with
/// any rate of new keys at a bounded cost per release.
const REMOVED_PER_RELEASE: usize = 2;
/// Attempts at a lock file before giving up on a path that never names
/// the file just locked.
const REPLACED_ATTEMPTS: u32 = 64;
/// Attempts at the directory's counter lock before the grant (or removal)
/// is given up as busy (the counter is held for a read and a write,
/// microseconds).
const FENCE_ATTEMPTS: u32 = 200;

/// Locks shared by the processes of one host, through OS file locks in a
/// directory.
///
/// The kernel releases a file lock when its holder exits, also when it is
/// killed, so a crashed holder never keeps a lock. Shared (read) and
/// exclusive (write) locks are both supported. Works on local file
/// systems; network file systems differ in how they honour `flock`.
///
/// # Example
///
/// ```
/// use keylock_runtime::{FileBackend, Registry};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("keylock-doc-{}", std::process::id()));
/// let registry = Registry::builder()
///     .backend("jobs", FileBackend::new(&dir)?)
///     .build();
/// let jobs = registry.keyed::<u64>("jobs");
/// let guard = jobs.write_blocking(&7);
/// // Every process on this host that binds "jobs" to the same directory
/// // now waits for this guard; the token orders its writes.
/// assert!(guard.fence().is_some());
/// # drop(guard);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
pub struct FileBackend {
    dir: PathBuf,
    /// What the backend's leases share with it.
    shared: Arc<Shared>,
}

/// What a backend and its leases share.
struct Shared {
    /// The directory's counter of tokens of removed lock files.
    fences: Fences,
    /// The lock files this process used and left in place.
    kept: Mutex<KeptFiles>,
}

impl Shared {
    /// Records a release of `path`, and removes the oldest kept files.
    fn released(&self, path: &Path) {
        let removed = sync::lock(&self.kept).released(path);
        for path in removed {
            self.remove_if_idle(&path);
        }
    }

    /// Removes the lock file at `path` if no one holds it, while holding
    /// it, so that no one is left holding a file that can no longer be
    /// found; its last token goes to the directory's counter first.
    fn remove_if_idle(&self, path: &Path) -> bool {
        // Opening without creating: a file removed meanwhile is skipped.
        let Ok(file) = OpenOptions::new().read(true).write(true).open(path) else {
            return false;
        };
        if file.try_lock().is_err() || !names_file(path, &file) {
            return false;
        }
        let Ok(last) = read_token(&file) else {
            return false;
        };
        let kept = self.fences.with(true, |counter| {
            if read_token(counter)? < last {
                write_token(counter, last)?;
            }
            Ok(())
        });
        // A busy counter leaves the file for a later removal.
        matches!(kept, Ok(Some(()))) && fs::remove_file(path).is_ok()
    }
}

/// The directory's counter file. `flock` excludes open files, not
/// threads, so the threads of this process take turns by the mutex.
struct Fences {
    path: PathBuf,
    file: Mutex<File>,
}

impl Fences {
    /// Runs `use_counter` holding the counter file, exclusively or shared;
    /// `None` if other processes kept it locked.
    fn with<T>(
        &self,
        exclusive: bool,
        use_counter: impl FnOnce(&File) -> io::Result<T>,
    ) -> io::Result<Option<T>> {
        let file = sync::lock(&self.file);
        let mut attempts = 0;
        loop {
            let taken = if exclusive {
                file.try_lock()
            } else {
                file.try_lock_shared()
            };
            match taken {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if attempts < FENCE_ATTEMPTS => {
                    attempts += 1;
                    std::thread::yield_now();
                }
                Err(TryLockError::WouldBlock) => return Ok(None),
                Err(TryLockError::Error(error)) => return Err(in_path(&self.path, error)),
            }
        }
        let used = use_counter(&file);
        let _ = file.unlock();
        used.map(Some).map_err(|error| in_path(&self.path, error))
    }
}

/// The token stored at the start of a lock or counter file; 0 when it
/// holds none yet.
fn read_token(file: &File) -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    let read = file.read_at(&mut bytes, 0)?;
    Ok(if read == bytes.len() {
        u64::from_le_bytes(bytes)
    } else {
        0
    })
}

fn write_token(file: &File, token: u64) -> io::Result<()> {
    file.write_all_at(&token.to_le_bytes(), 0)
}

/// Lock files left in place after release, least recently used first.
#[derive(Default)]
struct KeptFiles {
    /// Each release's file with its use number; an entry is current if its
    /// number is the file's last use in `last_use`.
    order: VecDeque<(PathBuf, u64)>,
    last_use: HashMap<PathBuf, u64>,
    uses: u64,
}

impl KeptFiles {
    /// Records a release of `path`; returns the files to remove now.
    fn released(&mut self, path: &Path) -> Vec<PathBuf> {
        self.uses += 1;
        self.last_use.insert(path.to_path_buf(), self.uses);
        self.order.push_back((path.to_path_buf(), self.uses));
        let mut removed = Vec::new();
        while self.last_use.len() > KEPT_FILES && removed.len() < REMOVED_PER_RELEASE {
            let Some((oldest, used)) = self.order.pop_front() else {
                break;
            };
            if self.last_use.get(&oldest) == Some(&used) {
                self.last_use.remove(&oldest);
                removed.push(oldest);
            }
        }
        if self.order.len() > 4 * KEPT_FILES.max(self.last_use.len()) {
            // Drop the entries of files used again since.
            let last_use = &self.last_use;
            self.order
                .retain(|(path, used)| last_use.get(path) == Some(used));
        }
        removed
    }
}

impl fmt::Debug for FileBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileBackend")
            .field("dir", &self.dir)
            .finish()
    }
}

impl FileBackend {
    /// A backend keeping its lock files in `dir`, created if missing.
    /// Every process that should share locks names the same directory.
    ///
    /// # Errors
    ///
    /// If the directory cannot be created, or its fence counter file cannot
    /// be opened for writing.
    pub fn new(dir: impl AsRef<Path>) -> io::Result<FileBackend> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|error| in_path(&dir, error))?;
        let fence_path = dir.join(FENCE_FILE);
        let fences = open(&fence_path)?;
        let backend = FileBackend {
            dir,
            shared: Arc::new(Shared {
                fences: Fences {
                    path: fence_path,
                    file: Mutex::new(fences),
                },
                kept: Mutex::default(),
            }),
        };
        // Files other processes left: best effort, they are removed later
        // otherwise.
        let _ = backend.remove_idle();
        Ok(backend)
    }

    /// The directory of the lock files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lock file of `target`, in [`dir`](Self::dir).
    pub fn path_of(&self, target: &Target) -> PathBuf {
        self.dir.join(file_name(target))
    }

    /// The gate file of `target`: held exclusively by a writer that waits,
    /// so that readers arriving meanwhile wait behind it.
    fn gate_of(&self, target: &Target) -> PathBuf {
        let name = file_name(target);
        let stem = name.strip_suffix(LOCK_SUFFIX).unwrap_or(&name);
        self.dir.join(format!("{stem}{GATE}{LOCK_SUFFIX}"))
    }

    /// Whether a writer waits for `target`: its gate file is held.
    fn writer_waits(&self, target: &Target) -> bool {
        // Opening without creating: no gate file, no waiting writer.
        let Ok(gate) = OpenOptions::new().read(true).open(self.gate_of(target)) else {
            return false;
        };
        matches!(gate.try_lock_shared(), Err(TryLockError::WouldBlock))
    }

    /// Removes the lock files no process holds, such as those left by
    /// processes that were killed while holding. Safe while other processes
    /// use the directory: a file is removed only while this call holds its
    /// lock. Returns how many were removed.
    ///
    /// # Errors
    ///
    /// If the directory cannot be read.
    pub fn remove_idle(&self) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir).map_err(|error| in_path(&self.dir, error))? {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            let is_lock_file = path
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.ends_with(LOCK_SUFFIX));
            if !is_lock_file {
                continue;
            }
            removed += usize::from(self.shared.remove_if_idle(&path));
        }
        Ok(removed)
    }

    /// One attempt at `target`.
    fn try_lock_now(&self, target: &Target, access: Access) -> io::Result<Option<FileLease>> {
        if access == Access::Read && self.writer_waits(target) {
            return Ok(None);
        }
        let path = self.path_of(target);
        let mut replaced = 0;
        let file = loop {
            let file = open(&path)?;
            let taken = match access {
                Access::Write => file.try_lock(),
                Access::Read => file.try_lock_shared(),
            };
            match taken {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Ok(None),
                Err(TryLockError::Error(error)) => return Err(in_path(&path, error)),
            }
            // A holder may have removed the file between our open and our
            // lock: then we locked a file no one else will ever open.
            let id = file_id(&file).map_err(|error| in_path(&path, error))?;
            if path_names(&path, id) {
                break (file, id);
            }
            replaced += 1;
            if replaced == REPLACED_ATTEMPTS {
                // Removal is rare; a path that never names the file locked
                // is a file system whose `stat` and `fstat` disagree.
                return Err(in_path(
                    &path,
                    io::Error::other("the lock file was replaced each time it was locked"),
                ));
            }
        };
        let (file, id) = file;
        let fence = match self.next_fence(&file, access) {
            Ok(Some(fence)) => fence,
            failed => {
                // Released at once; the file is left for reuse like any.
                drop(file);
                self.shared.released(&path);
                return failed.map(|_| None).map_err(|error| in_path(&path, error));
            }
        };
        Ok(Some(FileLease {
            file,
            id,
            path,
            access,
            fence,
            shared: Arc::clone(&self.shared),
        }))
    }

    /// The token of a grant of the lock file `file`, held with `access`:
    /// a writer's is one more than the last, written back; a reader's is
    /// the last. A new file starts from the directory's counter; `None` if
    /// other processes kept that locked.
    fn next_fence(&self, file: &File, access: Access) -> io::Result<Option<u64>> {
        let mut last = read_token(file)?;
        if last == 0 {
            match self.shared.fences.with(false, read_token)? {
                Some(base) => last = base,
                None => return Ok(None),
            }
        }
        match access {
            Access::Write => {
                let next = last + 1;
                write_token(file, next)?;
                Ok(Some(next))
            }
            // Readers share the file, so none of them writes.
            Access::Read => Ok(Some(last)),
        }
    }
}

impl Backend for FileBackend {
    fn name(&self) -> &'static str {
        "file"
    }

    fn try_lock<'a>(
        &'a self,
        target: &'a Target,
        access: Access,
    ) -> BoxFuture<'a, Result<Option<Box<dyn Lease>>, BackendError>> {
        // Local file operations: done at once, never waiting for a holder.
        let attempt = self
            .try_lock_now(target, access)
            .map(|lease| lease.map(|lease| Box::new(lease) as Box<dyn Lease>))
            .map_err(BackendError::from);
        Box::pin(std::future::ready(attempt))
    }

    /// A waiting writer holds the key's gate file, which readers check
    /// before they lock: a stream of readers in other processes cannot
    /// starve it. Readers announce nothing.
    fn announce(&self, target: &Target, access: Access) -> Option<Box<dyn Intent>> {
        if access == Access::Read {
            return None;
        }
        let path = self.gate_of(target);
        let gate = open(&path).ok()?;
        // Another writer's gate already holds readers back.
        gate.try_lock().ok()?;
        names_file(&path, &gate).then(|| Box::new(Gate { file: gate, path }) as Box<dyn Intent>)
    }
}

/// A held gate file: removed (while held) and closed when the writer's
/// wait ends.
struct Gate {
    file: File,
    path: PathBuf,
}

impl Intent for Gate {}

impl Drop for Gate {
    fn drop(&mut self) {
        if names_file(&self.path, &self.file) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Drop for FileBackend {
    /// Removes the lock files this process kept, unless someone holds them.
    fn drop(&mut self) {
        let kept = std::mem::take(&mut *sync::lock(&self.shared.kept));
        for path in kept.last_use.into_keys() {
            self.shared.remove_if_idle(&path);
        }
    }
}

/// A held lock file; closing it releases the lock.
struct FileLease {
    file: File,
    /// The locked file's device and inode.
    id: (u64, u64),
    path: PathBuf,
    access: Access,
    fence: u64,
    /// The backend's list of files kept after release, and its counter.
    shared: Arc<Shared>,
}

impl fmt::Debug for FileLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileLease")
            .field("path", &self.path)
            .field("access", &self.access)
            .field("fence", &self.fence)
            .finish()
    }
}

impl Lease for FileLease {
    fn fence(&self) -> u64 {
        self.fence
    }

    /// Still valid while the path names the locked file: removing the
    /// directory or the file from outside would let another process lock a
    /// new file under the same name.
    fn is_valid(&self) -> bool {
        path_names(&self.path, self.id)
    }
}

impl Drop for FileLease {
    fn drop(&mut self) {
        // Released first; closing the file (when the lease is gone) would
        // release it too, but only after the bookkeeping below.
        let _ = self.file.unlock();
        self.shared.released(&self.path);
    }
}

/// Opens (creating if missing) a file for locking.
fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|error| in_path(path, error))
}

/// Whether `path` still names the open `file` (same device and inode).
fn names_file(path: &Path, file: &File) -> bool {
    file_id(file).is_ok_and(|id| path_names(path, id))
}

/// The device and inode of an open file.
fn file_id(file: &File) -> io::Result<(u64, u64)> {
    let metadata = file.metadata()?;
    Ok((metadata.dev(), metadata.ino()))
}

/// Whether `path` names the file of device and inode `id`.
fn path_names(path: &Path, id: (u64, u64)) -> bool {
    fs::metadata(path).is_ok_and(|named| (named.dev(), named.ino()) == id)
}

/// An I/O error that names the file.
fn in_path(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

/// The lock file name of `target`: readable parts and a hash of the exact
/// pair. Deterministic across processes, builds and platforms.
fn file_name(target: &Target) -> String {
    let key = target.key();
    let mut encoded = Vec::with_capacity(target.resource().len() + 17);
    encoded.extend_from_slice(&(target.resource().len() as u64).to_le_bytes());
    encoded.extend_from_slice(target.resource().as_bytes());
    match key {
        None => encoded.push(0),
        Some(key) => {
            encoded.push(1);
            encoded.extend_from_slice(key.as_bytes());
        }
    }
    format!(
        "{}.{}.{:016x}{:016x}{LOCK_SUFFIX}",
        readable(target.resource()),
        key.map_or_else(|| "_".to_owned(), |key| readable(key.trim_matches('"'))),
        fnv1a(&encoded, 0xcbf2_9ce4_8422_2325),
        fnv1a(&encoded, 0x6c62_272e_07bb_0142),
    )
}

/// At most [`READABLE`] characters of `text`, each a letter, a digit, `-`
/// or `_`; never empty.
fn readable(text: &str) -> String {
    let kept: String = text
        .chars()
        .take(READABLE)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if kept.is_empty() {
        "_".to_owned()
    } else {
        kept
    }
}

/// 64-bit FNV-1a from `basis`: fixed, so every build agrees on file names.
fn fnv1a(bytes: &[u8], basis: u64) -> u64 {
    bytes.iter().fold(basis, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grant that must be given at once.
    fn granted(backend: &FileBackend, target: &Target, access: Access) -> FileLease {
        backend
            .try_lock_now(target, access)
            .unwrap()
            .expect("the lock is free")
    }

    /// Whether an attempt finds the lock held.
    fn busy(backend: &FileBackend, target: &Target, access: Access) -> bool {
        backend.try_lock_now(target, access).unwrap().is_none()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("keylock-file-unit-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn names_stay_in_the_directory_whatever_the_key() {
        let hostile = [
            "../../etc/passwd",
            "/etc/passwd",
            "..",
            ".",
            "",
            "a\0b",
            "'; DROP TABLE locks; --",
            "CON",
            "\u{202e}gnp.exe",
            &"x".repeat(10_000),
        ];
        for key in hostile {
            let name = file_name(&Target::new("r/../..", Some(key)));
            assert!(!name.contains('/'), "{name}");
            assert!(!name.contains('\0'), "{name}");
            assert!(!name.starts_with('.'), "{name}");
            assert!(name.len() < 200, "{}", name.len());
            assert!(name.ends_with(LOCK_SUFFIX));
        }
    }

    #[test]
    fn equal_targets_share_a_name_and_different_ones_do_not() {
        let a = file_name(&Target::new("jobs", Some("7")));
        assert_eq!(a, file_name(&Target::new("jobs", Some("7"))));
        // Same readable parts, different exact text.
        assert_ne!(
            file_name(&Target::new("jobs", Some("a/b"))),
            file_name(&Target::new("jobs", Some("a.b")))
        );
        assert_ne!(
            file_name(&Target::new("jobs", None)),
            file_name(&Target::new("jobs", Some("_")))
        );
        assert_ne!(
            file_name(&Target::new("ab", Some("c"))),
            file_name(&Target::new("a", Some("bc")))
        );
    }

    #[test]
    fn names_do_not_change_between_builds() {
        // Processes built apart must agree on every name.
        assert_eq!(
            file_name(&Target::new("jobs", Some("\"channel-7\""))),
            "jobs.channel-7.c22928f43c0bfa91a369fa871f15dcda.lock"
        );
    }

    #[test]
    fn exclusive_excludes_and_shared_share() {
        let dir = temp_dir("modes");
        let backend = FileBackend::new(&dir).unwrap();
        let target = Target::new("r", Some("1"));
        let write = granted(&backend, &target, Access::Write);
        assert!(busy(&backend, &target, Access::Write));
        assert!(busy(&backend, &target, Access::Read));
        drop(write);
        let read1 = granted(&backend, &target, Access::Read);
        let read2 = granted(&backend, &target, Access::Read);
        assert!(busy(&backend, &target, Access::Write));
        drop(read1);
        assert!(busy(&backend, &target, Access::Write));
        drop(read2);
        assert!(!busy(&backend, &target, Access::Write));
        fs::remove_dir_all(&dir).unwrap();
    }

    fn lock_files(dir: &Path) -> usize {
        fs::read_dir(dir)
            .unwrap()
            .filter(|entry| {
                let name = entry.as_ref().unwrap().file_name();
                name.to_string_lossy().ends_with(LOCK_SUFFIX)
            })
            .count()
    }

    #[test]
    fn kept_files_stay_bounded_and_go_with_the_backend() {
        let dir = temp_dir("kept");
        let backend = FileBackend::new(&dir).unwrap();
        let held_target = Target::new("r", Some("held"));
        let held = granted(&backend, &held_target, Access::Write);
        for key in 0..KEPT_FILES * 3 {
            let target = Target::new("r", Some(&key.to_string()));
            let lease = granted(&backend, &target, Access::Write);
            assert!(lease.is_valid());
            drop(lease);
            // Kept for the next use of the key, up to the bound.
            assert!(lock_files(&dir) <= KEPT_FILES + 1);
        }
        assert_eq!(lock_files(&dir), KEPT_FILES + 1);
        // A file held is never removed.
        assert!(backend.path_of(&held_target).exists());
        drop(held);
        drop(backend);
        assert_eq!(lock_files(&dir), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_keys_fences_increase_across_removals_and_readers_carry_the_last() {
        let dir = temp_dir("fences");
        let backend = FileBackend::new(&dir).unwrap();
        let target = Target::new("r", Some("k"));
        let grant = |access| granted(&backend, &target, access).fence;
        let mut last = 0;
        for round in 0..5 {
            let fence = grant(Access::Write);
            assert!(fence > last, "round {round}: {fence} after {last}");
            assert_eq!(grant(Access::Read), fence);
            last = fence;
            // Removed as idle: the token goes to the directory's counter.
            assert_eq!(backend.remove_idle().unwrap(), 1);
            assert!(!backend.path_of(&target).exists());
        }
        // A key never used starts above every removed key's tokens.
        let other = granted(&backend, &Target::new("r", Some("new")), Access::Write);
        assert!(other.fence > last);
        drop(other);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_key_used_again_keeps_its_file() {
        let dir = temp_dir("reuse");
        let backend = FileBackend::new(&dir).unwrap();
        let target = Target::new("r", Some("hot"));
        for _ in 0..KEPT_FILES * 3 {
            drop(granted(&backend, &target, Access::Write));
        }
        assert_eq!(lock_files(&dir), 1);
        assert!(sync::lock(&backend.shared.kept).order.len() <= 4 * KEPT_FILES + 1);
        drop(backend);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_lease_whose_file_was_removed_from_outside_is_invalid() {
        let dir = temp_dir("invalid");
        let backend = FileBackend::new(&dir).unwrap();
        let target = Target::new("r", None);
        let lease = granted(&backend, &target, Access::Write);
        fs::remove_file(backend.path_of(&target)).unwrap();
        assert!(!lease.is_valid());
        // A new holder gets a new file, and the invalid lease does not
        // remove it on release.
        let next = granted(&backend, &target, Access::Write);
        drop(lease);
        assert!(backend.path_of(&target).exists());
        assert!(next.is_valid());
        drop(next);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn remove_idle_keeps_held_files() {
        let dir = temp_dir("idle");
        let backend = FileBackend::new(&dir).unwrap();
        let held = Target::new("r", Some("held"));
        let lease = granted(&backend, &held, Access::Write);
        // A file left behind, as by a killed holder.
        let left = backend.path_of(&Target::new("r", Some("left")));
        File::create(&left).unwrap();
        assert_eq!(backend.remove_idle().unwrap(), 1);
        assert!(!left.exists());
        assert!(backend.path_of(&held).exists());
        assert!(lease.is_valid());
        drop(lease);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_waiting_writer_holds_new_readers_back() {
        let dir = temp_dir("gate");
        let backend = FileBackend::new(&dir).unwrap();
        let target = Target::new("r", Some("1"));
        let reader = granted(&backend, &target, Access::Read);
        assert!(busy(&backend, &target, Access::Write));
        let intent = backend.announce(&target, Access::Write).unwrap();
        // A second writer's announcement adds nothing.
        assert!(backend.announce(&target, Access::Write).is_none());
        assert!(backend.announce(&target, Access::Read).is_none());
        // New readers wait behind the writer; the reader inside stays.
        assert!(busy(&backend, &target, Access::Read));
        drop(reader);
        let writer = granted(&backend, &target, Access::Write);
        drop(intent);
        assert!(!backend.gate_of(&target).exists());
        drop(writer);
        assert!(!busy(&backend, &target, Access::Read));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_new_backend_removes_files_left_idle() {
        let dir = temp_dir("left");
        let first = FileBackend::new(&dir).unwrap();
        let held = granted(&first, &Target::new("r", Some("held")), Access::Write);
        let left = first.path_of(&Target::new("r", Some("left")));
        File::create(&left).unwrap();
        let second = FileBackend::new(&dir).unwrap();
        assert!(!left.exists());
        assert!(held.is_valid());
        drop((held, first, second));
        fs::remove_dir_all(&dir).unwrap();
    }
}
