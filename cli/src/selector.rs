//! Label selectors typed with `-l`, in kubectl's syntax, parsed into a typed [`Selector`].
//!
//! Requirements are separated by commas and must all hold:
//!
//! | written              | holds when                                   |
//! | -------------------- | -------------------------------------------- |
//! | `app=web`, `app==web`| the label `app` is `web`                     |
//! | `app!=web`           | the label `app` is absent or not `web`       |
//! | `app`                | the label `app` is present                   |
//! | `!app`               | the label `app` is absent                    |
//! | `env in (prod,dev)`  | the label `env` is one of the values         |
//! | `env notin (prod)`   | the label `env` is absent or none of them    |

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use herd_crds::names::{check_label_key, check_label_value};
use herd_crds::validation::{FieldErrors, FieldPath};

/// Every requirement must hold; an empty selector selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
}

/// One requirement on one label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operator {
    Equals(String),
    NotEquals(String),
    Exists,
    DoesNotExist,
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
}

/// Why a selector could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid label selector {selector:?}: {problem}; write requirements such as \
     app=web,tier!=db,env or \"env in (prod,dev)\""
)]
pub struct SelectorError {
    pub selector: String,
    pub problem: String,
}

impl Selector {
    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl Requirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match &self.operator {
            Operator::Equals(expected) => value == Some(expected),
            Operator::NotEquals(expected) => value != Some(expected),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::In(values) => value.is_some_and(|v| values.contains(v)),
            Operator::NotIn(values) => value.is_none_or(|v| !values.contains(v)),
        }
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(text: &str) -> Result<Self, SelectorError> {
        let fail = |problem: String| SelectorError {
            selector: text.to_owned(),
            problem,
        };
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let mut requirements = Vec::new();
        for (index, term) in split_terms(text).map_err(&fail)?.iter().enumerate() {
            let requirement =
                parse_term(term).map_err(|p| fail(format!("requirement {}: {p}", index + 1)))?;
            check(&requirement).map_err(|p| fail(format!("requirement {}: {p}", index + 1)))?;
            requirements.push(requirement);
        }
        Ok(Self { requirements })
    }
}

/// Splits at the commas that are not inside `( … )`.
fn split_terms(text: &str) -> Result<Vec<String>, String> {
    let (mut terms, mut current, mut depth) = (Vec::new(), String::new(), 0u32);
    for c in text.chars() {
        match c {
            '(' if depth > 0 => return Err("nested parentheses".into()),
            '(' => depth += 1,
            ')' if depth == 0 => return Err("')' without '('".into()),
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if depth > 0 {
        return Err("'(' without ')'".into());
    }
    terms.push(current);
    Ok(terms.into_iter().map(|t| t.trim().to_owned()).collect())
}

fn parse_term(term: &str) -> Result<Requirement, String> {
    let requirement = |key: &str, operator| Requirement {
        key: key.trim().to_owned(),
        operator,
    };
    if term.is_empty() {
        return Err("is empty".into());
    }
    if let Some(key) = term.strip_prefix('!') {
        return Ok(requirement(key, Operator::DoesNotExist));
    }
    if let Some(open) = term.find('(') {
        return parse_set(term, open);
    }
    if let Some((key, value)) = term.split_once("!=") {
        return Ok(requirement(key, Operator::NotEquals(value.trim().into())));
    }
    if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(requirement(key, Operator::Equals(value.trim().into())));
    }
    Ok(requirement(term, Operator::Exists))
}

/// `key in (a,b)` or `key notin (a,b)`; `open` is the index of `(`.
fn parse_set(term: &str, open: usize) -> Result<Requirement, String> {
    let Some(inner) = term[open + 1..].strip_suffix(')') else {
        return Err("nothing may follow ')'".into());
    };
    let head: Vec<&str> = term[..open].split_whitespace().collect();
    let [key, operator] = head[..] else {
        return Err(format!(
            "{term:?} must read `key in (values)` or `key notin (values)`"
        ));
    };
    let values: BTreeSet<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
    if values.iter().any(String::is_empty) {
        return Err("a value in ( … ) is empty".into());
    }
    let operator = match operator {
        "in" => Operator::In(values),
        "notin" => Operator::NotIn(values),
        other => return Err(format!("unknown operator {other:?}; use in or notin")),
    };
    Ok(Requirement {
        key: key.to_owned(),
        operator,
    })
}

/// Label keys and values follow the Kubernetes rules, as in manifests.
fn check(requirement: &Requirement) -> Result<(), String> {
    let mut errors = FieldErrors::default();
    let path = FieldPath::root();
    check_label_key(&requirement.key, &path, &mut errors);
    match &requirement.operator {
        Operator::Equals(value) | Operator::NotEquals(value) => {
            check_label_value(value, &path, &mut errors)
        }
        Operator::In(values) | Operator::NotIn(values) => values
            .iter()
            .for_each(|value| check_label_value(value, &path, &mut errors)),
        Operator::Exists | Operator::DoesNotExist => {}
    }
    match errors.into_vec().into_iter().next() {
        Some(error) => Err(error.message),
        None => Ok(()),
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let terms: Vec<String> = self.requirements.iter().map(ToString::to_string).collect();
        f.write_str(&terms.join(","))
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |values: &BTreeSet<String>| values.iter().cloned().collect::<Vec<_>>().join(",");
        match &self.operator {
            Operator::Equals(v) => write!(f, "{}={v}", self.key),
            Operator::NotEquals(v) => write!(f, "{}!={v}", self.key),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::In(values) => write!(f, "{} in ({})", self.key, set(values)),
            Operator::NotIn(values) => write!(f, "{} notin ({})", self.key, set(values)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn selects(selector: &str, pairs: &[(&str, &str)]) -> bool {
        selector
            .parse::<Selector>()
            .unwrap()
            .matches(&labels(pairs))
    }

    #[test]
    fn kubectl_syntax_is_parsed_into_requirements() {
        let selector: Selector = "app=web, tier!=db,env,!legacy,zone in (a, b),rack notin (r1)"
            .parse()
            .unwrap();
        assert_eq!(selector.requirements.len(), 6);
        assert_eq!(
            selector.requirements[0],
            Requirement {
                key: "app".into(),
                operator: Operator::Equals("web".into())
            }
        );
        assert_eq!(
            selector.to_string(),
            "app=web,tier!=db,env,!legacy,zone in (a,b),rack notin (r1)"
        );
        assert_eq!(
            "app==web".parse::<Selector>().unwrap().requirements[0].operator,
            Operator::Equals("web".into())
        );
    }

    #[test]
    fn requirements_match_like_kubernetes() {
        assert!(selects("app=web", &[("app", "web")]));
        assert!(!selects("app=web", &[]));
        assert!(
            selects("app!=web", &[]),
            "!= also holds when the label is absent"
        );
        assert!(!selects("app!=web", &[("app", "web")]));
        assert!(selects("env", &[("env", "")]));
        assert!(selects("!env", &[("app", "x")]));
        assert!(selects("env in (a,b)", &[("env", "b")]));
        assert!(!selects("env in (a,b)", &[]));
        assert!(selects("env notin (a,b)", &[]));
        assert!(selects("app=web,env", &[("app", "web"), ("env", "p")]));
        assert!(!selects("app=web,env", &[("app", "web")]));
        assert!(selects("", &[]), "an empty selector selects everything");
    }

    #[test]
    fn mistakes_are_named_with_an_example_of_the_syntax() {
        for (bad, problem) in [
            ("app=web,", "requirement 2: is empty"),
            ("env in (a,b", "'(' without ')'"),
            ("env in a,b)", "')' without '('"),
            ("env within (a)", "unknown operator \"within\""),
            ("env in (a,)", "a value in ( … ) is empty"),
            ("Bad Key=x", "requirement 1: key \"Bad Key\" is not valid"),
            ("app=no way", "requirement 1: value \"no way\" is not valid"),
        ] {
            let error = bad.parse::<Selector>().unwrap_err().to_string();
            assert!(error.contains(problem), "{bad}: {error}");
            assert!(error.contains("such as app=web"), "{error}");
        }
    }
}
