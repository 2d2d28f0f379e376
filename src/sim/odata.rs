//! The simulator's own lexer and parser of OData `$filter` text into an untyped tree.
//!
//! The grammar is the OData 4.0 subset Dataverse accepts (Web API notes: "$filter grammar"):
//! comparisons, `and`/`or`/`not`, parentheses, literals, `contains`/`startswith`/`endswith`, and
//! `Microsoft.Dynamics.CRM.*` functions with named parameters
//! (Web API notes: "Dataverse query functions"). The OData 4.01 `in` operator and arithmetic
//! operators are recognised only to be refused with Dataverse's errors. Bare literals (GUIDs,
//! dates, numbers) are read by [`crate::sim::literal`]; binding to columns and types happens in
//! [`crate::sim::filter`].

use uuid::Uuid;

use crate::sim::error::ApiError;
use crate::sim::literal;

/// Comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmpOp {
    /// `eq`.
    Eq,
    /// `ne`.
    Ne,
    /// `gt`.
    Gt,
    /// `ge`.
    Ge,
    /// `lt`.
    Lt,
    /// `le`.
    Le,
}

/// A literal as written.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Lit {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// Number text (integers and decimals are typed by the column they meet).
    Num(String),
    /// `'text'` with `''` unescaped.
    Str(String),
    /// Bare GUID.
    Guid(Uuid),
    /// DateTimeOffset as Unix seconds (UTC).
    DateTime(i64),
    /// Date as days since 1970-01-01.
    Date(i32),
    /// JSON array of strings (`PropertyValues`).
    Json(Vec<String>),
    /// Enum literal `Type'Value'` (metadata queries).
    Enum(String),
}

/// Untyped expression tree.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    /// `a or b`.
    Or(Box<Node>, Box<Node>),
    /// `a and b`.
    And(Box<Node>, Box<Node>),
    /// `not a`.
    Not(Box<Node>),
    /// `a op b`.
    Cmp(CmpOp, Box<Node>, Box<Node>),
    /// Standard function call with positional arguments.
    Call(String, Vec<Node>),
    /// `Microsoft.Dynamics.CRM.X(Name=value,...)`.
    CrmCall(String, Vec<(String, Node)>),
    /// Property path.
    Prop(String),
    /// Literal.
    Lit(Lit),
    /// Parameter alias `@p1`.
    Alias(String),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Lit(Lit),
    Alias(String),
    LParen,
    RParen,
    Comma,
    Equals,
}

/// Splits `$filter` text into tokens with their character positions.
fn lex(text: &str) -> Result<Vec<(usize, Tok)>, ApiError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        match c {
            ' ' | '\t' | '\r' | '\n' => {
                i += 1;
                continue;
            }
            '(' => {
                out.push((start, Tok::LParen));
                i += 1;
            }
            ')' => {
                out.push((start, Tok::RParen));
                i += 1;
            }
            ',' => {
                out.push((start, Tok::Comma));
                i += 1;
            }
            '=' => {
                out.push((start, Tok::Equals));
                i += 1;
            }
            '\'' => {
                let (s, next) = lex_string(&chars, i, text)?;
                out.push((start, Tok::Lit(Lit::Str(s))));
                i = next;
            }
            '[' => {
                let (arr, next) = lex_json(&chars, i)?;
                out.push((start, Tok::Lit(Lit::Json(arr))));
                i = next;
            }
            '@' => {
                let mut j = i + 1;
                while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                out.push((start, Tok::Alias(chars[i..j].iter().collect())));
                i = j;
            }
            _ if c.is_ascii_digit() || c == '-' => {
                let (lit, next) = literal::numeric_or_temporal(&chars, i, text)?;
                out.push((start, Tok::Lit(lit)));
                i = next;
            }
            _ if c.is_alphabetic() || c == '_' || c == '$' => {
                if let Some((lit, next)) = literal::guid(&chars, i) {
                    out.push((start, Tok::Lit(lit)));
                    i = next;
                    continue;
                }
                let mut j = i + 1;
                while j < chars.len()
                    && (chars[j].is_alphanumeric() || matches!(chars[j], '_' | '.' | '/' | '$'))
                {
                    j += 1;
                }
                let word: String = chars[i..j].iter().collect();
                // Enum literal: Microsoft.Dynamics.CRM.AttributeTypeCode'Picklist'.
                if j < chars.len() && chars[j] == '\'' && word.contains('.') {
                    let (s, next) = lex_string(&chars, j, text)?;
                    out.push((start, Tok::Lit(Lit::Enum(s))));
                    i = next;
                    continue;
                }
                let tok = match word.as_str() {
                    "null" => Tok::Lit(Lit::Null),
                    "true" => Tok::Lit(Lit::Bool(true)),
                    "false" => Tok::Lit(Lit::Bool(false)),
                    _ => Tok::Ident(word),
                };
                out.push((start, tok));
                i = j;
            }
            _ => {
                return Err(ApiError::bad_request(
                    "0x80060888",
                    format!(
                        "Syntax error: character '{c}' is not valid at position {start} in '{text}'."
                    ),
                ));
            }
        }
    }
    Ok(out)
}

fn lex_string(chars: &[char], open: usize, text: &str) -> Result<(String, usize), ApiError> {
    let mut s = String::new();
    let mut j = open + 1;
    loop {
        match chars.get(j) {
            None => {
                return Err(ApiError::bad_request(
                    "0x80060888",
                    format!("There is an unterminated literal at position {open} in '{text}'."),
                ));
            }
            Some('\'') if chars.get(j + 1) == Some(&'\'') => {
                s.push('\'');
                j += 2;
            }
            Some('\'') => return Ok((s, j + 1)),
            Some(&c) => {
                s.push(c);
                j += 1;
            }
        }
    }
}

fn lex_json(chars: &[char], open: usize) -> Result<(Vec<String>, usize), ApiError> {
    let mut j = open;
    let mut in_str = false;
    while j < chars.len() {
        match chars[j] {
            '\\' if in_str => j += 1,
            '"' => in_str = !in_str,
            ']' if !in_str => break,
            _ => {}
        }
        j += 1;
    }
    let raw: String = chars[open..(j + 1).min(chars.len())].iter().collect();
    let arr: Vec<serde_json::Value> = serde_json::from_str(&raw)
        .map_err(|e| ApiError::bad_request("0x80060888", format!("Invalid JSON. {e}")))?;
    let strings = arr
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        })
        .collect();
    Ok((strings, j + 1))
}

/// Recursive-descent parser over the tokens.
struct Parser<'t> {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    text: &'t str,
}

const ARITHMETIC: &[&str] = &["add", "sub", "mul", "div", "divby", "mod"];

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.toks
            .get(self.pos)
            .map(|(p, _)| *p)
            .unwrap_or(self.text.chars().count())
    }

    fn err(&self) -> ApiError {
        ApiError::syntax(self.at(), self.text)
    }

    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(w)) if w == k)
    }

    fn expect(&mut self, t: Tok) -> Result<(), ApiError> {
        if self.peek() == Some(&t) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err())
        }
    }

    fn or(&mut self) -> Result<Node, ApiError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Node::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, ApiError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Node::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Node, ApiError> {
        if self.keyword("not") {
            self.pos += 1;
            let inner = self.unary()?;
            return Ok(Node::Not(Box::new(inner)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Node, ApiError> {
        let left = self.primary()?;
        let op = match self.peek() {
            Some(Tok::Ident(w)) => match w.as_str() {
                "eq" => CmpOp::Eq,
                "ne" => CmpOp::Ne,
                "gt" => CmpOp::Gt,
                "ge" => CmpOp::Ge,
                "lt" => CmpOp::Lt,
                "le" => CmpOp::Le,
                // OData 4.01 `in` is not implemented by Dataverse
                // (Web API notes: "$filter grammar", DynamicsWebApi#121).
                "in" => {
                    return Err(ApiError::new(
                        501,
                        "0x80040216",
                        "The method or operation is not implemented.",
                    ));
                }
                "has" => {
                    return Err(ApiError::not_supported(
                        "The 'has' operator is not supported.",
                    ));
                }
                a if ARITHMETIC.contains(&a) => {
                    return Err(ApiError::not_supported(format!(
                        "The arithmetic operator '{a}' is not supported."
                    )));
                }
                _ => return Ok(left),
            },
            _ => return Ok(left),
        };
        self.pos += 1;
        let right = self.primary()?;
        if let Some(Tok::Ident(w)) = self.peek()
            && ARITHMETIC.contains(&w.as_str())
        {
            return Err(ApiError::not_supported(format!(
                "The arithmetic operator '{w}' is not supported."
            )));
        }
        Ok(Node::Cmp(op, Box::new(left), Box::new(right)))
    }

    fn primary(&mut self) -> Result<Node, ApiError> {
        let (_, tok) = self
            .toks
            .get(self.pos)
            .cloned()
            .ok_or_else(|| ApiError::expression_expected(self.at(), self.text))?;
        self.pos += 1;
        match tok {
            Tok::LParen => {
                let inner = self.or()?;
                self.expect(Tok::RParen)?;
                Ok(inner)
            }
            Tok::Lit(l) => Ok(Node::Lit(l)),
            Tok::Alias(a) => Ok(Node::Alias(a)),
            Tok::Ident(name) => {
                if self.peek() != Some(&Tok::LParen) {
                    return Ok(Node::Prop(name));
                }
                self.pos += 1;
                if let Some(short) = name.strip_prefix("Microsoft.Dynamics.CRM.") {
                    let mut params = Vec::new();
                    if self.peek() != Some(&Tok::RParen) {
                        loop {
                            let pname = match self.toks.get(self.pos) {
                                Some((_, Tok::Ident(p))) => p.clone(),
                                _ => return Err(self.err()),
                            };
                            self.pos += 1;
                            self.expect(Tok::Equals)?;
                            let v = self.primary()?;
                            params.push((pname, v));
                            if self.peek() == Some(&Tok::Comma) {
                                self.pos += 1;
                            } else {
                                break;
                            }
                        }
                    }
                    self.expect(Tok::RParen)?;
                    return Ok(Node::CrmCall(short.to_string(), params));
                }
                let mut args = Vec::new();
                if self.peek() != Some(&Tok::RParen) {
                    loop {
                        args.push(self.or()?);
                        if self.peek() == Some(&Tok::Comma) {
                            self.pos += 1;
                        } else {
                            break;
                        }
                    }
                }
                self.expect(Tok::RParen)?;
                Ok(Node::Call(name, args))
            }
            _ => {
                self.pos -= 1;
                Err(self.err())
            }
        }
    }
}

/// Parses `$filter` text into a tree.
pub(crate) fn parse_filter(text: &str) -> Result<Node, ApiError> {
    let toks = lex(text)?;
    if toks.is_empty() {
        return Err(ApiError::syntax(0, text));
    }
    let mut p = Parser { toks, pos: 0, text };
    let node = p.or()?;
    if p.pos != p.toks.len() {
        return Err(p.err());
    }
    Ok(node)
}

/// Parses a single literal (a parameter alias value such as `'name'` or `["a","b"]`).
pub(crate) fn parse_literal(text: &str) -> Result<Lit, ApiError> {
    let toks = lex(text)?;
    match toks.as_slice() {
        [(_, Tok::Lit(l))] => Ok(l.clone()),
        _ => Err(ApiError::syntax(0, text)),
    }
}

/// Splits `text` at top-level occurrences of `sep` (outside parentheses and quotes).
pub(crate) fn split_top_level(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut in_str = false;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '\'' => in_str = !in_str,
            '(' if !in_str => depth += 1,
            ')' if !in_str => depth -= 1,
            c if c == sep && depth == 0 && !in_str => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_precedence_and_literals() {
        let n = parse_filter("a eq 'O''Brien' or b gt 5 and not contains(c,'x')").unwrap();
        match n {
            Node::Or(l, r) => {
                assert_eq!(
                    *l,
                    Node::Cmp(
                        CmpOp::Eq,
                        Box::new(Node::Prop("a".into())),
                        Box::new(Node::Lit(Lit::Str("O'Brien".into())))
                    )
                );
                assert!(matches!(*r, Node::And(_, _)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lexes_guid_datetime_and_date() {
        let n = parse_filter("x eq 00000000-0000-0000-0000-000000000001").unwrap();
        assert!(matches!(n, Node::Cmp(_, _, r) if matches!(*r, Node::Lit(Lit::Guid(_)))));
        let n = parse_filter("x ge 2024-01-01T01:00:00+01:00").unwrap();
        assert!(matches!(n, Node::Cmp(_, _, r) if *r == Node::Lit(Lit::DateTime(1704067200))));
        let n = parse_filter("x ge 2024-01-01").unwrap();
        assert!(matches!(n, Node::Cmp(_, _, r) if matches!(*r, Node::Lit(Lit::Date(_)))));
    }

    #[test]
    fn rejects_in_and_arithmetic() {
        assert_eq!(parse_filter("x in ('a','b')").unwrap_err().status, 501);
        assert_eq!(parse_filter("x add 1 eq 2").unwrap_err().status, 400);
    }
}
