//! A step attempt's log, read from `logs/<run>/<step>-<n>.log` one page at a time:
//! a 1 GB log is never read whole, and a page always holds whole lines (a line
//! longer than a page is cut, and says so).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::error::{EngineError, Result};
use crate::state::fsops::open_regular;
use crate::state::model::{Attempt, AttemptOutcome, StateFile, StepRecord};
use crate::state::store::Store;
use crate::timestamp::Timestamp;

/// What a window asks for at a time: a few thousand lines.
pub const PAGE_BYTES: u64 = 256 << 10;
/// The most a page holds, whatever is asked for.
pub const MAX_PAGE_BYTES: u64 = 1 << 20;
/// The most of one line a page keeps.
pub const MAX_LINE_CHARS: usize = 4096;

/// Which part of the log to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// The end of the log: what the step printed last.
    Tail,
    /// The lines that end at this byte offset (the page before one already shown).
    Before(u64),
    /// The lines that start at this byte offset (what was printed since).
    After(u64),
}

/// One page of an attempt's log.
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Serialize, PartialEq)]
pub struct LogPage {
    pub step: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// How many attempts the step has.
    pub attempts: u32,
    pub outcome: AttemptOutcome,
    pub run_id: Option<String>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// Byte offset of the page's first line in the log.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub start: u64,
    /// Byte offset just past the page's last line: where the next page starts.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub end: u64,
    /// The log's size when it was read.
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub size: u64,
    pub lines: Vec<String>,
    /// The log file's full path, for reading all of it elsewhere.
    pub file: Option<String>,
    /// Why there is no log to read (never written: the step printed nothing; or
    /// removed by `cleanup`), in words for people.
    pub missing: Option<String>,
}

/// Reads one page of `step`'s attempt `attempt` (the last one when `None`) from the
/// current deployment. Reads the state without the lock, as `status` does.
pub fn page(
    store: &Store,
    step: &str,
    attempt: Option<u32>,
    window: Window,
    max_bytes: u64,
    now: Timestamp,
) -> Result<LogPage> {
    let Some(loaded) = store.load(now)? else {
        return Err(no_log(
            step,
            "there is no deployment in this environment yet",
        ));
    };
    page_of(
        store.layout().root.as_path(),
        &loaded.state,
        step,
        attempt,
        window,
        max_bytes,
    )
}

/// [`page`] over a state already read; `root` is the environment's folder.
pub fn page_of(
    root: &Path,
    state: &StateFile,
    step: &str,
    attempt: Option<u32>,
    window: Window,
    max_bytes: u64,
) -> Result<LogPage> {
    let (record, chosen) = chosen_attempt(state, step, attempt)?;
    let mut out = LogPage {
        step: step.to_string(),
        attempt: chosen.number,
        attempts: u32::try_from(record.attempts.len()).unwrap_or(u32::MAX),
        outcome: chosen.outcome,
        run_id: chosen.run_id.clone(),
        started_at: chosen.started_at,
        finished_at: chosen.finished_at,
        start: 0,
        end: 0,
        size: 0,
        lines: Vec::new(),
        file: None,
        missing: None,
    };
    let (path, mut file) = match open_log(root, step, chosen)? {
        LogFile::Open(path, file) => (path, file),
        LogFile::Never(why) => {
            out.missing = Some(why);
            return Ok(out);
        }
        LogFile::Gone(path) => {
            out.missing = Some(removed(root, &path));
            out.file = Some(path.display().to_string());
            return Ok(out);
        }
    };
    out.file = Some(path.display().to_string());
    let size = file
        .metadata()
        .map_err(|e| EngineError::io("read the log", &path, e))?
        .len();
    let max = max_bytes.clamp(1, MAX_PAGE_BYTES);
    let (from, to) = match window {
        Window::Tail => (size.saturating_sub(max), size),
        Window::Before(end) => {
            let end = end.min(size);
            (end.saturating_sub(max), end)
        }
        Window::After(start) => {
            let start = start.min(size);
            (start, start.saturating_add(max).min(size))
        }
    };
    let mut buf = Vec::with_capacity(usize::try_from(to - from).unwrap_or(0));
    file.seek(SeekFrom::Start(from))
        .and_then(|_| file.take(to - from).read_to_end(&mut buf))
        .map_err(|e| EngineError::io("read the log", &path, e))?;
    // An offset the reader was given (a page's start or end) is a line boundary;
    // only the other side of the window can fall inside a line.
    let (starts_inside, ends_inside) = match window {
        Window::Tail => (from > 0, false),
        Window::Before(_) => (from > 0, false),
        Window::After(_) => (false, to < size),
    };
    let (skip, keep) = whole_lines(&buf, starts_inside, ends_inside);
    out.start = from + skip as u64;
    out.end = from + (skip + keep) as u64;
    out.size = size;
    out.lines = split_lines(&buf[skip..skip + keep]);
    Ok(out)
}

/// A copy of a log saved for the user (a download).
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[derive(Debug, Serialize, PartialEq)]
pub struct SavedLog {
    /// Where the copy is.
    pub path: String,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub bytes: u64,
}

/// Saves a copy of `step`'s attempt `attempt` (the last one when `None`) of the
/// current deployment into the folder `into`, as `thinkube-<step>-attempt-<n>.log`
/// (`-2`, `-3`, ... before `.log` when that name is taken: nothing there is ever
/// replaced). A step still running is copied as far as it has printed.
pub fn save_copy(
    store: &Store,
    step: &str,
    attempt: Option<u32>,
    into: &Path,
    now: Timestamp,
) -> Result<SavedLog> {
    let Some(loaded) = store.load(now)? else {
        return Err(no_log(
            step,
            "there is no deployment in this environment yet",
        ));
    };
    save_copy_of(
        store.layout().root.as_path(),
        &loaded.state,
        step,
        attempt,
        into,
    )
}

/// [`save_copy`] over a state already read; `root` is the environment's folder.
pub fn save_copy_of(
    root: &Path,
    state: &StateFile,
    step: &str,
    attempt: Option<u32>,
    into: &Path,
) -> Result<SavedLog> {
    let (_, chosen) = chosen_attempt(state, step, attempt)?;
    let mut source = match open_log(root, step, chosen)? {
        LogFile::Open(_, file) => file,
        LogFile::Never(why) => return Err(no_log(step, &why)),
        LogFile::Gone(path) => return Err(no_log(step, &removed(root, &path))),
    };
    let base = format!("thinkube-{}-attempt-{}", file_safe(step), chosen.number);
    let (target, mut copy) = create_new_in(into, &base)?;
    let written = std::io::copy(&mut source, &mut copy)
        .and_then(|n| copy.sync_all().map(|()| n))
        .map_err(|e| {
            let _ = std::fs::remove_file(&target);
            EngineError::io("save a copy of the log", &target, e)
        })?;
    Ok(SavedLog {
        path: target.display().to_string(),
        bytes: written,
    })
}

/// The first of `<base>.log`, `<base>-2.log`, ... in `dir` that does not exist yet,
/// created (never an existing file opened).
fn create_new_in(dir: &Path, base: &str) -> Result<(PathBuf, File)> {
    for n in 1..=999u32 {
        let name = if n == 1 {
            format!("{base}.log")
        } else {
            format!("{base}-{n}.log")
        };
        let target = dir.join(name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
        {
            Ok(file) => return Ok((target, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(EngineError::io("save a copy of the log", &target, e)),
        }
    }
    Err(EngineError::io(
        "save a copy of the log",
        dir.join(format!("{base}.log")),
        std::io::Error::other("999 copies of this log are there already; move some away"),
    ))
}

/// `text` with anything but letters, digits, `-` and `_` made `_` (a step id in a
/// file name).
fn file_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The step's record and the attempt asked for (the last when `None`).
fn chosen_attempt<'a>(
    state: &'a StateFile,
    step: &str,
    attempt: Option<u32>,
) -> Result<(&'a StepRecord, &'a Attempt)> {
    let record = state
        .deployment
        .steps
        .iter()
        .find(|s| s.id == step)
        .ok_or_else(|| no_log(step, "the deployment has no such step"))?;
    let chosen = match attempt {
        None => record
            .attempts
            .last()
            .ok_or_else(|| no_log(step, "it has not run yet"))?,
        Some(n) => record
            .attempts
            .iter()
            .find(|a| a.number == n)
            .ok_or_else(|| {
                no_log(
                    step,
                    &format!("it has no attempt {n} (it has {})", record.attempts.len()),
                )
            })?,
    };
    Ok((record, chosen))
}

/// An attempt's log file, as found.
enum LogFile {
    /// The attempt never had one: why, in words.
    Never(String),
    /// It had one, no longer there.
    Gone(PathBuf),
    Open(PathBuf, File),
}

fn open_log(root: &Path, step: &str, chosen: &Attempt) -> Result<LogFile> {
    let Some(rel) = chosen.log_file.as_deref() else {
        return Ok(LogFile::Never(match chosen.outcome {
            AttemptOutcome::Running => "The step has printed nothing yet.".to_string(),
            _ => "This attempt printed nothing (or ran before logs were kept).".to_string(),
        }));
    };
    let rel = inside_logs(rel).ok_or_else(|| {
        no_log(
            step,
            &format!("the state names its log as {rel:?}, which is not a file under logs/; the state may have been edited by hand"),
        )
    })?;
    let path = root.join(rel);
    match open_regular(&path).map_err(|e| EngineError::io("read the log", &path, e))? {
        Some(file) => Ok(LogFile::Open(path, file)),
        None => Ok(LogFile::Gone(path)),
    }
}

fn removed(root: &Path, path: &Path) -> String {
    format!(
        "The log {} is no longer there (cleanup removes the logs of old runs).",
        path.strip_prefix(root).unwrap_or(path).display()
    )
}

/// Which bytes of `buf` are whole lines: a page that starts inside the log drops the
/// partial line it starts in, and one that ends before the end of the log drops the
/// partial line it ends in. A window with no line break at all (one line longer than
/// a page) is kept, cut, so the reader still moves on. Returns (skip, keep).
fn whole_lines(buf: &[u8], starts_inside: bool, ends_inside: bool) -> (usize, usize) {
    let skip = if starts_inside {
        buf.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1)
    } else {
        0
    };
    let rest = &buf[skip..];
    let keep = if ends_inside {
        match rest.iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None => rest.len(),
        }
    } else {
        rest.len()
    };
    (skip, keep)
}

fn split_lines(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    if text.is_empty() {
        return Vec::new();
    }
    text.split('\n')
        .map(|l| {
            let l = l.strip_suffix('\r').unwrap_or(l);
            match l.char_indices().nth(MAX_LINE_CHARS) {
                Some((cut, _)) => format!("{}… (line cut: the log file has all of it)", &l[..cut]),
                None => l.to_string(),
            }
        })
        .collect()
}

/// The log path recorded in the state, if it stays under `logs/` (a state edited by
/// hand cannot make the window read another file).
fn inside_logs(rel: &str) -> Option<&Path> {
    let path = Path::new(rel);
    let mut parts = path.components();
    if parts.next() != Some(Component::Normal("logs".as_ref())) {
        return None;
    }
    let rest: Vec<_> = parts.collect();
    (!rest.is_empty() && rest.iter().all(|c| matches!(c, Component::Normal(_)))).then_some(path)
}

fn no_log(step: &str, why: &str) -> EngineError {
    EngineError::Usage(format!("step `{step}` has no log: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn state_with(attempts: Vec<Attempt>) -> StateFile {
        let now = Timestamp::parse("2026-12-04T10:00:00Z").unwrap();
        let mut state = StateFile::new(Uuid::nil(), now);
        let mut step = StepRecord::new("s1", "p1", "Step one");
        step.attempts = attempts;
        state.deployment.steps.push(step);
        state
    }

    fn attempt(number: u32, log: Option<&str>) -> Attempt {
        Attempt {
            number,
            run_id: Some("r1".into()),
            started_at: None,
            finished_at: None,
            outcome: AttemptOutcome::Failed,
            process: None,
            error: None,
            log_file: log.map(str::to_string),
        }
    }

    fn log_dir(content: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("logs/r1")).unwrap();
        std::fs::write(dir.path().join("logs/r1/s1-1.log"), content).unwrap();
        dir
    }

    #[test]
    fn pages_hold_whole_lines_and_walk_back_to_the_start() {
        let content: String = (1..=1000).map(|i| format!("line {i}\n")).collect();
        let dir = log_dir(content.as_bytes());
        let state = state_with(vec![attempt(1, Some("logs/r1/s1-1.log"))]);
        let mut seen = Vec::new();
        let mut p = page_of(dir.path(), &state, "s1", None, Window::Tail, 1000).unwrap();
        assert_eq!(p.size, content.len() as u64);
        assert_eq!(p.end, p.size);
        assert_eq!(p.lines.last().unwrap(), "line 1000");
        loop {
            assert!(p.lines.len() > 50, "a page of 1000 bytes holds many lines");
            let mut lines = p.lines.clone();
            lines.extend(seen);
            seen = lines;
            if p.start == 0 {
                break;
            }
            p = page_of(
                dir.path(),
                &state,
                "s1",
                Some(1),
                Window::Before(p.start),
                1000,
            )
            .unwrap();
        }
        let expected: Vec<String> = (1..=1000).map(|i| format!("line {i}")).collect();
        assert_eq!(seen, expected, "every line once, in order, none cut");
    }

    #[test]
    fn reading_on_from_an_offset_gives_what_was_printed_since() {
        let dir = log_dir(b"one\ntwo\nthree\npart");
        let state = state_with(vec![attempt(1, Some("logs/r1/s1-1.log"))]);
        let p = page_of(dir.path(), &state, "s1", None, Window::After(4), 9).unwrap();
        assert_eq!(
            p.lines,
            vec!["two"],
            "stops before the line it cannot hold whole"
        );
        assert_eq!(p.end, 8);
        let p = page_of(
            dir.path(),
            &state,
            "s1",
            None,
            Window::After(p.end),
            1 << 20,
        )
        .unwrap();
        assert_eq!(
            p.lines,
            vec!["three", "part"],
            "at the end, the unfinished line too"
        );
        assert_eq!(p.end, p.size);
    }

    #[test]
    fn a_line_longer_than_a_page_is_cut_and_the_reader_moves_on() {
        let mut content = vec![b'x'; 50_000];
        content.extend_from_slice(b"\nlast\n");
        let dir = log_dir(&content);
        let state = state_with(vec![attempt(1, Some("logs/r1/s1-1.log"))]);
        let p = page_of(dir.path(), &state, "s1", None, Window::After(0), 10_000).unwrap();
        assert_eq!(p.lines.len(), 1);
        assert!(p.lines[0].ends_with("(line cut: the log file has all of it)"));
        assert_eq!(p.end, 10_000, "the next page starts after what was shown");
    }

    #[test]
    fn a_log_path_outside_logs_is_refused_and_a_removed_log_is_said_so() {
        let dir = log_dir(b"x\n");
        std::fs::write(dir.path().join("deployment-state.json"), b"{}").unwrap();
        for bad in [
            "deployment-state.json",
            "logs/../deployment-state.json",
            "/etc/passwd",
            "logs",
        ] {
            let state = state_with(vec![attempt(1, Some(bad))]);
            let e = page_of(dir.path(), &state, "s1", None, Window::Tail, 100).unwrap_err();
            assert!(
                e.to_string().contains("not a file under logs/"),
                "{bad}: {e}"
            );
        }
        let state = state_with(vec![attempt(1, Some("logs/r0/s1-1.log"))]);
        let p = page_of(dir.path(), &state, "s1", None, Window::Tail, 100).unwrap();
        assert!(p.missing.unwrap().contains("no longer there"));
        let state = state_with(vec![attempt(1, None)]);
        let p = page_of(dir.path(), &state, "s1", None, Window::Tail, 100).unwrap();
        assert!(p.missing.unwrap().contains("printed nothing"));
    }

    #[test]
    fn an_attempt_or_step_that_does_not_exist_is_named() {
        let dir = log_dir(b"x\n");
        let state = state_with(vec![attempt(1, Some("logs/r1/s1-1.log"))]);
        let e = page_of(dir.path(), &state, "s1", Some(3), Window::Tail, 100).unwrap_err();
        assert!(e.to_string().contains("no attempt 3 (it has 1)"), "{e}");
        let e = page_of(dir.path(), &state, "nope", None, Window::Tail, 100).unwrap_err();
        assert!(e.to_string().contains("`nope`"), "{e}");
    }

    #[test]
    fn a_saved_copy_is_the_whole_log_and_never_replaces_a_file() {
        let content: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let dir = log_dir(&content);
        let into = tempfile::tempdir().unwrap();
        let state = state_with(vec![attempt(1, Some("logs/r1/s1-1.log"))]);
        let first = save_copy_of(dir.path(), &state, "s1", None, into.path()).unwrap();
        assert_eq!(
            first.path,
            into.path()
                .join("thinkube-s1-attempt-1.log")
                .display()
                .to_string()
        );
        assert_eq!(first.bytes, content.len() as u64);
        assert_eq!(
            std::fs::read(&first.path).unwrap(),
            content,
            "byte for byte"
        );
        std::fs::write(into.path().join("thinkube-s1-attempt-1-2.log"), "mine").unwrap();
        let second = save_copy_of(dir.path(), &state, "s1", Some(1), into.path()).unwrap();
        assert_eq!(
            second.path,
            into.path()
                .join("thinkube-s1-attempt-1-3.log")
                .display()
                .to_string(),
            "names already taken are passed over"
        );
        assert_eq!(
            std::fs::read_to_string(into.path().join("thinkube-s1-attempt-1.log"))
                .unwrap()
                .len(),
            content.len()
        );
        assert_eq!(
            std::fs::read_to_string(into.path().join("thinkube-s1-attempt-1-2.log")).unwrap(),
            "mine",
            "a file of the user's is never replaced"
        );
    }

    #[test]
    fn a_copy_that_cannot_be_saved_says_why_and_leaves_nothing() {
        let dir = log_dir(b"one\n");
        let into = tempfile::tempdir().unwrap();
        let never = state_with(vec![attempt(1, None)]);
        let e = save_copy_of(dir.path(), &never, "s1", None, into.path()).unwrap_err();
        assert!(e.to_string().contains("printed nothing"), "{e}");
        let gone = state_with(vec![attempt(1, Some("logs/r1/gone.log"))]);
        let e = save_copy_of(dir.path(), &gone, "s1", None, into.path()).unwrap_err();
        assert!(e.to_string().contains("no longer there"), "{e}");
        let outside = state_with(vec![attempt(1, Some("../deployment-state.json"))]);
        let e = save_copy_of(dir.path(), &outside, "s1", None, into.path()).unwrap_err();
        assert!(e.to_string().contains("not a file under logs/"), "{e}");
        let state = state_with(vec![attempt(1, Some("logs/r1/s1-1.log"))]);
        let missing_folder = into.path().join("no-such-folder");
        let e = save_copy_of(dir.path(), &state, "s1", None, &missing_folder).unwrap_err();
        assert!(e.to_string().contains("no-such-folder"), "{e}");
        assert_eq!(
            std::fs::read_dir(into.path()).unwrap().count(),
            0,
            "nothing written where nothing could be saved"
        );
    }
}
