//! `{{name}}` templates in paths, headers and JSON bodies.
//!
//! A string is text with `{{name}}` placeholders, each replaced by the variable's text (a JSON string's content,
//! any other value as JSON). In a JSON body, a string that is nothing but one placeholder takes the variable's JSON
//! value, so `"{{quantity}}"` stays a number. Object keys are templates too.

use serde_json::Value;
use std::collections::BTreeMap;

/// A journey's variables.
pub type Vars = BTreeMap<String, Value>;

/// A variable's text: a string's content, any other value as JSON.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Each placeholder's name in `s`, in order; an unclosed `{{` or an empty name is an error.
pub fn names(s: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| format!("{s:?} opens {{{{ without closing it"))?;
        let name = after[..end].trim();
        if name.is_empty() || name.chars().any(|c| !(c.is_ascii_alphanumeric() || c == '_')) {
            return Err(format!("{s:?} has {{{{{}}}}}; a variable name is letters, digits and _", &after[..end]));
        }
        out.push(name);
        rest = &after[end + 2..];
    }
    Ok(out)
}

/// Every placeholder name in a JSON value's strings and keys.
pub fn names_in_json(v: &Value) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    match v {
        Value::String(s) => out.extend(names(s)?),
        Value::Array(a) => {
            for x in a {
                out.extend(names_in_json(x)?);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                out.extend(names(k)?);
                out.extend(names_in_json(x)?);
            }
        }
        _ => {}
    }
    Ok(out)
}

/// `s` with every placeholder replaced; an unknown variable is an error naming it.
pub fn render(s: &str, vars: &Vars) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| format!("{s:?} opens {{{{ without closing it"))?;
        let name = after[..end].trim();
        let v = vars.get(name).ok_or_else(|| format!("no variable {name} (in {s:?})"))?;
        out.push_str(&text(v));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A JSON value with every string and key rendered; a string that is one placeholder takes the variable's value.
pub fn render_json(v: &Value, vars: &Vars) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => {
            let trimmed = s.trim();
            let whole = trimmed.strip_prefix("{{").and_then(|r| r.strip_suffix("}}")).map(str::trim);
            match whole.filter(|n| !n.contains("{{") && !n.contains("}}")) {
                Some(name) => vars.get(name).cloned().ok_or_else(|| format!("no variable {name} (in {s:?})"))?,
                None => Value::String(render(s, vars)?),
            }
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| render_json(x, vars)).collect::<Result<_, _>>()?),
        Value::Object(o) => {
            let mut m = serde_json::Map::new();
            for (k, x) in o {
                m.insert(render(k, vars)?, render_json(x, vars)?);
            }
            Value::Object(m)
        }
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars() -> Vars {
        [("id".to_string(), json!("o-1")), ("qty".to_string(), json!(3))].into()
    }

    /// Goal: placeholders render as text in strings, keep their JSON type when alone in a body string, and unknown
    /// or malformed ones are errors that name them.
    #[test]
    fn renders_text_and_json() {
        assert_eq!(render("/orders/{{id}}/pay?n={{ qty }}", &vars()).unwrap(), "/orders/o-1/pay?n=3");
        let body = json!({"order": "{{id}}", "quantity": "{{qty}}", "note": "x{{qty}}", "{{id}}": [ "{{qty}}" ]});
        assert_eq!(
            render_json(&body, &vars()).unwrap(),
            json!({"order": "o-1", "quantity": 3, "note": "x3", "o-1": [3]})
        );
        assert!(render("/{{nope}}", &vars()).unwrap_err().contains("no variable nope"));
        assert!(names("/{{id").unwrap_err().contains("without closing"));
        assert!(names("/{{a b}}").is_err());
        assert_eq!(names("{{a}}-{{b_2}}").unwrap(), vec!["a", "b_2"]);
        let mut found = names_in_json(&body).unwrap();
        found.sort_unstable();
        assert_eq!(found, vec!["id", "id", "qty", "qty", "qty"]);
    }
}
