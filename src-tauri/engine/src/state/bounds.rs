//! The limits on output kept in the state: no step's output, however large, makes
//! the state file large. Each stored piece is cut (bytes per line, lines per tail,
//! bytes per message), and only a step's latest attempt keeps its output tail. The
//! full output always stays in the attempt's log file, which is where a cut says
//! to look.
//!
//! So a state holds at most, from output: per step, one tail (`TAIL_LINES` lines
//! of `LINE_BYTES`) plus one message of `MESSAGE_BYTES` per attempt; per event, one
//! message of `MESSAGE_BYTES`.

use crate::state::model::{StepError, StepRecord};

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

/// `text` without terminal escape sequences (colours, cursor moves, titles): what is
/// stored is read as text, in the window, `status` and JSON; the step's log keeps
/// the output as it was printed.
pub(crate) fn plain(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('\u{1b}') && !text.contains('\u{9b}') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // CSI: ESC [ (or the 8-bit CSI), parameters, one final byte @ to ~.
            '\u{1b}' if chars.peek() == Some(&'[') => {
                chars.next();
                for f in chars.by_ref() {
                    if ('@'..='~').contains(&f) {
                        break;
                    }
                }
            }
            '\u{9b}' => {
                for f in chars.by_ref() {
                    if ('@'..='~').contains(&f) {
                        break;
                    }
                }
            }
            // OSC (a title, a hyperlink): ESC ] ... up to BEL or ESC \.
            '\u{1b}' if chars.peek() == Some(&']') => {
                chars.next();
                while let Some(f) = chars.next() {
                    if f == '\u{7}' {
                        break;
                    }
                    if f == '\u{1b}' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            // Any other escape: ESC, its intermediate bytes (space to `/`, as in
            // `ESC ( B`) and one final character.
            '\u{1b}' => {
                while chars.peek().is_some_and(|f| (' '..='/').contains(f)) {
                    chars.next();
                }
                chars.next();
            }
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `text` as a stored piece: plain text, cut to `max` bytes.
pub(crate) fn stored(text: &str, max: usize) -> String {
    cut(&plain(text), max)
}

/// An error as it is stored: every piece plain text, cut to its limit.
pub(crate) fn step_error(error: StepError) -> StepError {
    let skip = error.output_tail.len().saturating_sub(TAIL_LINES);
    StepError {
        message: stored(&error.message, MESSAGE_BYTES),
        task: error.task.map(|t| stored(&t, NAME_BYTES)),
        host: error.host.map(|h| stored(&h, NAME_BYTES)),
        exit_code: error.exit_code,
        output_tail: error
            .output_tail
            .iter()
            .skip(skip)
            .map(|l| stored(l, LINE_BYTES))
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

#[cfg(test)]
mod tests {
    #[test]
    fn escape_sequences_are_taken_out_of_what_is_stored() {
        use super::plain;
        assert_eq!(
            plain("\u{1b}[31;1mERROR\u{1b}[0m: disk full"),
            "ERROR: disk full"
        );
        assert_eq!(plain("\u{1b}]0;title\u{7}after"), "after");
        assert_eq!(
            plain("\u{1b}]8;;http://x\u{1b}\\link\u{1b}]8;;\u{1b}\\"),
            "link"
        );
        assert_eq!(plain("a\u{1b}(Bb"), "ab");
        assert_eq!(plain("\u{9b}2Kline"), "line");
        // A cut sequence at the end takes nothing else with it.
        assert_eq!(plain("ok\u{1b}[3"), "ok");
        assert!(matches!(
            plain("plain ä"),
            std::borrow::Cow::Borrowed("plain ä")
        ));
    }

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
