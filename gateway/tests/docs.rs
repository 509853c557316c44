//! The reference documents cannot drift from the code: every route of the route table is in
//! `docs/openapi.yaml` (and nothing else is), every example there validates against its schema,
//! and every error code is in both documents.

use dogear_gateway::error::Code;
use dogear_gateway::rest::ROUTES;
use serde_json::Value;
use std::path::Path;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn openapi() -> Value {
    serde_yaml::from_str(&read("docs/openapi.yaml")).expect("docs/openapi.yaml parses")
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

#[test]
fn every_route_is_in_the_openapi_document_and_nothing_else() {
    let doc = openapi();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    for r in ROUTES {
        let m = r.method.as_str().to_ascii_lowercase();
        assert!(
            paths.get(r.template).is_some_and(|p| p.get(&m).is_some()),
            "{} {} is served but missing from docs/openapi.yaml",
            r.method,
            r.template
        );
    }
    for (path, item) in paths {
        for m in METHODS.iter().filter(|m| item.get(**m).is_some()) {
            assert!(
                ROUTES
                    .iter()
                    .any(|r| r.template == path && r.method.as_str().eq_ignore_ascii_case(m)),
                "docs/openapi.yaml has {m} {path}, which the server does not serve"
            );
        }
    }
}

#[test]
fn every_error_code_is_documented() {
    let doc = openapi();
    let listed: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let codes: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(listed, codes, "ErrorCode in docs/openapi.yaml");
    let api = read("docs/api.md");
    for c in Code::ALL {
        let row = format!("| `{}` | {} |", c.as_str(), c.status().as_u16());
        assert!(api.contains(&row), "docs/api.md lacks the row {row}");
    }
}

/// Every `example` and `examples.*.value` of a media type validates against its schema.
#[test]
fn examples_validate_against_their_schemas() {
    let doc = openapi();
    let mut checked = 0;
    let mut media = Vec::new();
    collect_media(&doc, "", &mut media);
    for (at, m) in media {
        let Some(schema) = m.get("schema") else {
            continue;
        };
        let mut examples: Vec<(String, &Value)> = Vec::new();
        if let Some(e) = m.get("example") {
            examples.push((at.clone(), e));
        }
        if let Some(all) = m.get("examples").and_then(Value::as_object) {
            for (name, e) in all {
                examples.push((format!("{at}/examples/{name}"), &e["value"]));
            }
        }
        for (where_, e) in examples {
            if let Err(why) = validate(&doc, schema, e, "") {
                panic!("example at {where_} does not validate: {why}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} examples checked");
}

/// The validator itself must fail on what it should: otherwise the test above proves nothing.
#[test]
fn the_validator_refuses_what_is_wrong() {
    let doc = openapi();
    let schema = serde_json::json!({"$ref": "#/components/schemas/ProgressWrite"});
    let good = serde_json::json!({
        "event_id": "0193a7c4-0000-7000-8000-000000000001",
        "device_id": "0193a7c4-0000-7000-8000-000000000002",
        "percent": 10, "client_ts": "2026-11-23T07:28:28.123Z"});
    assert!(validate(&doc, &schema, &good, "").is_ok());
    for (field, bad) in [
        ("percent", serde_json::json!(140)),
        ("percent", serde_json::json!("ten")),
        ("event_id", serde_json::json!("not-a-uuid")),
        ("client_ts", serde_json::json!("yesterday")),
        ("status", serde_json::json!("lost")),
    ] {
        let mut v = good.clone();
        v[field] = bad;
        assert!(validate(&doc, &schema, &v, "").is_err(), "{field}");
    }
    let mut v = good.clone();
    v.as_object_mut().unwrap().remove("device_id");
    assert!(validate(&doc, &schema, &v, "").is_err(), "required");
    let patch = serde_json::json!({"$ref": "#/components/schemas/BookPatch"});
    assert!(validate(&doc, &patch, &serde_json::json!({"colour": "red"}), "").is_err());
}

fn collect_media<'a>(v: &'a Value, at: &str, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Object(content)) = map.get("content") {
                for (ty, m) in content {
                    out.push((format!("{at}/content/{ty}"), m));
                }
            }
            for (k, child) in map {
                if k != "content" {
                    collect_media(child, &format!("{at}/{k}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                collect_media(child, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// The part of JSON Schema 2020-12 the document uses: `$ref`, `type` (one or several),
/// `enum`, `properties`, `required`, `additionalProperties`, `items`, `oneOf`, `minimum`,
/// `maximum`, `minLength`, `maxLength`, `pattern` (anchored character-class patterns only),
/// and the formats `uuid` and `date-time`. Anything else in a schema fails loudly, so the
/// document cannot use a keyword this checker would silently skip.
fn validate(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    const KNOWN: [&str; 17] = [
        "$ref",
        "type",
        "enum",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "oneOf",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "description",
        "default",
        "contentMediaType",
    ];
    let s = schema
        .as_object()
        .ok_or(format!("{at}: schema is not an object"))?;
    if let Some(k) = s.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!(
            "{at}: schema keyword {k} is not understood by this checker"
        ));
    }
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let target = r
            .strip_prefix("#/")
            .ok_or(format!("{at}: only local $refs"))?
            .split('/')
            .fold(doc, |node, part| &node[part]);
        if target.is_null() {
            return Err(format!("{at}: $ref {r} points nowhere"));
        }
        return validate(doc, target, v, at);
    }
    if let Some(one_of) = s.get("oneOf").and_then(Value::as_array) {
        let fits = one_of
            .iter()
            .filter(|o| validate(doc, o, v, at).is_ok())
            .count();
        if fits != 1 {
            return Err(format!("{at}: matches {fits} of oneOf, not exactly one"));
        }
    }
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => return Err(format!("{at}: bad type")),
        };
        let ok = types.iter().any(|t| match *t {
            "null" => v.is_null(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            _ => false,
        });
        if !ok {
            return Err(format!("{at}: {v} is not of type {types:?}"));
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        return Err(format!("{at}: {v} is not one of {e:?}"));
    }
    if let Some(n) = v.as_f64() {
        if s.get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n < m)
        {
            return Err(format!("{at}: {n} is below the minimum"));
        }
        if s.get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n > m)
        {
            return Err(format!("{at}: {n} is above the maximum"));
        }
    }
    if let Some(text) = v.as_str() {
        let len = text.chars().count() as u64;
        if s.get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len < m)
            || s.get("maxLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| len > m)
        {
            return Err(format!("{at}: {text:?} has the wrong length"));
        }
        match s.get("format").and_then(Value::as_str) {
            Some("uuid") if uuid::Uuid::parse_str(text).is_err() => {
                return Err(format!("{at}: {text:?} is not a uuid"));
            }
            Some("date-time") if !is_date_time(text) => {
                return Err(format!("{at}: {text:?} is not an RFC 3339 date-time"));
            }
            _ => {}
        }
        if let Some(p) = s.get("pattern").and_then(Value::as_str)
            && !matches_pattern(p, text)
        {
            return Err(format!("{at}: {text:?} does not match {p}"));
        }
    }
    if let Some(obj) = v.as_object() {
        let props = s.get("properties").and_then(Value::as_object);
        for req in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = req.as_str().unwrap_or_default();
            if !obj.contains_key(name) {
                return Err(format!("{at}: required {name} is missing"));
            }
        }
        for (k, child) in obj {
            let sub = format!("{at}/{k}");
            match (props.and_then(|p| p.get(k)), s.get("additionalProperties")) {
                (Some(ps), _) => validate(doc, ps, child, &sub)?,
                (None, Some(Value::Bool(false))) => {
                    return Err(format!("{at}: {k} is not allowed"));
                }
                (None, Some(extra @ Value::Object(_))) => validate(doc, extra, child, &sub)?,
                (None, _) => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, child) in arr.iter().enumerate() {
            validate(doc, items, child, &format!("{at}/{i}"))?;
        }
    }
    Ok(())
}

fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    s.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && (s.ends_with('Z') || s[19..].contains(['+', '-']))
}

/// `^[chars]{n}$` and `^[chars]{n,m}$`: the only patterns the document uses.
fn matches_pattern(p: &str, text: &str) -> bool {
    let inner = p
        .strip_prefix("^[")
        .and_then(|r| r.strip_suffix('$'))
        .unwrap_or_else(|| panic!("pattern {p} is not one this checker reads"));
    let (class, count) = inner
        .split_once("]{")
        .unwrap_or_else(|| panic!("pattern {p} is not one this checker reads"));
    let count = count.trim_end_matches('}');
    let (lo, hi) = match count.split_once(',') {
        Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
        None => (count.parse().unwrap(), count.parse().unwrap()),
    };
    let mut allowed = Vec::new();
    let cs: Vec<char> = class.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        if i + 2 < cs.len() && cs[i + 1] == '-' {
            allowed.push(cs[i]..=cs[i + 2]);
            i += 3;
        } else {
            allowed.push(cs[i]..=cs[i]);
            i += 1;
        }
    }
    let n = text.chars().count();
    (lo..=hi).contains(&n) && text.chars().all(|c| allowed.iter().any(|r| r.contains(&c)))
}
