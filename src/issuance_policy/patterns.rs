//! TEMPORARY stand-in, replaced by the patterns branch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    Dns,
    Uri,
    Ip,
    Email,
    Text,
}
#[derive(Clone, Debug)]
pub struct Pattern {
    source: String,
}
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatternError(pub String);
impl Pattern {
    pub fn compile(_kind: FieldKind, source: &str) -> Result<Pattern, PatternError> {
        Ok(Pattern {
            source: source.into(),
        })
    }
    pub fn matches(&self, value: &str, namespace: &str, name: &str) -> bool {
        let p = self
            .source
            .replace("{namespace}", namespace)
            .replace("{name}", name);
        glob(p.as_bytes(), value.as_bytes())
    }
    pub fn source(&self) -> &str {
        &self.source
    }
}
fn glob(p: &[u8], v: &[u8]) -> bool {
    match p.first() {
        None => v.is_empty(),
        Some(b'*') => (1..=v.len()).any(|i| !v[..i].contains(&b'.') && glob(&p[1..], &v[i..])),
        Some(c) => v.first() == Some(c) && glob(&p[1..], &v[1..]),
    }
}
