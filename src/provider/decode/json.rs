//! A strict JSON reader over one page's text, for the decoder: tokens on demand, no tree, no
//! serde dispatch per value.
//!
//! It accepts exactly what `serde_json` accepts when it reads the same text into a
//! `serde_json::Value` (the fuzz target's agreement check): RFC 8259 numbers, strings without
//! control characters, escapes with paired UTF-16 surrogates, at most 127 nested arrays and
//! objects, and no number beyond `f64`'s range. Values that the decoder skips are checked as
//! strictly as the ones it reads. It reads numbers as `serde_json` does: whole numbers as
//! `u64` or `i64` while they fit, everything else as the nearest `f64`.

use std::fmt;

/// `serde_json`'s recursion limit: a `Value` holds at most 127 nested arrays and objects.
const MAX_DEPTH: usize = 128;

const CONTROL_CHARACTER: &str = "control character (\\u0000-\\u001F) found while parsing a string";

/// Malformed JSON, or a value that does not fit its column: what, and where.
#[derive(Debug)]
pub struct JsonError {
    message: String,
    /// Byte offset of the error in the body.
    offset: usize,
    line: usize,
    column: usize,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {} (byte {})",
            self.message, self.line, self.column, self.offset
        )
    }
}

impl std::error::Error for JsonError {}

pub type Result<T, E = JsonError> = std::result::Result<T, E>;

/// A JSON number as `serde_json` reads it.
#[derive(Clone, Copy, Debug)]
pub enum Number {
    /// A whole non-negative number that fits `u64`.
    U64(u64),
    /// A whole negative number that fits `i64`.
    I64(i64),
    /// Anything else: a fraction, an exponent, `-0`, or a whole number too large for the above.
    F64(f64),
}

/// The reading position in one page's text.
pub struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(text: &'a str) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    /// An error at the current position.
    #[cold]
    pub fn error(&self, message: impl Into<String>) -> JsonError {
        self.error_at(self.pos, message)
    }

    #[cold]
    pub fn error_at(&self, offset: usize, message: impl Into<String>) -> JsonError {
        let before = &self.bytes[..offset.min(self.bytes.len())];
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        JsonError {
            message: message.into(),
            offset,
            line: before.iter().filter(|&&b| b == b'\n').count() + 1,
            column: offset - line_start + 1,
        }
    }

    /// The next byte after whitespace, not consumed; `None` at the end of the text.
    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        while let Some(&b) = self.bytes.get(self.pos) {
            if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(b);
            }
            self.pos += 1;
        }
        None
    }

    /// Consumes `byte` (after whitespace) when it is next.
    #[inline]
    pub fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Consumes `byte` (after whitespace), or fails saying what was expected.
    #[inline]
    pub fn expect(&mut self, byte: u8, what: &str) -> Result<()> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(self.unexpected(what))
        }
    }

    #[cold]
    pub fn unexpected(&mut self, what: &str) -> JsonError {
        match self.peek() {
            None => self.error(format!("EOF while parsing: expected {what}")),
            Some(_) => self.error(format!("expected {what}")),
        }
    }

    /// After the separator of one member or element: `true` when another follows (`,`),
    /// `false` at the `close` bracket.
    #[inline]
    pub fn more(&mut self, close: u8) -> Result<bool> {
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            Some(b) if b == close => {
                self.pos += 1;
                Ok(false)
            }
            _ => Err(self.unexpected(if close == b']' {
                "`,` or `]`"
            } else {
                "`,` or `}`"
            })),
        }
    }

    /// Only whitespace is left.
    pub fn end(&mut self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("trailing characters")),
        }
    }

    /// Consumes `word` (`null`, `true`, `false`), which must be at the current position.
    #[inline]
    pub fn literal(&mut self, word: &[u8]) -> Result<()> {
        let end = self.pos + word.len();
        if self
            .bytes
            .get(self.pos..end)
            .is_some_and(|text| same_bytes(text, word))
        {
            self.pos = end;
            Ok(())
        } else {
            Err(self.error("expected ident"))
        }
    }

    /// When the text at the current position (just after an opening quote) is `name` and its
    /// closing quote, consumes them. `name` must have been read as a string without escapes,
    /// so equal bytes are an equal string: no scanning, no unescaping.
    #[inline]
    pub fn skip_known(&mut self, name: &[u8]) -> bool {
        let end = self.pos + name.len();
        if self.bytes.get(end) == Some(&b'"') && same_bytes(&self.bytes[self.pos..end], name) {
            self.pos = end + 1;
            true
        } else {
            false
        }
    }

    /// The string whose opening quote was just consumed: borrowed from the text when it has no
    /// escapes, else unescaped into `scratch`. `escaped` says which.
    #[inline]
    pub fn string<'s>(&mut self, scratch: &'s mut String) -> Result<(&'s str, bool)>
    where
        'a: 's,
    {
        let start = self.pos;
        self.pos = find_special(self.bytes, start);
        match self.bytes.get(self.pos) {
            Some(b'"') => {
                self.pos += 1;
                Ok((&self.text[start..self.pos - 1], false))
            }
            _ => {
                self.pos = start;
                self.unescape(scratch).map(|s| (s, true))
            }
        }
    }

    /// The slow path of [`Reader::string`]: a string with escapes (or an error).
    #[cold]
    fn unescape<'s>(&mut self, scratch: &'s mut String) -> Result<&'s str> {
        scratch.clear();
        loop {
            let start = self.pos;
            self.pos = find_special(self.bytes, start);
            scratch.push_str(&self.text[start..self.pos]);
            match self.bytes.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(scratch);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = self.escape()?;
                    scratch.push(c);
                }
                Some(_) => return Err(self.error(CONTROL_CHARACTER)),
                None => return Err(self.error("EOF while parsing a string")),
            }
        }
    }

    /// Skips the string whose opening quote was just consumed, checking its escapes as
    /// [`Reader::string`] does, without unescaping it.
    fn skip_string(&mut self) -> Result<()> {
        loop {
            self.pos = find_special(self.bytes, self.pos);
            match self.bytes.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape()?;
                }
                Some(_) => return Err(self.error(CONTROL_CHARACTER)),
                None => return Err(self.error("EOF while parsing a string")),
            }
        }
    }

    /// One escape after its backslash, as `serde_json` reads it into a `String`: surrogates
    /// must come in pairs.
    fn escape(&mut self) -> Result<char> {
        let Some(&b) = self.bytes.get(self.pos) else {
            return Err(self.error("EOF while parsing a string"));
        };
        self.pos += 1;
        Ok(match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => return self.unicode_escape(),
            _ => return Err(self.error_at(self.pos - 1, "invalid escape")),
        })
    }

    fn unicode_escape(&mut self) -> Result<char> {
        let first = self.hex4()?;
        match first {
            0xDC00..=0xDFFF => Err(self.error("lone leading surrogate in hex escape")),
            0xD800..=0xDBFF => {
                if !self.bytes[self.pos..].starts_with(b"\\u") {
                    return Err(self.error("unexpected end of hex escape"));
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.error("lone leading surrogate in hex escape"));
                }
                let c = 0x1_0000 + ((first - 0xD800) << 10 | (second - 0xDC00));
                Ok(char::from_u32(c).expect("a surrogate pair is a char"))
            }
            c => Ok(char::from_u32(c).expect("not a surrogate")),
        }
    }

    fn hex4(&mut self) -> Result<u32> {
        let mut n = 0;
        for _ in 0..4 {
            let digit = self
                .bytes
                .get(self.pos)
                .and_then(|b| (*b as char).to_digit(16));
            let Some(digit) = digit else {
                return Err(match self.bytes.get(self.pos) {
                    None => self.error("EOF while parsing a string"),
                    Some(_) => self.error("invalid escape"),
                });
            };
            n = n * 16 + digit;
            self.pos += 1;
        }
        Ok(n)
    }

    /// The text of the number that starts here, checked against JSON's grammar.
    #[inline]
    pub fn number_text(&mut self) -> Result<&'a str> {
        self.number_parts().map(|(text, _)| text)
    }

    /// The number's text, and whether it is whole (no fraction, no exponent).
    #[inline]
    fn number_parts(&mut self) -> Result<(&'a str, bool)> {
        let start = self.pos;
        let b = self.bytes;
        let mut i = start + usize::from(b.get(start) == Some(&b'-'));
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits_end(b, i + 1),
            _ => return Err(self.error_at(i, "invalid number")),
        }
        let whole_end = i;
        if b.get(i) == Some(&b'.') {
            let end = digits_end(b, i + 1);
            if end == i + 1 {
                return Err(self.error_at(end, "invalid number"));
            }
            i = end;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let end = digits_end(b, i);
            if end == i {
                return Err(self.error_at(end, "invalid number"));
            }
            i = end;
        }
        self.pos = i;
        Ok((&self.text[start..i], i == whole_end))
    }

    /// The number that starts here, as `serde_json` reads it.
    #[inline]
    pub fn number(&mut self) -> Result<Number> {
        let start = self.pos;
        let (text, whole) = self.number_parts()?;
        if whole {
            let (negative, digits) = match text.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, text),
            };
            if let Some(magnitude) = parse_u64(digits) {
                return Ok(whole_number(negative, magnitude));
            }
        }
        // Rust's parser reads a superset of JSON's grammar, correctly rounded like
        // `serde_json`'s `float_roundtrip`; beyond `f64`'s range it gives infinity.
        match text.parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(Number::F64(value)),
            Ok(_) => Err(self.error_at(start, "number out of range")),
            Err(_) => Err(self.error_at(start, "invalid number")),
        }
    }

    /// Skips one value, checking it as strictly as a value that is read. `depth` is the
    /// number of arrays and objects around it.
    pub fn skip_value(&mut self, depth: usize) -> Result<()> {
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                self.skip_string()
            }
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            Some(b'n') => self.literal(b"null"),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'[') => {
                self.enter(depth)?;
                if self.eat(b']') {
                    return Ok(());
                }
                loop {
                    self.skip_value(depth + 1)?;
                    if !self.more(b']')? {
                        return Ok(());
                    }
                }
            }
            Some(b'{') => {
                self.enter(depth)?;
                if self.eat(b'}') {
                    return Ok(());
                }
                loop {
                    self.expect(b'"', "a property name")?;
                    self.skip_string()?;
                    self.expect(b':', "`:`")?;
                    self.skip_value(depth + 1)?;
                    if !self.more(b'}')? {
                        return Ok(());
                    }
                }
            }
            _ => Err(self.unexpected("a value")),
        }
    }

    /// Consumes the `[` or `{` of the array or object at `depth`, within the limit.
    #[inline]
    pub fn enter(&mut self, depth: usize) -> Result<()> {
        if depth + 1 >= MAX_DEPTH {
            return Err(self.error("recursion limit exceeded"));
        }
        self.pos += 1;
        Ok(())
    }

    /// The text from `start` to the current position.
    pub fn text_from(&self, start: usize) -> &'a str {
        &self.text[start..self.pos]
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    /// Consumes one byte already seen with [`Reader::peek`].
    #[inline]
    pub fn bump(&mut self) {
        self.pos += 1;
    }
}

/// `serde_json`'s reading of a whole number: `u64` when non-negative, `i64` when negative,
/// and `f64` for `-0` and for negative numbers beyond `i64`.
fn whole_number(negative: bool, magnitude: u64) -> Number {
    if !negative {
        return Number::U64(magnitude);
    }
    let value = (magnitude as i64).wrapping_neg();
    if value >= 0 {
        Number::F64(-(magnitude as f64))
    } else {
        Number::I64(value)
    }
}

/// ASCII digits as a `u64`; `None` on overflow.
#[inline]
fn parse_u64(digits: &str) -> Option<u64> {
    if digits.len() <= 19 {
        // 19 digits cannot overflow.
        return Some(
            digits
                .bytes()
                .fold(0u64, |n, c| n * 10 + u64::from(c - b'0')),
        );
    }
    digits.bytes().try_fold(0u64, |n, c| {
        n.checked_mul(10)?.checked_add(u64::from(c - b'0'))
    })
}

/// The position of the first byte at or after `at` that is not an ASCII digit.
#[inline]
fn digits_end(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(u8::is_ascii_digit) {
        at += 1;
    }
    at
}

/// The position of the first `"`, `\` or control character at or after `at` (or the end),
/// eight bytes at a time: strings are scanned once, in registers.
#[inline]
fn find_special(bytes: &[u8], mut at: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        // A byte's high bit is set in `found` where the byte is zero (in `quote`,
        // `backslash`) or below 0x20 (in `word`); the lowest such byte is a true match.
        let found = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (word.wrapping_sub(ONES * 0x20) & !word);
        let found = found & HIGH;
        if found != 0 {
            return at + (found.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&b) = bytes.get(at) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            return at;
        }
        at += 1;
    }
    at
}

/// Byte equality for short strings such as property names, word by word: `==` calls
/// `memcmp`, whose call costs more than the comparison of a 20-byte key.
#[inline]
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes"));
    match a.len() {
        0..4 => a.iter().zip(b).all(|(x, y)| x == y),
        // Two half-words that may overlap.
        n @ 4..8 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        n => {
            // Whole words, then one last word that may overlap the one before.
            (0..n / 8).all(|i| word(a, i * 8) == word(b, i * 8)) && word(a, n - 8) == word(b, n - 8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_word_wise_scan_finds_the_first_special_byte() {
        let naive = |b: &[u8], at: usize| {
            (at..b.len())
                .find(|&i| b[i] == b'"' || b[i] == b'\\' || b[i] < 0x20)
                .unwrap_or(b.len())
        };
        let filler = "abcdefghijklmnopqrstuvwxyzé€😀!#~\u{7f}";
        for special in ["\"", "\\", "\u{0}", "\u{1f}", "\n", ""] {
            for len in 0..40 {
                let text: String = filler.chars().cycle().take(len).collect();
                let text = format!("{text}{special}tail\"");
                for at in [0, 1, 7, 8, 9] {
                    let at = at.min(text.len());
                    if !text.is_char_boundary(at) {
                        continue;
                    }
                    assert_eq!(
                        find_special(text.as_bytes(), at),
                        naive(text.as_bytes(), at),
                        "{text:?} from {at}"
                    );
                }
            }
        }
    }

    proptest! {
        /// Numbers are read as `serde_json` reads them: the same kind, the same value.
        #[test]
        fn numbers_are_read_as_serde_json_reads_them(
            text in "-?(0|[1-9][0-9]{0,24})(\\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?"
        ) {
            let mut reader = Reader::new(&text);
            let ours = reader.number();
            let theirs: std::result::Result<serde_json::Number, _> = serde_json::from_str(&text);
            match (ours, theirs) {
                (Ok(Number::U64(a)), Ok(b)) => prop_assert_eq!(Some(a), b.as_u64()),
                (Ok(Number::I64(a)), Ok(b)) => prop_assert_eq!(Some(a), b.as_i64()),
                (Ok(Number::F64(a)), Ok(b)) => {
                    prop_assert!(b.is_f64(), "{} is not f64 in serde_json", text);
                    prop_assert_eq!(Some(a.to_bits()), b.as_f64().map(f64::to_bits));
                }
                (Err(_), Err(_)) => {}
                (ours, theirs) => prop_assert!(false, "{text}: {ours:?} vs {theirs:?}"),
            }
        }

        /// Strings are read as `serde_json` reads them into a `String`, escapes and all.
        #[test]
        fn strings_are_read_as_serde_json_reads_them(
            body in "([ -!#-\\[\\]-~é€😀\\x00-\\x1f]|\\\\[\"\\\\/bfnrtx]|\\\\u[0-9a-fA-F]{4}|\\\\u[dD][89abAB][0-9a-fA-F]{2}\\\\u[dD][c-fC-F][0-9a-fA-F]{2}){0,12}"
        ) {
            let text = format!("\"{body}\"");
            let mut reader = Reader::new(&text);
            reader.bump();
            let mut scratch = String::new();
            let ours = reader.string(&mut scratch).map(|(s, _)| s.to_string());
            let theirs: std::result::Result<String, _> = serde_json::from_str(&text);
            match (ours, theirs) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (Err(_), Err(_)) => {}
                (ours, theirs) => prop_assert!(false, "{text:?}: {ours:?} vs {theirs:?}"),
            }
        }
    }
}
