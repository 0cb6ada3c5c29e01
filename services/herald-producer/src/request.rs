//! Parsing and validating a `POST /send` body, form-encoded or JSON.

use herald_model::content::check_strings;
use herald_model::{Data, MAX_MESSAGE_BYTES, UserId};
use percent_encoding::percent_decode;
use serde::Deserialize;

/// A validated send request. `fromID` may be left out by a caller with a user token: the
/// sender is then the token's user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRequest {
    pub from_id: Option<UserId>,
    pub to: Recipients,
    pub message: String,
    pub content: Content,
}

/// Most recipients of one bulk send.
pub const MAX_RECIPIENTS: usize = 1000;

/// Who a send goes to: `toID`, or a JSON body's `toIDs` (1–[`MAX_RECIPIENTS`] distinct ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    One(UserId),
    Many(Vec<UserId>),
}

impl Recipients {
    /// Every recipient, in the order given.
    pub fn all(&self) -> &[UserId] {
        match self {
            Recipients::One(id) => std::slice::from_ref(id),
            Recipients::Many(ids) => ids,
        }
    }
}

/// The optional structured content of a send (see [`herald_model::content`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Content {
    pub title: Option<String>,
    pub url: Option<String>,
    pub category: Option<String>,
    /// JSON bodies only.
    pub data: Option<Data>,
}

/// The body formats `/send` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Form,
    Json,
}

impl BodyFormat {
    /// The format named by a `Content-Type` value (parameters such as `charset` are ignored).
    pub fn from_content_type(value: &str) -> Option<Self> {
        let media = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match media.as_str() {
            "application/x-www-form-urlencoded" => Some(Self::Form),
            "application/json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// What is wrong with a body; the text is returned to the client as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

fn bad(message: impl Into<String>) -> BadRequest {
    BadRequest(message.into())
}

/// Parses and validates a body of the given format.
pub fn parse(format: BodyFormat, body: &[u8]) -> Result<SendRequest, BadRequest> {
    let raw = match format {
        BodyFormat::Form => parse_form(body)?,
        BodyFormat::Json => parse_json(body)?,
    };
    validate(raw)
}

/// Fields as given, before validation.
#[derive(Debug, Default)]
struct RawFields {
    from_id: Option<IdInput>,
    to_id: Option<IdInput>,
    to_ids: Option<Vec<serde_json::Value>>,
    message: Option<String>,
    title: Option<String>,
    url: Option<String>,
    category: Option<String>,
    data: Option<Data>,
}

#[derive(Debug)]
enum IdInput {
    Text(String),
    Json(serde_json::Value),
}

fn parse_form(body: &[u8]) -> Result<RawFields, BadRequest> {
    let mut fields = RawFields::default();
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        let name = decode_component(name).map_err(|_| bad("form field name is not valid UTF-8"))?;
        let slot = match name.as_str() {
            "fromID" | "toID" | "message" | "title" | "url" | "category" => name,
            "data" => return Err(bad("data is accepted in JSON bodies only")),
            _ => continue,
        };
        let value = decode_component(value).map_err(|_| bad(format!("{slot} is not valid UTF-8")))?;
        let duplicate = match slot.as_str() {
            "fromID" => fields.from_id.replace(IdInput::Text(value)).is_some(),
            "toID" => fields.to_id.replace(IdInput::Text(value)).is_some(),
            "title" => fields.title.replace(value).is_some(),
            "url" => fields.url.replace(value).is_some(),
            "category" => fields.category.replace(value).is_some(),
            _ => fields.message.replace(value).is_some(),
        };
        if duplicate {
            return Err(bad(format!("{slot} is given more than once")));
        }
    }
    Ok(fields)
}

fn decode_component(raw: &[u8]) -> Result<String, std::str::Utf8Error> {
    let plus_as_space: Vec<u8> = raw.iter().map(|b| if *b == b'+' { b' ' } else { *b }).collect();
    percent_decode(&plus_as_space).decode_utf8().map(|s| s.into_owned())
}

#[derive(Deserialize)]
struct JsonBody<'a> {
    #[serde(rename = "fromID")]
    from_id: Option<serde_json::Value>,
    #[serde(rename = "toID")]
    to_id: Option<serde_json::Value>,
    #[serde(rename = "toIDs")]
    to_ids: Option<serde_json::Value>,
    message: Option<serde_json::Value>,
    title: Option<serde_json::Value>,
    url: Option<serde_json::Value>,
    category: Option<serde_json::Value>,
    #[serde(borrow)]
    data: Option<&'a serde_json::value::RawValue>,
}

fn parse_json(body: &[u8]) -> Result<RawFields, BadRequest> {
    // serde would also accept a JSON array for a struct: only an object is a valid body.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(bad("body is not a valid JSON object: expected `{`"));
    }
    let parsed: JsonBody =
        serde_json::from_slice(body).map_err(|e| bad(format!("body is not a valid JSON object: {e}")))?;
    let string = |field: &str, value: Option<serde_json::Value>| match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("{field} must be a string"))),
    };
    let data = match parsed.data {
        Some(raw) if raw.get() != "null" => Some(Data::compact(raw.get()).map_err(bad)?),
        _ => None,
    };
    let to_ids = match parsed.to_ids {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Array(ids)) => Some(ids),
        Some(_) => return Err(bad("toIDs must be an array of user ids")),
    };
    Ok(RawFields {
        from_id: parsed.from_id.filter(|v| !v.is_null()).map(IdInput::Json),
        to_id: parsed.to_id.filter(|v| !v.is_null()).map(IdInput::Json),
        to_ids,
        message: string("message", parsed.message)?,
        title: string("title", parsed.title)?,
        url: string("url", parsed.url)?,
        category: string("category", parsed.category)?,
        data,
    })
}

fn user_id(field: &str, input: Option<IdInput>) -> Result<UserId, BadRequest> {
    let invalid = || bad(UserId::rule_for(field));
    match input.ok_or_else(|| bad(format!("{field} is required")))? {
        IdInput::Text(s) => UserId::parse(s.trim()),
        IdInput::Json(serde_json::Value::Number(n)) => n.as_u64().filter(|id| *id > 0).map(UserId::from),
        // Surrounding whitespace is trimmed as a person may type it; inside, the rule applies.
        IdInput::Json(serde_json::Value::String(s)) => UserId::parse(s.trim()),
        IdInput::Json(_) => None,
    }
    .ok_or_else(invalid)
}

/// `toIDs`: 1–[`MAX_RECIPIENTS`] valid, distinct ids.
fn recipients(raw: Vec<serde_json::Value>) -> Result<Vec<UserId>, BadRequest> {
    if raw.is_empty() || raw.len() > MAX_RECIPIENTS {
        return Err(bad(format!("toIDs must hold 1 to {MAX_RECIPIENTS} user ids")));
    }
    let mut seen = std::collections::HashSet::with_capacity(raw.len());
    let mut ids = Vec::with_capacity(raw.len());
    for (i, value) in raw.into_iter().enumerate() {
        let id = user_id(&format!("toIDs[{i}]"), Some(IdInput::Json(value)))?;
        if !seen.insert(id.clone()) {
            return Err(bad(format!("toIDs[{i}] repeats a recipient: each may appear once")));
        }
        ids.push(id);
    }
    Ok(ids)
}

fn validate(raw: RawFields) -> Result<SendRequest, BadRequest> {
    let from_id = raw.from_id.map(|id| user_id("fromID", Some(id))).transpose()?;
    let to = match (raw.to_id, raw.to_ids) {
        (Some(_), Some(_)) => return Err(bad("give either toID or toIDs, not both")),
        (None, Some(ids)) => Recipients::Many(recipients(ids)?),
        (to_id, None) => Recipients::One(user_id("toID", to_id)?),
    };
    let message = raw.message.ok_or_else(|| bad("message is required"))?;
    if message.trim().is_empty() {
        return Err(bad("message must not be empty"));
    }
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(bad(format!("message is {} bytes; at most {MAX_MESSAGE_BYTES} are allowed", message.len())));
    }
    // An empty optional field is the same as none (a form's `title=`).
    let given = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    let content = Content {
        title: given(raw.title),
        url: given(raw.url).map(|u| u.trim().to_string()),
        category: given(raw.category).map(|c| c.trim().to_string()),
        data: raw.data,
    };
    check_strings(content.title.as_deref(), content.url.as_deref(), content.category.as_deref()).map_err(bad)?;
    Ok(SendRequest { from_id, to, message, content })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(format: BodyFormat, body: &str) -> SendRequest {
        parse(format, body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    fn err(format: BodyFormat, body: &[u8]) -> String {
        parse(format, body).unwrap_err().0
    }

    #[test]
    fn content_types() {
        assert_eq!(BodyFormat::from_content_type("application/json"), Some(BodyFormat::Json));
        assert_eq!(BodyFormat::from_content_type("Application/JSON; charset=utf-8"), Some(BodyFormat::Json));
        assert_eq!(
            BodyFormat::from_content_type("application/x-www-form-urlencoded;charset=UTF-8"),
            Some(BodyFormat::Form)
        );
        assert_eq!(BodyFormat::from_content_type("text/plain"), None);
        assert_eq!(BodyFormat::from_content_type(""), None);
    }

    #[test]
    fn parses_forms_like_curl_sends_them() {
        let r = ok(BodyFormat::Form, "fromID=1&toID=2&message=Hello+there%21%20%C3%A9&extra=x");
        assert_eq!(
            r,
            SendRequest {
                from_id: Some(1.into()),
                to: Recipients::One(2.into()),
                message: "Hello there! é".into(),
                content: Content::default()
            }
        );
    }

    #[test]
    fn parses_json_with_numbers_or_digit_strings() {
        let r = ok(BodyFormat::Json, r#"{"fromID":1,"toID":"2","message":"hey","other":[1,{"a":2}]}"#);
        assert_eq!(
            r,
            SendRequest {
                from_id: Some(1.into()),
                to: Recipients::One(2.into()),
                message: "hey".into(),
                content: Content::default()
            }
        );
        let no_sender = ok(BodyFormat::Json, r#"{"toID":2,"message":"hey"}"#);
        assert_eq!(no_sender.from_id, None, "fromID may be left out (a user token's sub)");
    }

    #[test]
    fn names_the_field_and_the_problem() {
        use BodyFormat::*;
        let cases: &[(BodyFormat, &[u8], &str)] = &[
            (Form, b"fromID=1&message=m", "toID is required"),
            (Form, b"fromID=1&toID=2", "message is required"),
            (Form, b"fromID=a+b&toID=2&message=m", "fromID must be 1-128 characters"),
            (Form, b"fromID=0&toID=2&message=m", "fromID must be 1-128 characters"),
            (Form, b"fromID=-3&toID=2&message=m", "fromID must be 1-128 characters"),
            (Form, b"fromID=1&toID=99999999999999999999999&message=m", "toID must be 1-128 characters"),
            (Form, b"fromID=1&toID=2&message=+++", "message must not be empty"),
            (Form, b"fromID=1&fromID=2&toID=2&message=m", "fromID is given more than once"),
            (Form, b"fromID=1&toID=2&message=%FF%FE", "message is not valid UTF-8"),
            (Json, b"{\"fromID\":1.5,\"toID\":2,\"message\":\"m\"}", "fromID must be 1-128 characters"),
            (Json, b"{\"fromID\":-1,\"toID\":2,\"message\":\"m\"}", "fromID must be 1-128 characters"),
            (Json, b"{\"fromID\":true,\"toID\":2,\"message\":\"m\"}", "fromID must be 1-128 characters"),
            (Json, b"{\"fromID\":1,\"toID\":2,\"message\":7}", "message must be a string"),
            (Json, b"{\"fromID\":1,\"toID\":null,\"message\":\"m\"}", "toID is required"),
            (Json, b"{\"fromID\":0,\"toID\":2,\"message\":\"m\"}", "fromID must be 1-128 characters"),
            (Json, b"{\"fromID\":1,\"fromID\":1,\"toID\":2,\"message\":\"m\"}", "duplicate field `fromID`"),
            (Json, b"[1,2,3]", "body is not a valid JSON object"),
            (Json, b"{\"fromID\":1", "body is not a valid JSON object"),
            (Json, b"\xff\xfe", "body is not a valid JSON object"),
            (Json, b"", "body is not a valid JSON object"),
        ];
        for (format, body, expect) in cases {
            let got = err(*format, body);
            assert!(got.contains(expect), "{}: got {got:?}, want {expect:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn text_ids_are_taken_in_forms_and_json() {
        let r = ok(BodyFormat::Form, "fromID=%20alice%40example.com&toID=u_8f3k2&message=hi");
        assert_eq!(r.from_id, UserId::parse("alice@example.com"));
        assert_eq!(r.to, Recipients::One(UserId::parse("u_8f3k2").unwrap()));
        // `+` in a form is a space: a `+` in an id is sent as %2B.
        assert!(err(BodyFormat::Form, b"toID=a+b&message=m").contains("toID must be 1-128 characters"));
        assert_eq!(ok(BodyFormat::Form, "toID=a%2Bb&message=m").to.all(), [UserId::parse("a+b").unwrap()]);
        let r = ok(BodyFormat::Json, r#"{"fromID":"alice","toID":" bob ","message":"hi"}"#);
        assert_eq!((r.from_id, r.to), (UserId::parse("alice"), Recipients::One(UserId::parse("bob").unwrap())));
        for bad in [r#""02""#, r#""+2""#, r#""..""#, r#""a/b""#, "0", r#""""#] {
            let body = format!(r#"{{"toID":{bad},"message":"m"}}"#);
            assert!(err(BodyFormat::Json, body.as_bytes()).contains("toID must be 1-128 characters"), "{bad}");
        }
    }

    #[test]
    fn bulk_sends_name_distinct_valid_recipients() {
        let r = ok(BodyFormat::Json, r#"{"fromID":"shop","toIDs":["alice",2," bob "],"message":"m"}"#);
        let want: Vec<UserId> = ["alice", "2", "bob"].iter().map(|i| UserId::parse(i).unwrap()).collect();
        assert_eq!(r.to, Recipients::Many(want));
        let thousand: Vec<String> = (1..=1000).map(|i| format!("u{i}")).collect();
        let body = serde_json::json!({"toIDs": thousand, "message": "m"}).to_string();
        assert_eq!(ok(BodyFormat::Json, &body).to.all().len(), 1000);
        let too_many: Vec<String> = (1..=1001).map(|i| format!("u{i}")).collect();
        let body = serde_json::json!({"toIDs": too_many, "message": "m"}).to_string();
        for (body, expect) in [
            (body.as_str(), "toIDs must hold 1 to 1000"),
            (r#"{"toIDs":[],"message":"m"}"#, "toIDs must hold 1 to 1000"),
            (r#"{"toIDs":"a","message":"m"}"#, "toIDs must be an array"),
            (r#"{"toIDs":["a","02"],"message":"m"}"#, "toIDs[1] must be 1-128 characters"),
            (r#"{"toIDs":["a","b","a"],"message":"m"}"#, "toIDs[2] repeats a recipient"),
            (r#"{"toIDs":["2",2],"message":"m"}"#, "toIDs[1] repeats a recipient"),
            (r#"{"toID":"a","toIDs":["b"],"message":"m"}"#, "either toID or toIDs"),
        ] {
            let got = err(BodyFormat::Json, body.as_bytes());
            assert!(got.contains(expect), "{body}: {got}");
        }
    }

    #[test]
    fn structured_content_is_optional_and_checked() {
        let r = ok(
            BodyFormat::Json,
            r#"{"toID":"a","message":"m","title":"T","url":"https://x.example/o","category":"orders","data":{ "b" : [1, 2] }}"#,
        );
        assert_eq!(r.content.title.as_deref(), Some("T"));
        assert_eq!(r.content.url.as_deref(), Some("https://x.example/o"));
        assert_eq!(r.content.category.as_deref(), Some("orders"));
        assert_eq!(r.content.data.as_ref().map(Data::get), Some(r#"{"b":[1,2]}"#));
        let r = ok(BodyFormat::Form, "toID=a&message=m&title=Hi+there&url=%2Fo%2F1&category=orders");
        assert_eq!((r.content.title.as_deref(), r.content.url.as_deref()), (Some("Hi there"), Some("/o/1")));
        let r = ok(BodyFormat::Form, "toID=a&message=m&title=&url=");
        assert_eq!(r.content, Content::default(), "empty is none");
        for (format, body, expect) in [
            (BodyFormat::Json, r#"{"toID":"a","message":"m","url":"javascript:alert(1)"}"#, "url must be"),
            (BodyFormat::Json, r#"{"toID":"a","message":"m","url":"//evil.example"}"#, "url must be"),
            (BodyFormat::Json, r#"{"toID":"a","message":"m","category":"Big"}"#, "category must be"),
            (BodyFormat::Json, r#"{"toID":"a","message":"m","title":7}"#, "title must be a string"),
            (BodyFormat::Json, r#"{"toID":"a","message":"m","data":[1]}"#, "data must be a JSON object"),
            (BodyFormat::Json, r#"{"toID":"a","message":"m","data":"x"}"#, "data must be a JSON object"),
            (BodyFormat::Form, "toID=a&message=m&data=%7B%7D", "data is accepted in JSON bodies only"),
        ] {
            let got = err(format, body.as_bytes());
            assert!(got.contains(expect), "{body}: {got}");
        }
        let long_title = format!(r#"{{"toID":"a","message":"m","title":"{}"}}"#, "é".repeat(257));
        assert!(err(BodyFormat::Json, long_title.as_bytes()).contains("title is longer than 256"));
    }

    #[test]
    fn message_size_is_bounded_in_bytes() {
        let at_limit = "é".repeat(MAX_MESSAGE_BYTES / 2);
        let body = serde_json::json!({"fromID": 1, "toID": 2, "message": at_limit}).to_string();
        assert_eq!(ok(BodyFormat::Json, &body).message.len(), MAX_MESSAGE_BYTES);
        let over = format!("{at_limit}x");
        let body = serde_json::json!({"fromID": 1, "toID": 2, "message": over}).to_string();
        assert!(err(BodyFormat::Json, body.as_bytes()).contains("at most 4096"));
    }

    #[test]
    fn deep_nesting_is_a_client_error_or_ignored_never_a_crash() {
        // As deep as a 16 KiB body allows, in a field we read: rejected.
        let depth = 8000;
        let deep = format!("{{\"fromID\":{}1{},\"toID\":2,\"message\":\"m\"}}", "[".repeat(depth), "]".repeat(depth));
        assert!(err(BodyFormat::Json, deep.as_bytes()).contains("body is not a valid JSON object"));
        // In a field we ignore: skipped without recursion trouble.
        let deep =
            format!("{{\"fromID\":1,\"toID\":2,\"message\":\"m\",\"x\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
        assert!(parse(BodyFormat::Json, deep.as_bytes()).is_ok());
    }
}
