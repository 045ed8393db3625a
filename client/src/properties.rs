//! Java `.properties` files, as Kafka Connect reads its worker and connector configs.
//!
//! `key=value`, `key: value` or `key value`; `#` and `!` comment lines; a trailing `\`
//! continues the line; `\t`, `\n`, `\uXXXX` and `\<char>` escapes. Keys keep their file
//! order (an [`IndexMap`]) so configs echo back as they were written.

use indexmap::IndexMap;

/// Connector and worker configs: string keys and values, in insertion order.
pub type Props = IndexMap<String, String>;

/// Parses the text of a properties file.
pub fn parse(text: &str) -> Props {
    let mut out = Props::new();
    let mut lines = text.lines();
    while let Some(first) = lines.next() {
        let mut logical = first.trim_start().to_string();
        if logical.is_empty() || logical.starts_with('#') || logical.starts_with('!') {
            continue;
        }
        // A line ending in an odd number of backslashes continues on the next.
        while ends_with_continuation(&logical) {
            logical.pop();
            match lines.next() {
                Some(next) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let (key, value) = split_key_value(&logical);
        out.insert(unescape(key), unescape(value));
    }
    out
}

/// A comma-separated value (Kafka's LIST type): trimmed items, empty ones dropped; empty
/// when the key is absent.
pub fn list(props: &Props, key: &str) -> Vec<String> {
    props
        .get(key)
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Reads and parses a properties file.
pub fn load(path: &std::path::Path) -> std::io::Result<Props> {
    Ok(parse(&std::fs::read_to_string(path)?))
}

fn ends_with_continuation(line: &str) -> bool {
    line.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1
}

fn split_key_value(line: &str) -> (&str, &str) {
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '=' | ':' => return (&line[..i], line[i + 1..].trim_start()),
            c if c.is_whitespace() => {
                let rest = line[i..].trim_start();
                let rest = rest
                    .strip_prefix('=')
                    .or_else(|| rest.strip_prefix(':'))
                    .unwrap_or(rest);
                return (&line[..i], rest.trim_start());
            }
            _ => {}
        }
    }
    (line, "")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => out.push_str(&hex),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_java_properties() {
        let p = parse(
            "# comment\n! also\nname=local-file-source\nconnector.class : FileStreamSource\n\
             tasks.max 1\nfile=/tmp/a\\\n  b.txt\nkey\\=x=1\nunicode=\\u00e9t\\u00e9\nempty=\n",
        );
        assert_eq!(p["name"], "local-file-source");
        assert_eq!(p["connector.class"], "FileStreamSource");
        assert_eq!(p["tasks.max"], "1");
        assert_eq!(p["file"], "/tmp/ab.txt");
        assert_eq!(p["key=x"], "1");
        assert_eq!(p["unicode"], "été");
        assert_eq!(p["empty"], "");
        assert_eq!(p.keys().next().map(String::as_str), Some("name"));
    }
}
