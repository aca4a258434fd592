//! A simulated file system for the power-loss and fault tests.
//!
//! It keeps, for every file, what was written and what was synced, and for every
//! folder, its live entries and its durable entries (those a folder fsync made
//! durable). A crash image keeps only what was synced: unsynced data is lost, and so
//! are creations, renames and removals whose folder was not synced. It is strict:
//! nothing reaches the disk unless it is synced, a worst case a real disk may improve
//! on but never beat. It can also fail any primitive with an errno, once.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use thinkube_engine::state::fsops::{FileOps, parent_of};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    WriteNew,
    Append,
    SyncFile,
    SyncDir,
    Rename,
    Link,
    SetLen,
    Remove,
    CreateDir,
}

#[derive(Clone, Default)]
struct Inode {
    data: Vec<u8>,
    synced: Vec<u8>,
}

#[derive(Clone, Default)]
struct Sim {
    inodes: Vec<Inode>,
    live: BTreeMap<PathBuf, usize>,
    durable: BTreeMap<PathBuf, usize>,
    dirs: BTreeSet<PathBuf>,
    ops: usize,
    crash_at: Option<usize>,
    crashed: bool,
    /// Fail the next `Op` with this errno (once).
    fault: Option<(Op, i32)>,
}

#[derive(Default)]
pub struct SimFs {
    sim: Mutex<Sim>,
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} does not exist", path.display()),
    )
}

impl SimFs {
    /// A disk with these folders (durable) and nothing else.
    pub fn with_dirs(dirs: &[&Path]) -> Self {
        let sim = Sim {
            dirs: dirs.iter().map(|d| d.to_path_buf()).collect(),
            ..Sim::default()
        };
        Self {
            sim: Mutex::new(sim),
        }
    }

    /// The machine loses power before primitive number `n` (counted from 0).
    pub fn crash_before(&self, n: usize) {
        self.sim.lock().unwrap().crash_at = Some(n);
    }

    /// The next `op` fails with `errno` (e.g. 28, no space; 5, I/O error).
    pub fn fail_next(&self, op: Op, errno: i32) {
        self.sim.lock().unwrap().fault = Some((op, errno));
    }

    pub fn ops(&self) -> usize {
        self.sim.lock().unwrap().ops
    }

    pub fn crashed(&self) -> bool {
        self.sim.lock().unwrap().crashed
    }

    /// What is left after the power came back: only synced data and entries.
    pub fn after_power_loss(&self) -> SimFs {
        let s = self.sim.lock().unwrap();
        let inodes = s
            .inodes
            .iter()
            .map(|i| Inode {
                data: i.synced.clone(),
                synced: i.synced.clone(),
            })
            .collect();
        let sim = Sim {
            inodes,
            live: s.durable.clone(),
            durable: s.durable.clone(),
            dirs: s.dirs.clone(),
            ..Sim::default()
        };
        SimFs {
            sim: Mutex::new(sim),
        }
    }

    /// What is left after a power loss during a file's fsync, at its worst: the
    /// file at `path` keeps what was written after its last fsync (a disk may write
    /// a file's pages in any order), but for its first line, zeroed (a page lost).
    /// Everything else as [`SimFs::after_power_loss`].
    pub fn after_power_loss_tearing(&self, path: &Path) -> SimFs {
        let image = self.after_power_loss();
        let s = self.sim.lock().unwrap();
        if let Some(i) = s.durable.get(path).copied() {
            let inode = &s.inodes[i];
            if inode.data.len() > inode.synced.len() && inode.data.starts_with(&inode.synced) {
                let mut data = inode.data.clone();
                let start = inode.synced.len();
                let end = data[start..]
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(data.len(), |n| start + n);
                data[start..end].fill(0);
                let mut torn = image.sim.lock().unwrap();
                torn.inodes[i] = Inode {
                    synced: data.clone(),
                    data,
                };
            }
        }
        image
    }

    /// Counts a primitive; fails it if the power is out or a fault is due.
    fn step(&self, op: Op, f: impl FnOnce(&mut Sim) -> io::Result<()>) -> io::Result<()> {
        let mut s = self.sim.lock().unwrap();
        if s.crashed || s.crash_at == Some(s.ops) {
            s.crashed = true;
            return Err(io::Error::other("simulated power loss"));
        }
        s.ops += 1;
        if let Some((fault_op, errno)) = s.fault
            && fault_op == op
        {
            s.fault = None;
            return Err(io::Error::from_raw_os_error(errno));
        }
        f(&mut s)
    }
}

impl Sim {
    fn inode(&mut self, path: &Path) -> io::Result<&mut Inode> {
        let i = *self.live.get(path).ok_or_else(|| not_found(path))?;
        Ok(&mut self.inodes[i])
    }

    fn parent_exists(&self, path: &Path) -> io::Result<()> {
        if self.dirs.contains(parent_of(path)) {
            Ok(())
        } else {
            Err(not_found(parent_of(path)))
        }
    }
}

impl FileOps for SimFs {
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        let s = self.sim.lock().unwrap();
        Ok(s.live.get(path).map(|i| s.inodes[*i].data.clone()))
    }

    fn write_new(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.step(Op::WriteNew, |s| {
            s.parent_exists(path)?;
            if s.live.contains_key(path) {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists"));
            }
            s.inodes.push(Inode {
                data: bytes.to_vec(),
                synced: Vec::new(),
            });
            s.live.insert(path.to_path_buf(), s.inodes.len() - 1);
            Ok(())
        })
    }

    fn append(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.step(Op::Append, |s| {
            s.parent_exists(path)?;
            if !s.live.contains_key(path) {
                s.inodes.push(Inode::default());
                s.live.insert(path.to_path_buf(), s.inodes.len() - 1);
            }
            s.inode(path)?.data.extend_from_slice(bytes);
            Ok(())
        })
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        self.step(Op::SyncFile, |s| {
            let inode = s.inode(path)?;
            inode.synced = inode.data.clone();
            Ok(())
        })
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.step(Op::SyncDir, |s| {
            s.durable.retain(|p, _| parent_of(p) != dir);
            let entries: Vec<(PathBuf, usize)> = s
                .live
                .iter()
                .filter(|(p, _)| parent_of(p) == dir)
                .map(|(p, i)| (p.clone(), *i))
                .collect();
            s.durable.extend(entries);
            Ok(())
        })
    }

    fn rename_entry(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.step(Op::Rename, |s| {
            s.parent_exists(to)?;
            let i = s.live.remove(from).ok_or_else(|| not_found(from))?;
            s.live.insert(to.to_path_buf(), i);
            Ok(())
        })
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.step(Op::Link, |s| {
            let i = *s.live.get(from).ok_or_else(|| not_found(from))?;
            if s.live.contains_key(to) {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists"));
            }
            s.live.insert(to.to_path_buf(), i);
            Ok(())
        })
    }

    fn make_private(&self, path: &Path) -> io::Result<()> {
        let s = self.sim.lock().unwrap();
        if s.live.contains_key(path) {
            Ok(())
        } else {
            Err(not_found(path))
        }
    }

    fn set_len(&self, path: &Path, len: u64) -> io::Result<()> {
        self.step(Op::SetLen, |s| {
            s.inode(path)?.data.truncate(len as usize);
            Ok(())
        })
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.step(Op::Remove, |s| {
            s.live.remove(path);
            Ok(())
        })
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.step(Op::CreateDir, |s| {
            s.dirs.insert(path.to_path_buf());
            Ok(())
        })
    }

    fn exists(&self, path: &Path) -> bool {
        let s = self.sim.lock().unwrap();
        s.live.contains_key(path) || s.dirs.contains(path)
    }
}
