//! Request bodies parsed with a bounded tree. A JSON tree costs far more memory than its text
//! (a 15.6 MB body of 540k empty messages took 450 MB as a `serde_json::Value`), so the parse
//! counts every value it builds and stops at `ParseLimits::max_values`, before the tree is
//! built; the count of messages or inputs is capped on top, as OpenAI caps its own.

use crate::error::GatewayError;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::Cell;
use std::fmt;

/// What one request body may hold.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    /// JSON values (objects, arrays, strings, numbers, ...) in the whole body.
    pub max_values: usize,
    /// Messages in a chat or Messages request, inputs in an embeddings request.
    pub max_items: usize,
}

/// Messages (and embeddings inputs) per request: OpenAI's own cap on embeddings inputs, and far
/// above any real conversation sent at once.
pub const DEFAULT_MAX_ITEMS: usize = 2048;
/// Values per body: room for `DEFAULT_MAX_ITEMS` rich messages plus large tool schemas, while a
/// tree of this many values stays around 10 MB.
pub const DEFAULT_MAX_VALUES: usize = 131_072;

impl Default for ParseLimits {
    fn default() -> Self {
        Self {
            max_values: DEFAULT_MAX_VALUES,
            max_items: DEFAULT_MAX_ITEMS,
        }
    }
}

/// Parses a body that must be a JSON object, with at most `limits.max_values` values in it.
pub fn parse_object(body: &[u8], limits: &ParseLimits) -> Result<Map<String, Value>, GatewayError> {
    let budget = Budget {
        left: Cell::new(limits.max_values),
        exceeded: Cell::new(false),
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = BoundedValue { budget: &budget }
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|err| {
            if budget.exceeded.get() {
                GatewayError::MalformedJson(format!(
                    "the request body holds more than {} JSON values; send less at once",
                    limits.max_values
                ))
            } else {
                GatewayError::MalformedJson(err.to_string())
            }
        })?;
    match value {
        Value::Object(object) => Ok(object),
        _ => Err(GatewayError::MalformedJson(
            "the request body must be a JSON object".to_owned(),
        )),
    }
}

/// Fails when an array field holds more than `max` items.
pub fn check_item_count(
    object: &Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<(), GatewayError> {
    match object.get(field) {
        Some(Value::Array(items)) if items.len() > max => Err(GatewayError::InvalidField {
            param: field.to_owned(),
            problem: crate::error::FieldProblem::InvalidValue,
            message: format!(
                "invalid '{field}': {} items, at most {max} are allowed in one request",
                items.len()
            ),
        }),
        _ => Ok(()),
    }
}

struct Budget {
    left: Cell<usize>,
    exceeded: Cell<bool>,
}

/// Builds a `Value` while counting down the shared budget; errors once it is spent.
#[derive(Clone, Copy)]
struct BoundedValue<'a> {
    budget: &'a Budget,
}

impl BoundedValue<'_> {
    fn spend<E: serde::de::Error>(&self) -> Result<(), E> {
        match self.budget.left.get() {
            0 => {
                self.budget.exceeded.set(true);
                Err(E::custom("too many JSON values"))
            }
            left => {
                self.budget.left.set(left - 1);
                Ok(())
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for BoundedValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BoundedValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Value, E> {
        self.spend()?;
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, value: String) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::String(value))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.spend()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.spend()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_values: usize) -> ParseLimits {
        ParseLimits {
            max_values,
            max_items: DEFAULT_MAX_ITEMS,
        }
    }

    #[test]
    fn parses_like_serde_json_within_the_budget() {
        let body = br#"{"model":"m","n":1,"t":0.5,"ok":true,"none":null,"messages":[{"role":"user","content":"hi"}]}"#;
        let parsed = parse_object(body, &limits(100)).expect("parses");
        let expected: Value = serde_json::from_slice(body).expect("valid");
        assert_eq!(Value::Object(parsed), expected);
    }

    #[test]
    fn a_body_past_the_value_budget_fails_before_its_tree_is_built() {
        let mut body = String::from(r#"{"model":"m","messages":["#);
        body.push_str(&vec!["{}"; 10_000].join(","));
        body.push_str("]}");
        let err = parse_object(body.as_bytes(), &limits(1_000)).expect_err("too many");
        assert!(
            err.to_string().contains("more than 1000 JSON values"),
            "{err}"
        );
        assert!(parse_object(body.as_bytes(), &limits(20_000)).is_ok());
    }

    #[test]
    fn malformed_and_non_object_bodies_are_errors() {
        assert!(parse_object(b"{\"a\":", &limits(10)).is_err());
        assert!(parse_object(b"[1]", &limits(10)).is_err());
        assert!(parse_object(b"{} trailing", &limits(10)).is_err());
    }

    #[test]
    fn item_counts_are_capped() {
        let object = parse_object(br#"{"messages":[1,2,3]}"#, &limits(10)).expect("parses");
        assert!(check_item_count(&object, "messages", 3).is_ok());
        let err = check_item_count(&object, "messages", 2).expect_err("over");
        assert!(err.to_string().contains("at most 2"), "{err}");
    }
}
