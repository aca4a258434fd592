//! Two processes contend for one environment: one writer at a time, the loser exits
//! 3 naming the holder, a killed holder never blocks the next writer, readers never
//! wait.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::child::ChildProc;
use crate::common::*;

fn hold(home: &Home) -> (ChildProc, u32) {
    let mut holder = ChildProc::spawn(home, "hold-lock");
    let line = holder.next_line().expect("holder reports the lock");
    let pid: u32 = line.strip_prefix("locked ").unwrap().parse().unwrap();
    (holder, pid)
}

#[test]
fn the_loser_exits_3_naming_the_holder_and_status_still_answers() {
    let home = Home::new();
    let (holder, pid) = hold(&home);
    let r = home.run(&["clean-state", "--yes"]);
    r.expect(
        3,
        &[
            &format!("locked by pid {pid}"),
            "operation `deploy`",
            "--lock-timeout",
        ],
    );
    let v = home.status_json();
    assert_eq!(v["lock"]["held"], true);
    assert_eq!(v["lock"]["pid"], pid);
    assert_eq!(v["lock"]["operation"], "deploy");
    assert!(v["lock"]["since"].is_string());
    assert!(
        home.run(&["status"])
            .stdout
            .contains(&format!("Lock: held by pid {pid} (deploy)"))
    );
    holder.release();
    assert_eq!(home.run(&["clean-state", "--yes"]).code, 0);
}

#[test]
fn a_sigkilled_holder_does_not_block_the_next_writer() {
    let home = Home::new();
    let (holder, pid) = hold(&home);
    home.run(&["clean-state", "--yes"])
        .expect(3, &[&format!("pid {pid}")]);
    holder.kill();
    // The info file of the dead holder is still there, but says nothing live.
    assert!(home.layout().lock_info_file().exists());
    assert_eq!(home.status_json()["lock"]["held"], false);
    let r = home.run(&["clean-state", "--yes"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn a_writer_with_lock_timeout_waits_for_the_holder_to_finish() {
    let home = Home::new();
    one_completed_step(&home); // something for the waiter's clean-state to clean
    let (holder, pid) = hold(&home);
    let mut waiter = home
        .command(&["clean-state", "--yes", "--lock-timeout", "60"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Synchronise on the waiter saying it waits, then let the holder go.
    let mut stderr = BufReader::new(waiter.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(
        line.contains(&format!("waiting for the lock held by pid {pid}")),
        "{line}"
    );
    // It waits: while the holder holds the lock the waiter has neither ended nor
    // written anything, and a reader still sees the holder.
    let events = home.layout().events_file();
    let trail_before = std::fs::read_to_string(&events).unwrap();
    assert!(
        waiter.try_wait().unwrap().is_none(),
        "the waiter ended while the lock was held"
    );
    assert_eq!(home.status_json()["lock"]["pid"], pid);
    assert_eq!(std::fs::read_to_string(&events).unwrap(), trail_before);
    assert!(
        waiter.try_wait().unwrap().is_none(),
        "the waiter ended while the lock was held"
    );

    holder.release();
    let status = waiter.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    // ...and then did its work.
    let trail_after = std::fs::read_to_string(&events).unwrap();
    assert!(
        trail_after.len() > trail_before.len() && trail_after.contains("state_cleaned"),
        "the waiter's clean-state left no event: {trail_after}"
    );
}

#[test]
fn lock_timeout_expires_with_exit_3() {
    let home = Home::new();
    let (holder, pid) = hold(&home);
    home.run(&["clean-state", "--yes", "--lock-timeout", "1"])
        .expect(3, &[&format!("pid {pid}")]);
    holder.release();
}
