//! Partial responses: the `fields` parameter (`nextPageToken, files(id,name,size)`,
//! `files/id`, `*`), applied to the full JSON answer as Google's servers do.

use std::collections::BTreeMap;

use serde_json::Value;

/// A parsed field mask: each selected key, with the mask for its value (`None`: all of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mask(BTreeMap<String, Option<Mask>>);

impl Mask {
    /// Parses a mask; the error says what is wrong.
    pub(crate) fn parse(text: &str) -> Result<Mask, String> {
        let chars: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
        let mut at = 0;
        let mask = parse_list(&chars, &mut at)?;
        if at != chars.len() {
            return Err(format!("unexpected {:?} at {at}", chars[at]));
        }
        Ok(mask)
    }

    /// Keeps only what the mask selects.
    pub(crate) fn apply(&self, value: &Value) -> Value {
        match value {
            Value::Array(items) => Value::Array(items.iter().map(|v| self.apply(v)).collect()),
            Value::Object(map) => {
                if self.0.contains_key("*") {
                    return value.clone();
                }
                let mut out = serde_json::Map::new();
                for (key, sub) in &self.0 {
                    if let Some(v) = map.get(key) {
                        out.insert(
                            key.clone(),
                            sub.as_ref().map_or_else(|| v.clone(), |m| m.apply(v)),
                        );
                    }
                }
                Value::Object(out)
            }
            other => other.clone(),
        }
    }

    fn merge(&mut self, path: &[String], sub: Option<Mask>) {
        let (first, rest) = path.split_first().expect("a path has a name");
        if rest.is_empty() {
            match (self.0.get_mut(first), sub) {
                (Some(Some(existing)), Some(sub)) => existing.0.extend(sub.0),
                (Some(existing), None) => *existing = None,
                (Some(None), Some(_)) => {}
                (None, sub) => {
                    self.0.insert(first.clone(), sub);
                }
            }
            return;
        }
        let entry = self
            .0
            .entry(first.clone())
            .or_insert_with(|| Some(Mask(BTreeMap::new())));
        if let Some(inner) = entry {
            inner.merge(rest, sub);
        }
    }
}

fn parse_list(chars: &[char], at: &mut usize) -> Result<Mask, String> {
    let mut mask = Mask(BTreeMap::new());
    loop {
        let mut path = vec![String::new()];
        while let Some(&c) = chars.get(*at) {
            if c.is_alphanumeric() || c == '_' || c == '*' {
                path.last_mut().expect("path").push(c);
            } else if c == '/' {
                path.push(String::new());
            } else {
                break;
            }
            *at += 1;
        }
        if path.iter().any(String::is_empty) {
            return Err(format!("an empty field name at {at}"));
        }
        let sub = if chars.get(*at) == Some(&'(') {
            *at += 1;
            let sub = parse_list(chars, at)?;
            if chars.get(*at) != Some(&')') {
                return Err("a '(' is not closed".to_string());
            }
            *at += 1;
            Some(sub)
        } else {
            None
        };
        mask.merge(&path, sub);
        match chars.get(*at) {
            Some(',') => *at += 1,
            _ => return Ok(mask),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn selects_what_is_asked() {
        let full = json!({"kind": "drive#fileList", "nextPageToken": "t", "files": [
            {"id": "1", "name": "a", "size": "3", "kind": "drive#file"},
            {"id": "2", "name": "b", "size": "4", "kind": "drive#file"}]});
        let mask = Mask::parse("nextPageToken, files(id,name)").expect("parse");
        assert_eq!(
            mask.apply(&full),
            json!({"nextPageToken": "t", "files": [{"id": "1", "name": "a"}, {"id": "2", "name": "b"}]})
        );
        let mask = Mask::parse("files/id,files/size").expect("parse");
        assert_eq!(
            mask.apply(&full),
            json!({"files": [{"id": "1", "size": "3"}, {"id": "2", "size": "4"}]})
        );
        assert_eq!(Mask::parse("*").expect("parse").apply(&full), full);
        assert_eq!(
            Mask::parse("files(*)").expect("parse").apply(&full),
            json!({"files": full["files"]})
        );
    }

    #[test]
    fn refuses_broken_masks() {
        for m in ["files(id", "files//id", ",", "files(id))"] {
            assert!(Mask::parse(m).is_err(), "{m}");
        }
    }
}
