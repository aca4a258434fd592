//! The limits on output kept in the state: no step's output, however large, makes
//! the state file large. Each stored piece is cut (bytes per line, lines per tail,
//! bytes per message), and only a step's latest attempt keeps its output tail. The
//! full output always stays in the attempt's log file, which is where a cut says
//! to look.
//!
//! So a state holds at most, from output: per step, one tail (`TAIL_LINES` lines
//! of `LINE_BYTES`) plus one message of `MESSAGE_BYTES` per attempt; per event, one
//! message of `MESSAGE_BYTES`.

use crate::state::model::{RunRecord, StepError, StepRecord};

/// Lines of output kept for a failed attempt.
pub(crate) const TAIL_LINES: usize = 20;
/// Bytes kept of one line of a tail.
pub(crate) const LINE_BYTES: usize = 1024;
/// Bytes kept of an error's or an event's message.
pub(crate) const MESSAGE_BYTES: usize = 4096;
/// Bytes kept of a task's or host's name.
const NAME_BYTES: usize = 512;

/// `text` cut to at most `max` bytes (at a character boundary), saying how much was
/// left out and where the whole of it is.
pub(crate) fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{} [… {} more bytes in the step's log]",
        &text[..end],
        text.len() - end
    )
}

/// An error as it is stored: every piece cut to its limit.
pub(crate) fn step_error(error: StepError) -> StepError {
    let skip = error.output_tail.len().saturating_sub(TAIL_LINES);
    StepError {
        message: cut(&error.message, MESSAGE_BYTES),
        task: error.task.map(|t| cut(&t, NAME_BYTES)),
        host: error.host.map(|h| cut(&h, NAME_BYTES)),
        exit_code: error.exit_code,
        output_tail: error
            .output_tail
            .iter()
            .skip(skip)
            .map(|l| cut(l, LINE_BYTES))
            .collect(),
    }
}

/// Only a step's latest attempt keeps its output tail (older attempts keep their
/// message; their output is in their logs).
pub(crate) fn drop_older_tails(step: &mut StepRecord) {
    let n = step.attempts.len();
    for attempt in step.attempts.iter_mut().take(n.saturating_sub(1)) {
        if let Some(e) = attempt.error.as_mut() {
            e.output_tail.clear();
        }
    }
}

/// The same for a run's attempts: only the latest attempt of each step keeps its tail.
pub(crate) fn drop_older_run_tails(run: &mut RunRecord) {
    let mut seen = std::collections::BTreeSet::new();
    for attempt in run.steps_attempted.iter_mut().rev() {
        if !seen.insert(attempt.step.clone())
            && let Some(e) = attempt.error.as_mut()
        {
            e.output_tail.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_short_text_and_cuts_long_text_at_a_character_boundary() {
        assert_eq!(cut("short", 10), "short");
        let long = "ä".repeat(10); // 20 bytes
        let c = cut(&long, 5);
        assert!(c.starts_with("ää [… 16 more bytes"), "{c}");
    }

    #[test]
    fn a_stored_error_is_bounded_whatever_the_output() {
        let huge = "x".repeat(17 << 20);
        let e = step_error(StepError {
            message: huge.clone(),
            task: Some(huge.clone()),
            host: Some(huge.clone()),
            exit_code: Some(1),
            output_tail: vec![huge; 50],
        });
        let size = serde_json::to_vec(&e).unwrap().len();
        assert!(size < 40_000, "{size} bytes");
        assert_eq!(e.output_tail.len(), TAIL_LINES);
    }
}
