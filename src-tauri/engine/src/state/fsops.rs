//! Every file operation the store makes, behind one small interface.
//!
//! The real implementation is the durable one: a replace is temp file in the same
//! folder, write, fsync, rename over the target, fsync of the folder. The interface
//! exists so the reliability tests can run the store against a simulated file
//! system that loses whatever was not synced at a crash point, and inject faults
//! (no space, I/O errors) at each operation.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of every file the installer writes.
pub(crate) const FILE_MODE: u32 = 0o600;
/// Mode of every folder the installer creates.
pub(crate) const DIR_MODE: u32 = 0o700;

/// Prefix of temporary files; leftovers (from a crash mid-write) are removed by the
/// next writer, which holds the lock.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// The file operations of the store: primitives, and the durable protocol built on
/// them once (the provided methods), so a simulated file system that implements only
/// the primitives runs exactly the protocol the real one does.
pub trait FileOps: Send + Sync {
    /// Reads a whole file; `Ok(None)` when it does not exist.
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>>;
    /// Reads a file from byte `offset` to its end (nothing if it is shorter).
    fn read_from(&self, path: &Path, offset: u64) -> io::Result<Option<Vec<u8>>> {
        Ok(self.read(path)?.map(|bytes| {
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            bytes[start..].to_vec()
        }))
    }
    /// Creates a new file (0600) with `bytes`; fails if it exists. Not synced.
    fn write_new(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Appends to a file, creating it (0600). Not synced.
    fn append(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Makes a file's content durable (fsync).
    fn sync_file(&self, path: &Path) -> io::Result<()>;
    /// Makes a folder's entries (creations, renames, removals) durable (fsync).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Renames an entry, replacing `to`. Not synced.
    fn rename_entry(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes `to` a second name of `from`'s file.
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes a file private (0600) if it is not.
    fn make_private(&self, path: &Path) -> io::Result<()>;
    /// Shortens a file. Not synced.
    fn set_len(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Removes a file; a missing file is fine.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Creates one folder (0700); an existing one is fine.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;

    /// Replaces `path` with `bytes` durably and atomically: temp file in the same
    /// folder, write, fsync, rename over the target, fsync of the folder. Afterwards
    /// the file holds either the old or the new content, never a mix, even after a
    /// power loss.
    fn replace(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let tmp = temp_path(path);
        let result = self
            .write_new(&tmp, bytes)
            .and_then(|()| self.sync_file(&tmp))
            .and_then(|()| self.rename_entry(&tmp, path))
            .and_then(|()| self.sync_dir(parent_of(path)));
        if result.is_err() {
            // Best effort: a temp file left here is removed by the next writer anyway.
            let _ = self.remove(&tmp);
        }
        result
    }

    /// Replaces `path` atomically but without fsync: for files whose loss in a
    /// power failure does not matter and that must appear at once (the lock info,
    /// which other processes read while the holder works). Only one process may
    /// write `path` at a time (the lock holder): the temporary name is fixed, so a
    /// writer killed here leaves at most one temporary file, whatever the number
    /// of kills.
    fn replace_unsynced(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let tmp = parent_of(path).join(format!("{TEMP_PREFIX}{name}"));
        self.remove(&tmp)?;
        let result = self
            .write_new(&tmp, bytes)
            .and_then(|()| self.rename_entry(&tmp, path));
        if result.is_err() {
            let _ = self.remove(&tmp);
        }
        result
    }

    /// Makes `backup` a copy of `path`'s current content, atomically (`backup` is
    /// replaced; nothing happens if `path` does not exist). A hard link costs no
    /// copy; the state file is only ever replaced by rename, so the linked content
    /// never changes. Durable with the next `replace` in the same folder.
    fn snapshot(&self, path: &Path, backup: &Path) -> io::Result<()> {
        let tmp = temp_path(backup);
        match self.hard_link(path, &tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        // A state file put here by hand may have another mode; the backup is ours.
        let result = self
            .make_private(&tmp)
            .and_then(|()| self.rename_entry(&tmp, backup));
        // When `backup` already is a name of the same file (a writer was killed
        // between its snapshot and its replace), POSIX makes the rename a successful
        // no-op and `tmp` stays: remove it either way (its name is ours alone).
        let _ = self.remove(&tmp);
        result
    }

    /// Makes a file's content durable; a missing file is fine.
    fn sync(&self, path: &Path) -> io::Result<()> {
        match self.sync_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Shortens a file durably (drops a torn last line).
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.set_len(path, len)?;
        self.sync_file(path)
    }

    /// Renames, then syncs the folder(s).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.rename_entry(from, to)?;
        self.sync_dir(parent_of(to))?;
        if parent_of(from) != parent_of(to) {
            self.sync_dir(parent_of(from))?;
        }
        Ok(())
    }

    /// Creates a folder and its parents with mode 0700.
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut missing = Vec::new();
        let mut cur = Some(path);
        while let Some(p) = cur {
            if p.as_os_str().is_empty() || self.exists(p) {
                break;
            }
            missing.push(p.to_path_buf());
            cur = p.parent();
        }
        for dir in missing.iter().rev() {
            self.create_dir(dir)?;
        }
        Ok(())
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

/// The folder a path is in (`.` for a bare name).
pub fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A unique temporary name beside `path`.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    parent_of(path).join(format!("{TEMP_PREFIX}{name}.{}", &suffix[..12]))
}

/// Opens a file for reading only if it is a regular file: the open does not block
/// (a named pipe with no writer would hang the reader, perhaps while it holds the
/// lock), and anything but a regular file (a FIFO, a socket, a device, a folder) is
/// refused with an error that names what it is. `Ok(None)` when it does not exist.
pub fn open_regular(path: &Path) -> io::Result<Option<File>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EISDIR) => return Err(not_regular("a folder")),
        Err(e) => return Err(e),
    };
    check_regular(&file)?;
    Ok(Some(file))
}

fn check_regular(file: &File) -> io::Result<()> {
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        return Ok(());
    }
    Err(not_regular(kind_name(kind)))
}

/// What a file that is not a regular file is, for messages.
pub(crate) fn kind_name(kind: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a folder"
    } else if kind.is_fifo() {
        "a named pipe (FIFO)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else {
        "a regular file"
    }
}

fn not_regular(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("it is {what}, not a regular file; put the file itself there"),
    )
}

/// Opens (creating it 0600 if missing) a regular file to append to, without
/// blocking on a named pipe and refusing anything but a regular file.
pub fn open_append_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EISDIR) => not_regular("a folder"),
            Some(libc::ENXIO) => not_regular("a named pipe (FIFO)"),
            _ => e,
        })?;
    check_regular(&file)?;
    Ok(file)
}

/// Opens (creating it 0600 if missing) a regular file for reading and writing, as
/// the lock file is, refusing anything but a regular file.
pub fn open_rw_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EISDIR) => not_regular("a folder"),
            _ => e,
        })?;
    check_regular(&file)?;
    Ok(file)
}

/// Reads a whole regular file (see [`open_regular`]), refusing one larger than
/// `max` bytes before reading it. `Ok(None)` when it does not exist.
pub fn read_regular(path: &Path, max: u64) -> io::Result<Option<Vec<u8>>> {
    let Some(file) = open_regular(path)? else {
        return Ok(None);
    };
    let len = file.metadata()?.len();
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it is {len} bytes, more than the {max} bytes such a file can be"),
        ));
    }
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // A file that grows while it is read is still cut at the limit.
    file.take(max.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it is more than the {max} bytes such a file can be"),
        ));
    }
    Ok(Some(buf))
}

impl FileOps for RealFs {
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        let Some(mut f) = open_regular(path)? else {
            return Ok(None);
        };
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(Some(buf))
    }

    fn read_from(&self, path: &Path, offset: u64) -> io::Result<Option<Vec<u8>>> {
        let Some(mut f) = open_regular(path)? else {
            return Ok(None);
        };
        f.seek(io::SeekFrom::Start(offset))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(Some(buf))
    }

    fn write_new(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(path)?
            .write_all(bytes)
    }

    fn append(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .open(path)?
            .write_all(bytes)
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn rename_entry(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::hard_link(from, to)
    }

    fn make_private(&self, path: &Path) -> io::Result<()> {
        if fs::metadata(path)?.permissions().mode() & 0o777 != FILE_MODE {
            fs::set_permissions(path, fs::Permissions::from_mode(FILE_MODE))?;
        }
        Ok(())
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        OpenOptions::new().write(true).open(path)?.set_len(len)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        match fs::remove_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        match fs::create_dir(path) {
            Ok(()) => fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_writes_0600_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f.json");
        RealFs.replace(&target, b"one").unwrap();
        RealFs.replace(&target, b"two").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, FILE_MODE);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["f.json"]);
    }

    #[test]
    fn snapshot_keeps_the_old_content_after_a_replace() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("s");
        let backup = dir.path().join("s.bak");
        RealFs.snapshot(&target, &backup).unwrap();
        assert!(!backup.exists(), "nothing to back up yet");
        RealFs.replace(&target, b"v1").unwrap();
        RealFs.snapshot(&target, &backup).unwrap();
        RealFs.replace(&target, b"v2").unwrap();
        assert_eq!(fs::read(&backup).unwrap(), b"v1");
        assert_eq!(fs::read(&target).unwrap(), b"v2");
    }

    /// A writer killed between its snapshot and its replace leaves the backup as a
    /// second name of the state file; the next snapshot then renames a link onto a
    /// link of the same file, which POSIX makes a successful no-op (seen in CI as a
    /// temporary file left by a writer that ended normally).
    #[test]
    fn a_second_snapshot_of_the_same_content_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("s");
        let backup = dir.path().join("s.bak");
        RealFs.replace(&target, b"v1").unwrap();
        RealFs.snapshot(&target, &backup).unwrap();
        RealFs.snapshot(&target, &backup).unwrap();
        assert_eq!(fs::read(&backup).unwrap(), b"v1");
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["s", "s.bak"]);
    }

    #[test]
    fn create_dir_all_uses_0700() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        RealFs.create_dir_all(&deep).unwrap();
        for p in [dir.path().join("a"), dir.path().join("a/b"), deep] {
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                DIR_MODE
            );
        }
    }
}
