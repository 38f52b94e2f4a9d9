//! The document and the server agree on every input constraint. The test walks the generated
//! OpenAPI document: for each declared constraint on a parameter or on the deposit's amount it
//! sends one request just inside (must be 2xx) and one just outside (must be a 4xx the operation
//! documents, with a `code` that response lists). Patterns are checked against a sweep of
//! printable ASCII, so a pattern that is too loose or too strict on either side fails.
//!
//! The constraints the document must declare are listed in `REQUIRED`: removing one from the
//! document fails here, and removing its check from the server fails the "outside" request.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request};
use axum::Router;
use http_body_util::BodyExt;
use payment_core::memory::MemoryStore;
use payment_core::Payments;
use payment_http::{openapi, router, ApiState, Limits};
use rust_decimal::Decimal;
use serde_json::Value;
use tower::ServiceExt;

/// `(path, method, parameter or "amount", keywords)` the document must declare.
const REQUIRED: &[(&str, &str, &str, &[&str])] = &[
    ("/accounts", "post", "X-User-Id", &["required", "pattern", "minLength", "maxLength"]),
    ("/accounts/deposit", "post", "X-User-Id", &["required", "pattern", "minLength", "maxLength"]),
    ("/accounts/deposit", "post", "Idempotency-Key", &["pattern", "minLength", "maxLength"]),
    ("/accounts/deposit", "post", "amount", &["exclusiveMinimum", "maximum", "multipleOf", "pattern"]),
    ("/accounts/balance", "get", "X-User-Id", &["required", "pattern", "minLength", "maxLength"]),
    ("/accounts/ledger", "get", "X-User-Id", &["required", "pattern", "minLength", "maxLength"]),
    ("/accounts/ledger", "get", "limit", &["type", "minimum", "maximum"]),
    ("/accounts/ledger", "get", "before", &["pattern"]),
];

fn document() -> Value {
    serde_json::to_value(openapi::document()).expect("the document serialises")
}

/// Follows a local `$ref`.
fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
        Some(name) => &document["components"]["schemas"][name],
        None => schema,
    }
}

// ---------------------------------------------------------------------------------------------
// A small regular-expression matcher for the subset the document uses (anchors, literals,
// escapes, classes with ranges, groups, alternation, `? * + {m,n}`), so the test needs no extra
// dependency and checks the pattern independently of the server's own matcher.

#[derive(Debug)]
enum Node {
    Char(char),
    Class {
        ranges: Vec<(char, char)>,
        negated: bool,
    },
    /// A group or the whole pattern: one sequence per alternative.
    Alternatives(Vec<Vec<Item>>),
}

#[derive(Debug)]
struct Item {
    node: Node,
    min: usize,
    max: usize,
}

struct Pattern(Vec<Item>);

impl Pattern {
    fn parse(pattern: &str) -> Pattern {
        let inner = pattern
            .strip_prefix('^')
            .and_then(|p| p.strip_suffix('$'))
            .unwrap_or_else(|| panic!("{pattern}: the document's patterns are anchored at both ends"));
        let mut chars = inner.chars().peekable();
        let node = parse_alternatives(&mut chars);
        assert!(chars.next().is_none(), "{pattern}: unbalanced parenthesis");
        Pattern(vec![Item { node, min: 1, max: 1 }])
    }

    fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        ends(&self.0, &text, 0).contains(&text.len())
    }
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// Sequences separated by `|`, up to a `)` or the end.
fn parse_alternatives(chars: &mut Chars) -> Node {
    let mut branches = vec![parse_sequence(chars)];
    while chars.peek() == Some(&'|') {
        chars.next();
        branches.push(parse_sequence(chars));
    }
    Node::Alternatives(branches)
}

fn parse_sequence(chars: &mut Chars) -> Vec<Item> {
    let mut items = Vec::new();
    while let Some(&c) = chars.peek() {
        if c == ')' || c == '|' {
            break;
        }
        chars.next();
        let node = match c {
            '\\' => Node::Char(chars.next().expect("escape")),
            '[' => parse_class(chars),
            '(' => {
                let group = parse_alternatives(chars);
                assert_eq!(chars.next(), Some(')'));
                group
            }
            '.' | '^' | '$' => panic!("unsupported pattern syntax {c:?}"),
            c => Node::Char(c),
        };
        let (min, max) = match chars.peek() {
            Some('?') => (0, 1),
            Some('*') => (0, usize::MAX),
            Some('+') => (1, usize::MAX),
            Some('{') => {
                chars.next();
                let spec: String = chars.by_ref().take_while(|c| *c != '}').collect();
                let (min, max) = spec.split_once(',').unwrap_or((&spec, &spec));
                let min = min.parse().expect("repeat minimum");
                (min, if max.is_empty() { usize::MAX } else { max.parse().expect("repeat maximum") })
            }
            _ => (1, 1),
        };
        if matches!(chars.peek(), Some('?' | '*' | '+')) {
            chars.next();
        }
        items.push(Item { node, min, max });
    }
    items
}

fn parse_class(chars: &mut Chars) -> Node {
    let negated = chars.peek() == Some(&'^');
    if negated {
        chars.next();
    }
    let mut ranges = Vec::new();
    loop {
        let c = match chars.next().expect("unterminated class") {
            ']' => break,
            '\\' => chars.next().expect("escape"),
            c => c,
        };
        let mut lookahead = chars.clone();
        if lookahead.next() == Some('-') && lookahead.peek().is_some_and(|n| *n != ']') {
            chars.next();
            let end = chars.next().expect("range end");
            ranges.push((c, end));
        } else {
            ranges.push((c, c));
        }
    }
    Node::Class { ranges, negated }
}

/// Every position a match of `items` starting at `start` can end at.
fn ends(items: &[Item], text: &[char], start: usize) -> BTreeSet<usize> {
    let mut current = BTreeSet::from([start]);
    for item in items {
        let mut reached = if item.min == 0 { current.clone() } else { BTreeSet::new() };
        let mut frontier = current;
        for count in 1..=item.max.min(text.len() + 1) {
            let next: BTreeSet<usize> = frontier.iter().flat_map(|&p| node_ends(&item.node, text, p)).collect();
            if next.is_empty() {
                break;
            }
            if count >= item.min {
                reached.extend(next.iter().copied());
            }
            // An item that can match empty text stops growing once it reaches nothing new.
            if next == frontier {
                break;
            }
            frontier = next;
        }
        current = reached;
    }
    current
}

fn node_ends(node: &Node, text: &[char], at: usize) -> BTreeSet<usize> {
    match node {
        Node::Char(c) => text.get(at).filter(|t| *t == c).map(|_| at + 1).into_iter().collect(),
        Node::Class { ranges, negated } => text
            .get(at)
            .filter(|t| ranges.iter().any(|(lo, hi)| (lo..=hi).contains(t)) != *negated)
            .map(|_| at + 1)
            .into_iter()
            .collect(),
        Node::Alternatives(branches) => branches.iter().flat_map(|items| ends(items, text, at)).collect(),
    }
}

#[test]
fn the_matcher_reads_the_subset_it_claims() {
    let id = Pattern::parse("^[A-Za-z0-9._:-]{1,3}$");
    assert!(id.matches("a.-") && id.matches("Z") && !id.matches("") && !id.matches("abcd") && !id.matches("a b"));
    let number = Pattern::parse(r"^[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$");
    for ok in ["1", "10.50", "1e2", "1.005E-2"] {
        assert!(number.matches(ok), "{ok}");
    }
    for bad in ["", "1.", ".5", "1e", "-1", "1,5", " 1"] {
        assert!(!number.matches(bad), "{bad}");
    }
    let either = Pattern::parse("^(ab|c[0-9]?)(x|)$");
    for ok in ["ab", "c", "c7", "abx", "c1x"] {
        assert!(either.matches(ok), "{ok}");
    }
    for bad in ["", "a", "b", "abc", "c12", "xx", "abxx"] {
        assert!(!either.matches(bad), "{bad}");
    }
}

// ---------------------------------------------------------------------------------------------
// Cases: a value, whether the document accepts it, and which keyword it probes.

struct Case {
    /// `None`: the parameter is left out.
    value: Option<String>,
    inside: bool,
    probe: String,
}

fn case(value: impl Into<String>, inside: bool, probe: &str) -> Case {
    Case { value: Some(value.into()), inside, probe: probe.to_string() }
}

/// Whether the document accepts `text` for a string schema.
fn string_accepts(schema: &Value, text: &str) -> bool {
    let len = text.chars().count() as u64;
    schema["pattern"].as_str().is_none_or(|p| Pattern::parse(p).matches(text))
        && schema["minLength"].as_u64().is_none_or(|min| len >= min)
        && schema["maxLength"].as_u64().is_none_or(|max| len <= max)
}

fn decimal_of(value: &Value) -> Option<Decimal> {
    value.as_number().and_then(|n| n.to_string().parse().ok())
}

/// Whether the document accepts `value` for a numeric schema.
fn number_accepts(schema: &Value, value: Decimal) -> bool {
    let bound = |keyword: &str| decimal_of(&schema[keyword]);
    bound("minimum").is_none_or(|m| value >= m)
        && bound("exclusiveMinimum").is_none_or(|m| value > m)
        && bound("maximum").is_none_or(|m| value <= m)
        && bound("exclusiveMaximum").is_none_or(|m| value < m)
        && bound("multipleOf").is_none_or(|m| (value / m).fract().is_zero())
        && (schema["type"] != "integer" || value.fract().is_zero())
}

/// A text that satisfies the pattern, with its length stretched to `len` using its first
/// accepted filler character.
fn of_length(schema: &Value, len: usize) -> String {
    let filler = ['x', 'k', '1', 'a'].into_iter().find(|c| string_accepts(schema, &c.to_string())).unwrap_or('x');
    std::iter::repeat_n(filler, len).collect()
}

/// Boundary cases for each string keyword, and the printable-ASCII sweep for the pattern.
fn string_cases(schema: &Value, base: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    if let Some(max) = schema["maxLength"].as_u64() {
        let max = max as usize;
        cases.push(case(of_length(schema, max), true, "maxLength"));
        cases.push(case(of_length(schema, max + 1), false, "maxLength + 1"));
    }
    if let Some(min) = schema["minLength"].as_u64() {
        let min = min as usize;
        cases.push(case(of_length(schema, min.max(1)), true, "minLength"));
        if min > 0 {
            cases.push(case(of_length(schema, min - 1), false, "minLength - 1"));
        }
    }
    if schema["pattern"].is_string() {
        let (head, tail) = base.split_at(1);
        for c in (' '..='~').chain(['\t', 'é']) {
            let text = format!("{head}{c}{tail}");
            cases.push(Case {
                inside: string_accepts(schema, &text),
                value: Some(text),
                probe: format!("pattern {c:?}"),
            });
        }
        for extra in ["", "0", "00", "01"] {
            let text = format!("{base}{extra}");
            cases.push(Case { inside: string_accepts(schema, &text), value: Some(text), probe: "pattern".into() });
        }
        let inside = cases.iter().filter(|c| c.inside).count();
        assert!(inside > 0 && inside < cases.len(), "the sweep has both sides of {schema}");
    }
    cases
}

fn integer_cases(schema: &Value) -> Vec<Case> {
    let mut cases = Vec::new();
    if let Some(min) = schema["minimum"].as_i64() {
        cases.push(case(min.to_string(), true, "minimum"));
        cases.push(case((min - 1).to_string(), false, "minimum - 1"));
    }
    if let Some(max) = schema["maximum"].as_i64() {
        cases.push(case(max.to_string(), true, "maximum"));
        cases.push(case((max + 1).to_string(), false, "maximum + 1"));
    }
    if schema["type"] == "integer" {
        for text in ["1.5", "abc", "+2", " 2", ""] {
            cases.push(case(text, false, "type integer"));
        }
    }
    cases
}

/// The amount: the number form's bounds and step, and the string form's pattern with the same
/// value rules (its description says so).
fn amount_cases(document: &Value, body_schema: &Value) -> Vec<Case> {
    let forms = resolve(document, body_schema)["properties"]["amount"]["oneOf"].as_array().cloned().unwrap_or_default();
    let number = forms.iter().find(|f| f["type"] == "number").cloned().unwrap_or(Value::Null);
    let text = forms.iter().find(|f| f["type"] == "string").cloned().unwrap_or(Value::Null);
    let mut cases = Vec::new();
    let step = decimal_of(&number["multipleOf"]);
    if let Some(step) = step {
        cases.push(case(step.to_string(), true, "multipleOf"));
        cases.push(case((step / Decimal::TEN).to_string(), false, "multipleOf / 10"));
        cases.push(case((Decimal::ONE + step / Decimal::TEN).to_string(), false, "1 + multipleOf / 10"));
    }
    let step = step.unwrap_or(Decimal::ONE);
    if let Some(min) = decimal_of(&number["exclusiveMinimum"]) {
        cases.push(case(min.to_string(), false, "exclusiveMinimum"));
        cases.push(case((min + step).to_string(), true, "exclusiveMinimum + step"));
        cases.push(case((min - step).to_string(), false, "exclusiveMinimum - step"));
    }
    if let Some(max) = decimal_of(&number["maximum"]) {
        cases.push(case(max.to_string(), true, "maximum"));
        cases.push(case((max + step).to_string(), false, "maximum + step"));
    }
    // Every number case again as a string: the same value rules, and the string's pattern.
    let as_strings: Vec<Case> = cases
        .iter()
        .filter_map(|c| {
            let value = c.value.as_ref()?;
            // A validator applies no number keyword to a string: the pattern alone decides.
            Some(Case {
                value: Some(serde_json::to_string(value).ok()?),
                inside: string_accepts(&text, value),
                probe: format!("string {}", c.probe),
            })
        })
        .collect();
    cases.extend(as_strings);
    if text["pattern"].is_string() {
        for candidate in [
            "10.50",
            "1e2",
            "1.005E2",
            "0001.10",
            "12345e-2",
            " 1",
            "1 ",
            "1,5",
            "+1",
            "-1",
            "1.",
            ".5",
            "1e",
            "0x10",
            "NaN",
            "abc",
            "",
            "0",
            "00",
            "0.0",
            "0.00",
            "0.000",
            "-0",
            "0e5",
            "0.001",
            "0.01",
            "0.1",
            "0.10",
            "0.99",
            "01",
            "10.500",
            "1.0",
            "999999999999.99",
            "1000000000000",
            "1000000000000.0",
            "1000000000000.00",
            "1000000000000.01",
            "1000000000001",
            "10000000000000",
        ] {
            let value = candidate.parse::<Decimal>().ok().or_else(|| Decimal::from_scientific(candidate).ok());
            // The pattern alone decides (no number keyword applies to a string); it must also
            // agree with the number form's rules wherever it admits a value.
            let inside = string_accepts(&text, candidate);
            if inside {
                assert!(value.is_some_and(|v| number_accepts(&number, v)), "the pattern admits {candidate:?}");
            }
            cases.push(Case {
                value: Some(serde_json::to_string(candidate).unwrap_or_default()),
                inside,
                probe: format!("string pattern {candidate:?}"),
            });
        }
    }
    for c in &mut cases {
        // Number cases: the document's number form decides.
        if let Some(v) = c.value.as_ref().filter(|v| !v.starts_with('"')) {
            c.inside = v.parse::<Decimal>().is_ok_and(|d| number_accepts(&number, d));
        }
    }
    cases
}

// ---------------------------------------------------------------------------------------------
// Requests.

/// A request to `path` that is valid in every respect except `(name, value)`.
struct Probe<'a> {
    path: &'a str,
    method: &'a str,
    name: &'a str,
    location: &'a str,
    value: Option<&'a str>,
}

const USER: &str = "u1";

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

async fn send(app: &Router, probe: &Probe<'_>) -> (u16, Value) {
    let user = if probe.name == "X-User-Id" { probe.value } else { Some(USER) };
    let mut uri = probe.path.to_string();
    if probe.location == "query" {
        if let Some(value) = probe.value {
            uri = format!("{uri}?{}={}", probe.name, percent_encode(value));
        }
    }
    let mut request = Request::builder().method(probe.method.to_uppercase().as_str()).uri(uri);
    let headers = request.headers_mut().expect("a valid builder");
    if let Some(user) = user {
        headers.insert("x-user-id", HeaderValue::from_bytes(user.as_bytes()).expect("a header value"));
    }
    if probe.location == "header" && probe.name != "X-User-Id" {
        if let Some(value) = probe.value {
            let name = HeaderName::from_bytes(probe.name.as_bytes()).expect("a header name");
            headers.insert(name, HeaderValue::from_bytes(value.as_bytes()).expect("a header value"));
        }
    }
    let body = if probe.method == "post" && probe.path == "/accounts/deposit" {
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let amount = if probe.name == "amount" { probe.value.unwrap_or("null") } else { "1" };
        Body::from(format!(r#"{{"amount": {amount}}}"#))
    } else {
        Body::empty()
    };
    let response = app.clone().oneshot(request.body(body).expect("a request")).await.expect("infallible");
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// A fresh application where the probe's caller already has an account (unless the probe creates
/// it), so that only the probed value can make the answer 4xx.
async fn app_for(probe: &Probe<'_>) -> Router {
    let state = ApiState::new(Payments::new(MemoryStore::new()));
    let app = router(state, Limits::default());
    if probe.path != "/accounts" {
        let user = if probe.name == "X-User-Id" { probe.value } else { Some(USER) };
        let create = Probe { path: "/accounts", method: "post", name: "X-User-Id", location: "header", value: user };
        send(&app, &create).await;
    }
    app
}

fn check(document: &Value, operation: &Value, probe: &Probe<'_>, case: &Case, (status, body): (u16, Value)) {
    let what = format!("{} {} {}={:?} ({})", probe.method, probe.path, probe.name, probe.value, case.probe);
    if case.inside {
        assert!((200..300).contains(&status), "{what}: the document accepts it, the server answered {status} {body}");
        return;
    }
    assert!((400..500).contains(&status), "{what}: the document refuses it, the server answered {status} {body}");
    let response = &operation["responses"][status.to_string()];
    assert!(response.is_object(), "{what}: {status} is not documented for this operation");
    let schema = &response["content"]["application/problem+json"]["schema"];
    let parts = schema["allOf"].as_array().cloned().unwrap_or_default();
    assert!(
        parts.iter().any(|p| resolve(document, p) == &document["components"]["schemas"]["Problem"]),
        "{what}: the {status} response is a Problem"
    );
    let codes: Vec<&Value> =
        parts.iter().filter_map(|p| p["properties"]["code"]["enum"].as_array()).flatten().collect();
    assert!(
        codes.contains(&&body["code"]),
        "{what}: code {} is not among {codes:?} documented for {status}",
        body["code"]
    );
}

#[tokio::test]
async fn every_declared_constraint_holds_on_both_sides() {
    let document = document();
    let mut probed = BTreeSet::new();
    let mut sent = 0;
    let paths = document["paths"].as_object().cloned().unwrap_or_default();
    for (path, item) in &paths {
        for (method, operation) in item.as_object().into_iter().flatten() {
            let mut targets: Vec<(String, String, Vec<Case>, Value)> = Vec::new();
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let (name, location) =
                    (parameter["name"].as_str().unwrap_or_default(), parameter["in"].as_str().unwrap_or_default());
                let schema = &parameter["schema"];
                let base = match name {
                    "X-User-Id" => USER,
                    "before" => "p1",
                    _ => "key1",
                };
                let mut cases = match schema["type"].as_str() {
                    Some("integer") => integer_cases(schema),
                    _ => string_cases(schema, base),
                };
                cases.push(Case { value: None, inside: parameter["required"] != true, probe: "absent".into() });
                targets.push((name.to_string(), location.to_string(), cases, parameter.clone()));
            }
            let body = &operation["requestBody"]["content"]["application/json"]["schema"];
            if !body.is_null() {
                targets.push(("amount".into(), "body".into(), amount_cases(&document, body), body.clone()));
            }
            for (name, location, cases, declared) in targets {
                let mut keywords: BTreeSet<String> = BTreeSet::new();
                let schema = if location == "body" { Value::Null } else { declared["schema"].clone() };
                keywords.extend(schema.as_object().into_iter().flatten().map(|(k, _)| k.clone()));
                if declared["required"] == true {
                    keywords.insert("required".into());
                }
                if location == "body" {
                    let forms = resolve(&document, &declared)["properties"]["amount"]["oneOf"].clone();
                    for form in forms.as_array().into_iter().flatten() {
                        keywords.extend(form.as_object().into_iter().flatten().map(|(k, _)| k.clone()));
                    }
                }
                probed.insert((path.clone(), method.clone(), name.clone(), keywords));
                for case in &cases {
                    let probe = Probe { path, method, name: &name, location: &location, value: case.value.as_deref() };
                    let app = app_for(&probe).await;
                    let reply = send(&app, &probe).await;
                    check(&document, operation, &probe, case, reply);
                    sent += 1;
                }
                let sides: BTreeSet<bool> = cases.iter().map(|c| c.inside).collect();
                assert_eq!(sides.len(), 2, "{method} {path} {name}: probed inside and outside");
            }
        }
    }
    for (path, method, name, keywords) in REQUIRED {
        let declared = probed.iter().find(|(p, m, n, _)| p == path && m == method && n == name);
        let Some((.., found)) = declared else { panic!("{method} {path}: {name} is not declared") };
        for keyword in *keywords {
            assert!(found.contains(*keyword), "{method} {path} {name}: `{keyword}` missing from the document");
        }
    }
    assert!(sent > 500, "{sent} probes");
}

#[test]
fn every_problem_response_names_codes_the_server_has() {
    let document = document();
    let all: Vec<Value> =
        document["components"]["schemas"]["ErrorCode"]["enum"].as_array().cloned().unwrap_or_default();
    assert!(all.len() >= 19, "ErrorCode lists every code");
    let mut seen = 0;
    for (path, item) in document["paths"].as_object().into_iter().flatten() {
        for (method, operation) in item.as_object().into_iter().flatten() {
            for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                let status: u16 = status.parse().unwrap_or(0);
                if status < 400 {
                    continue;
                }
                let schema = &response["content"]["application/problem+json"]["schema"];
                let codes: Vec<&Value> = schema["allOf"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["properties"]["code"]["enum"].as_array())
                    .flatten()
                    .collect();
                assert!(!codes.is_empty(), "{method} {path} {status}: problem+json with its codes");
                for code in codes {
                    assert!(all.contains(code), "{method} {path} {status}: {code} is an ErrorCode");
                    let known = payment_http::ErrorCode::ALL.iter().find(|c| c.as_str() == code);
                    assert_eq!(
                        known.map(|c| c.status().as_u16()),
                        Some(status),
                        "{method} {path}: {code} is answered {status}"
                    );
                    seen += 1;
                }
            }
        }
    }
    assert!(seen > 20, "error responses are documented");
}
