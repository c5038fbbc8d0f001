//! The exit-code line that ends Convox exec, run and instance-shell streams
//! (`convox-api.md` §4.3): `F1E49A85-0AD7-4AEF-A618-C249C6E6568D:<code>\n`, and a scanner that
//! finds it in a byte stream however the rack cut that stream into frames.
//!
//! **Invariant:** the scanner sees every output byte once, keeps at most one pending code of
//! bounded length, and never alters or holds back the bytes it scans.

/// The prefix of the exit-code line (`pkg/api/helpers.go renderStatusCode`).
pub const EXIT_MARKER: &str = "F1E49A85-0AD7-4AEF-A618-C249C6E6568D:";

/// The most bytes read after the prefix while looking for the line's end: an `i64` and
/// some whitespace fit; anything longer is not a marker line.
const MAX_CODE_LEN: usize = 32;

/// Finds exit-code lines in a stream fed in arbitrary pieces.
///
/// The prefix may appear anywhere (the CLI searches each read buffer for it, not just line
/// starts); the code runs to the next `\n` and is read as the CLI reads it (ASCII whitespace
/// trimmed, optional sign, decimal). A code counts only while its line is the **last** thing
/// in the stream: the rack writes its marker after the process has ended and then only its EOF,
/// so program output can only precede it, and a marker the program printed itself (followed by
/// more output, or by a stream the rack never ended, which the relay checks) is no exit code.
#[derive(Clone, Debug)]
pub(crate) struct ExitScanner {
    /// KMP failure function of `EXIT_MARKER`.
    fallback: [usize; EXIT_MARKER.len()],
    /// How many bytes of the prefix the stream currently ends with.
    matched: usize,
    /// The bytes after a complete prefix, while waiting for `\n`.
    code: Option<Vec<u8>>,
    /// The code of a marker line the stream so far ends with.
    last: Option<i64>,
}

/// The exit-code line for `code`.
pub fn exit_line(code: i64) -> String {
    format!("{EXIT_MARKER}{code}\n")
}

// === impl ExitScanner ===

impl ExitScanner {
    pub(crate) fn new() -> ExitScanner {
        let pattern = EXIT_MARKER.as_bytes();
        let mut fallback = [0usize; EXIT_MARKER.len()];
        let mut k = 0;
        for (i, &b) in pattern.iter().enumerate().skip(1) {
            while k > 0 && pattern.get(k) != Some(&b) {
                k = fallback.get(k - 1).copied().unwrap_or(0);
            }
            if pattern.get(k) == Some(&b) {
                k += 1;
            }
            if let Some(slot) = fallback.get_mut(i) {
                *slot = k;
            }
        }
        ExitScanner {
            fallback,
            matched: 0,
            code: None,
            last: None,
        }
    }

    /// Scans the next piece of the stream. The prefix is looked for in every byte, also while a
    /// code is being read: a prefix the program printed without a line end must not swallow the
    /// rack's own marker line after it.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        let pattern = EXIT_MARKER.as_bytes();
        for &b in bytes {
            // Anything after a marker line: the stream did not end with it.
            self.last = None;
            while self.matched > 0 && pattern.get(self.matched) != Some(&b) {
                self.matched = self.fallback.get(self.matched - 1).copied().unwrap_or(0);
            }
            if pattern.get(self.matched) == Some(&b) {
                self.matched += 1;
            }
            if self.matched == pattern.len() {
                // A new prefix: whatever code was pending was not a line of its own.
                self.matched = 0;
                self.code = Some(Vec::with_capacity(8));
                continue;
            }
            if let Some(code) = &mut self.code {
                if b == b'\n' {
                    if let Some(parsed) = parse_code(code) {
                        self.last = Some(parsed);
                    }
                    self.code = None;
                } else if code.len() < MAX_CODE_LEN {
                    code.push(b);
                } else {
                    self.code = None;
                }
            }
        }
    }

    /// The code of the complete, well-formed marker line the bytes fed so far end with.
    pub(crate) fn exit_code(&self) -> Option<i64> {
        self.last
    }
}

/// Go's `strconv.Atoi(strings.TrimSpace(s))`, as the CLI reads the code.
fn parse_code(raw: &[u8]) -> Option<i64> {
    std::str::from_utf8(raw.trim_ascii()).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(pieces: &[&[u8]]) -> Option<i64> {
        let mut s = ExitScanner::new();
        for p in pieces {
            s.feed(p);
        }
        s.exit_code()
    }

    #[test]
    fn a_marker_line_is_found_however_it_is_cut() {
        let line = format!("output\n{}", exit_line(3));
        let bytes = line.as_bytes();
        for cut in 0..bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(scan(&[a, b]), Some(3), "cut at {cut}");
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(scan(&singles), Some(3));
    }

    #[test]
    fn codes_are_read_as_the_cli_reads_them() {
        assert_eq!(scan(&[exit_line(-1).as_bytes()]), Some(-1));
        assert_eq!(
            scan(&[format!("{EXIT_MARKER} +42\r\n").as_bytes()]),
            Some(42)
        );
        assert_eq!(scan(&[format!("{EXIT_MARKER}x\n").as_bytes()]), None);
        assert_eq!(
            scan(&[EXIT_MARKER.as_bytes(), b"7"]),
            None,
            "no newline yet"
        );
        let long = format!("{EXIT_MARKER}{}\n", "1".repeat(40));
        assert_eq!(scan(&[long.as_bytes()]), None);
    }

    #[test]
    fn a_prefix_after_a_partial_match_is_still_found() {
        // "F1E4" followed by the whole marker: the scanner must fall back, not restart past it.
        let text = format!("F1E4{}", exit_line(5));
        assert_eq!(scan(&[text.as_bytes()]), Some(5));
        let text = format!("F1E49A85-0AD7-4AEF{}", exit_line(6));
        assert_eq!(scan(&[text.as_bytes()]), Some(6));
    }

    /// A program that prints the prefix without a line end, then exits 1: the rack's marker
    /// line right after it still gives the code.
    #[test]
    fn a_prefix_the_program_left_open_does_not_hide_the_racks_line() {
        let text = format!("{EXIT_MARKER}{}", exit_line(1));
        assert_eq!(scan(&[text.as_bytes()]), Some(1));
        let text = format!("{EXIT_MARKER}12{}", exit_line(3));
        let singles: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
        assert_eq!(scan(&singles), Some(3));
    }

    #[test]
    fn only_a_marker_line_that_ends_the_stream_counts() {
        let text = format!("{}{}", exit_line(0), exit_line(2));
        assert_eq!(scan(&[text.as_bytes()]), Some(2));
        // A program's own marker, then more output: not the rack's line.
        let text = format!("{}{EXIT_MARKER}bogus\n", exit_line(4));
        assert_eq!(scan(&[text.as_bytes()]), None);
        assert_eq!(scan(&[exit_line(0).as_bytes(), b"more\n"]), None);
        assert_eq!(scan(&[exit_line(0).as_bytes(), b"", b""]), Some(0));
    }
}
