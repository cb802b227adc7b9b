//! Named params of a JSON-RPC call (JSON-RPC 2.0 §4.2, by name), each taken at most once:
//! whatever is left when a method has taken what it knows was not understood, and is refused
//! rather than ignored (a misspelt `from` must not quietly widen a token's window).

use serde_json::{Map, Value};

/// A params rule broken: JSON-RPC's `-32602`, the message naming the param and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamError(pub String);

pub fn invalid(message: impl Into<String>) -> ParamError {
    ParamError(message.into())
}

pub struct Params<'a> {
    rest: Map<String, Value>,
    method: &'a str,
}

impl<'a> Params<'a> {
    /// `params` absent or `null` is no params; an array (by position) is refused.
    pub fn new(params: Option<&Value>, method: &'a str) -> Result<Self, ParamError> {
        match params {
            None | Some(Value::Null) => Ok(Self {
                rest: Map::new(),
                method,
            }),
            Some(Value::Object(map)) => Ok(Self {
                rest: map.clone(),
                method,
            }),
            Some(_) => Err(invalid(format!(
                "params of {method} must be an object of named params"
            ))),
        }
    }

    /// The param, `null` counting as absent.
    fn take(&mut self, name: &str) -> Option<Value> {
        self.rest.remove(name).filter(|v| !v.is_null())
    }

    pub fn string(&mut self, name: &str) -> Result<Option<String>, ParamError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(invalid(format!("{name} must be a string"))),
        }
    }

    /// A boolean, `false` when absent.
    pub fn flag(&mut self, name: &str) -> Result<bool, ParamError> {
        match self.take(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(b),
            Some(_) => Err(invalid(format!("{name} must be true or false"))),
        }
    }

    /// A whole number in `0..=max`; `unit` names what it counts in the message.
    pub fn unsigned(
        &mut self,
        name: &str,
        unit: &str,
        max: i64,
    ) -> Result<Option<i64>, ParamError> {
        let Some(value) = self.take(name) else {
            return Ok(None);
        };
        match value.as_i64() {
            Some(n) if (0..=max).contains(&n) => Ok(Some(n)),
            Some(n) if n < 0 => Err(invalid(format!("{name} must not be negative"))),
            Some(_) => Err(invalid(format!("{name} must be at most {max}"))),
            None if value.as_u64().is_some() => {
                Err(invalid(format!("{name} must be at most {max}")))
            }
            None => Err(invalid(format!("{name} must be a whole number of {unit}"))),
        }
    }

    /// Fails on the first param nobody took.
    pub fn finish(self) -> Result<(), ParamError> {
        match self.rest.keys().next() {
            None => Ok(()),
            Some(name) => Err(invalid(format!("{} takes no param {name:?}", self.method))),
        }
    }
}
