//! files.list's `q`: Drive's search-query language, the part a backup client uses.
//!
//! Terms: `name = 'x'`, `name != 'x'`, `name contains 'x'`, `mimeType = 'x'` (and `!=`),
//! `'ID' in parents`, `trashed = true|false`; combined with `and`, `or`, `not` and
//! parentheses. Strings are single-quoted with `\'` and `\\` escapes. Anything else is
//! refused with 400 `invalid` naming `q`, as Drive refuses a query it cannot parse.

use super::state::StoredFile;

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Query {
    All,
    NameEq(String, bool),
    NameContains(String),
    MimeTypeEq(String, bool),
    InParents(String),
    Trashed(bool),
    And(Box<Query>, Box<Query>),
    Or(Box<Query>, Box<Query>),
    Not(Box<Query>),
}

impl Query {
    pub(crate) fn matches(&self, file: &StoredFile) -> bool {
        match self {
            Query::All => true,
            Query::NameEq(name, equal) => (file.name == *name) == *equal,
            Query::NameContains(part) => file.name.contains(part.as_str()),
            Query::MimeTypeEq(mime, equal) => (file.mime_type == *mime) == *equal,
            Query::InParents(id) => file.parents.iter().any(|p| p == id),
            // Nothing is ever trashed here: files.delete deletes for good.
            Query::Trashed(trashed) => !*trashed,
            Query::And(a, b) => a.matches(file) && b.matches(file),
            Query::Or(a, b) => a.matches(file) || b.matches(file),
            Query::Not(a) => !a.matches(file),
        }
    }

    /// Parses `q`; the error says what is wrong.
    pub(crate) fn parse(text: &str) -> Result<Query, String> {
        let tokens = tokenize(text)?;
        if tokens.is_empty() {
            return Ok(Query::All);
        }
        let mut parser = Parser { tokens, at: 0 };
        let query = parser.or()?;
        match parser.tokens.get(parser.at) {
            None => Ok(query),
            Some(t) => Err(format!("unexpected {t:?} after a complete query")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Str(String),
    Op(&'static str),
    Open,
    Close,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' => {
                chars.next();
                tokens.push(if c == '(' { Token::Open } else { Token::Close });
            }
            '\'' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err("a string is not closed with '".to_string()),
                        Some('\\') => match chars.next() {
                            Some(e @ ('\'' | '\\')) => s.push(e),
                            other => {
                                return Err(format!("unknown escape \\{}", other.unwrap_or(' ')));
                            }
                        },
                        Some('\'') => break,
                        Some(c) => s.push(c),
                    }
                }
                tokens.push(Token::Str(s));
            }
            '=' => {
                chars.next();
                tokens.push(Token::Op("="));
            }
            '!' => {
                chars.next();
                if chars.next() != Some('=') {
                    return Err("'!' must be followed by '='".to_string());
                }
                tokens.push(Token::Op("!="));
            }
            '<' | '>' => return Err(format!("the operator {c} is not supported here")),
            c if c.is_alphanumeric() || c == '_' => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if !(c.is_alphanumeric() || c == '_' || c == '.') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
            c => return Err(format!("unexpected character {c:?}")),
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn peek_word(&self, word: &str) -> bool {
        matches!(self.tokens.get(self.at), Some(Token::Word(w)) if w == word)
    }

    fn or(&mut self) -> Result<Query, String> {
        let mut left = self.and()?;
        while self.peek_word("or") {
            self.at += 1;
            left = Query::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Query, String> {
        let mut left = self.unary()?;
        while self.peek_word("and") {
            self.at += 1;
            left = Query::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Query, String> {
        if self.peek_word("not") {
            self.at += 1;
            return Ok(Query::Not(Box::new(self.unary()?)));
        }
        if self.tokens.get(self.at) == Some(&Token::Open) {
            self.at += 1;
            let inner = self.or()?;
            if self.next() != Some(Token::Close) {
                return Err("a '(' is not closed".to_string());
            }
            return Ok(inner);
        }
        self.term()
    }

    fn term(&mut self) -> Result<Query, String> {
        match self.next() {
            Some(Token::Str(value)) => match self.next() {
                Some(Token::Word(w)) if w == "in" => match self.next() {
                    Some(Token::Word(f)) if f == "parents" => Ok(Query::InParents(value)),
                    other => Err(format!(
                        "'{value}' in {other:?}: only 'ID' in parents is supported"
                    )),
                },
                other => Err(format!("expected 'in' after '{value}', found {other:?}")),
            },
            Some(Token::Word(field)) => {
                let op = self
                    .next()
                    .ok_or_else(|| format!("{field} without an operator"))?;
                let value = self
                    .next()
                    .ok_or_else(|| format!("{field} without a value"))?;
                match (field.as_str(), op, value) {
                    ("name", Token::Op(op), Token::Str(v)) => Ok(Query::NameEq(v, op == "=")),
                    ("name", Token::Word(w), Token::Str(v)) if w == "contains" => {
                        Ok(Query::NameContains(v))
                    }
                    ("mimeType", Token::Op(op), Token::Str(v)) => {
                        Ok(Query::MimeTypeEq(v, op == "="))
                    }
                    ("trashed", Token::Op("="), Token::Word(v)) if v == "true" || v == "false" => {
                        Ok(Query::Trashed(v == "true"))
                    }
                    (field, op, value) => Err(format!(
                        "the term {field} {op:?} {value:?} is not supported here"
                    )),
                }
            }
            other => Err(format!("expected a term, found {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_a_backup_client_sends() {
        let q = Query::parse("name = 'a\\'b' and 'appDataFolder' in parents and trashed = false")
            .expect("parse");
        assert_eq!(
            q,
            Query::And(
                Box::new(Query::And(
                    Box::new(Query::NameEq("a'b".into(), true)),
                    Box::new(Query::InParents("appDataFolder".into()))
                )),
                Box::new(Query::Trashed(false))
            )
        );
        assert!(Query::parse("not (name contains 'x' or name != 'y')").is_ok());
        assert_eq!(Query::parse("").expect("empty"), Query::All);
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        for q in [
            "name = 'x",
            "size > 3",
            "name",
            "fullText contains 'x'",
            "'x' in owners",
            "name = 'a' and",
            "(name = 'a'",
        ] {
            assert!(Query::parse(q).is_err(), "{q}");
        }
    }
}
