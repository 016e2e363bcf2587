//! Lines of code of a Rust source file, as `bench --clients` reports them
//! for the example servers and their tokio twins.
//!
//! A line counts when it holds anything outside comments: blank lines,
//! line comments (`//`, `//!`, `///`) and lines wholly inside `/* */`
//! blocks (nested ones too) do not. A string literal is code, so a `//` or
//! `/*` inside one (`"http://..."`) starts no comment, and a line inside a
//! multi-line string counts. Everything from a top-level `#[cfg(test)]`
//! line on (one starting in column 0, outside any comment or string: the
//! unit-test module at the end of a file) is left out.

use std::io;
use std::path::Path;

/// The lexer's state carried from one line to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Code,
    /// Inside `/* */`, this deep.
    Block(usize),
    /// Inside `"..."` (escapes allowed).
    Str,
    /// Inside a raw string closed by `"` and this many `#`.
    Raw(usize),
}

/// Non-blank, non-comment lines of Rust source `src`, up to a top-level
/// `#[cfg(test)]` line.
pub fn code_lines(src: &str) -> usize {
    let mut state = State::Code;
    let mut count = 0;
    for line in src.lines() {
        if state == State::Code && line.starts_with("#[cfg(test)]") {
            break;
        }
        let (code, next) = scan_line(line, state);
        if code {
            count += 1;
        }
        state = next;
    }
    count
}

/// [`code_lines`] of the file at `path`.
pub fn count_file(path: &Path) -> io::Result<usize> {
    Ok(code_lines(&std::fs::read_to_string(path)?))
}

/// Scans one line from `state`: whether it holds code, and the state at
/// its end.
fn scan_line(line: &str, mut state: State) -> (bool, State) {
    let c: Vec<char> = line.chars().collect();
    let mut code = false;
    let mut i = 0;
    while i < c.len() {
        match state {
            State::Block(depth) => {
                if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    state = if depth == 1 {
                        State::Code
                    } else {
                        State::Block(depth - 1)
                    };
                    i += 2;
                } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    state = State::Block(depth + 1);
                    i += 2;
                } else {
                    i += 1;
                }
            }
            State::Str => {
                code = true;
                match c[i] {
                    '\\' => i += 2,
                    '"' => {
                        state = State::Code;
                        i += 1;
                    }
                    _ => i += 1,
                }
            }
            State::Raw(hashes) => {
                code = true;
                if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
                    state = State::Code;
                    i += 1 + hashes;
                } else {
                    i += 1;
                }
            }
            State::Code => {
                let ch = c[i];
                if ch.is_whitespace() {
                    i += 1;
                    continue;
                }
                if ch == '/' && c.get(i + 1) == Some(&'/') {
                    break; // the rest of the line is a comment
                }
                if ch == '/' && c.get(i + 1) == Some(&'*') {
                    state = State::Block(1);
                    i += 2;
                    continue;
                }
                code = true;
                match ch {
                    '"' => {
                        state = State::Str;
                        i += 1;
                    }
                    // r"..", r#".."#, br"..": `r` right after a non-identifier
                    // character (or `b`), then `#`s, then `"`.
                    'r' if i == 0
                        || !is_ident(c[i - 1])
                        || (c[i - 1] == 'b' && (i == 1 || !is_ident(c[i - 2]))) =>
                    {
                        let hashes = c[i + 1..].iter().take_while(|&&h| h == '#').count();
                        if c.get(i + 1 + hashes) == Some(&'"') {
                            state = State::Raw(hashes);
                            i += 2 + hashes;
                        } else {
                            i += 1;
                        }
                    }
                    '\'' => i += char_literal_len(&c[i..]),
                    _ => i += 1,
                }
            }
        }
    }
    (code, state)
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// Length of the character literal starting at `c[0] == '\''`, or 1 for
/// a lifetime or label (`'a`), so that a quote in `'"'` opens no string.
fn char_literal_len(c: &[char]) -> usize {
    if c.get(1) == Some(&'\\') {
        // '\n', '\'', '\u{1F600}': up to the closing quote after the escape.
        match c.iter().skip(3).position(|&ch| ch == '\'') {
            Some(p) => p + 4,
            None => 1,
        }
    } else if c.get(2) == Some(&'\'') {
        3
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_lines_and_line_comments_do_not_count() {
        let src = "//! Crate doc.\n\n/// Item doc.\nfn main() {\n    // a comment\n    let x = 1; // trailing\n\n}\n";
        assert_eq!(code_lines(src), 3);
    }

    #[test]
    fn block_comments_nested_and_inline() {
        let src = "/* one\n   two\n*/\nfn a() {}\n/* a /* nested */ still\n comment */\nlet b = /* c */ 2;\n/* x */ let d = 3;\nlet e = 4; /* open\n close */\n";
        // fn a, let b, let d, let e.
        assert_eq!(code_lines(src), 4);
    }

    #[test]
    fn comment_markers_inside_strings_are_code() {
        let src = "let url = \"http://x/*\";\nlet y = 1;\nlet s = \"a\n// not a comment\n\";\nlet r = r#\"/* \" */\"#;\nlet q = '\"';\nlet z = 2;\n";
        assert_eq!(code_lines(src), 8);
    }

    #[test]
    fn lifetimes_and_escaped_chars_do_not_confuse() {
        let src = "fn f<'a>(x: &'a str) -> char {\n    let _ = '\\'';\n    let _ = '\\u{41}';\n    '/' // done\n}\n// end\n";
        assert_eq!(code_lines(src), 5);
    }

    #[test]
    fn stops_at_a_top_level_test_module() {
        let src = "fn main() {}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn t() {}\n}\n";
        assert_eq!(code_lines(src), 1);
        // Indented or commented-out, it is not the trailing test module.
        let src = "mod m {\n    #[cfg(test)]\n    fn t() {}\n}\n// #[cfg(test)]\nfn x() {}\n";
        assert_eq!(code_lines(src), 5);
        let src = "/*\n#[cfg(test)]\n*/\nfn x() {}\n";
        assert_eq!(code_lines(src), 1);
    }

    #[test]
    fn this_file_counts_like_a_naive_count() {
        // No block comments or multi-line strings above the tests here, so
        // a count by line prefixes must agree.
        let own = include_str!("loc.rs");
        let naive = own
            .lines()
            .take_while(|l| !l.starts_with("#[cfg(test)]"))
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .count();
        assert!(naive > 50);
        assert_eq!(code_lines(own), naive);
    }
}
