//! Attribute paths: how a profile's attributes, nested ones included, are
//! seen as columns.
//!
//! A *path* names a column: a top-level attribute's name, or names joined
//! with `.` down through object values (`address.city`). [`flatten`] lists
//! every `(path, value)` pair of a profile; it is the definition. [`any_at`]
//! answers "does some value at this path satisfy…" without listing the
//! rest, and is exactly `flatten` filtered on the path (a test pins it);
//! filter evaluation uses it, and a column index can be built from
//! `flatten`.
//!
//! - An `Object` value is listed at its own path, then each member under
//!   `path.key`, recursively.
//! - An `Objects` value (an array of objects) is listed at its own path,
//!   then each element's members under `path.key`: a path through an array
//!   of objects has one value per element that holds it (a path may repeat).
//! - Every other value (strings, numbers, booleans, times, string arrays,
//!   locations) is a leaf, listed at its path.
//! - Keys may themselves contain `.`: `a.b` is then both the top-level
//!   attribute named `a.b` and the member `b` of the object `a`. They are
//!   one column, whose values are the union.

use super::{AttrObject, AttrValue};

/// The separator of path segments.
pub const SEP: char = '.';

/// Calls `out` with every `(path, value)` pair of `attrs`, parents before
/// their members, in key order (array elements in order).
pub fn flatten<'a>(attrs: &'a AttrObject, out: &mut dyn FnMut(&str, &'a AttrValue)) {
    let mut path = String::new();
    walk(attrs, &mut path, out);
}

/// What [`flatten`] lists for the one top-level attribute `name` holding
/// `value` (a change to one attribute touches only these pairs).
pub fn flatten_value<'a>(
    name: &str,
    value: &'a AttrValue,
    out: &mut dyn FnMut(&str, &'a AttrValue),
) {
    let mut path = String::new();
    member(name, value, &mut path, out);
}

fn walk<'a>(map: &'a AttrObject, path: &mut String, out: &mut dyn FnMut(&str, &'a AttrValue)) {
    for (k, v) in map {
        member(k, v, path, out);
    }
}

fn member<'a>(
    key: &str,
    v: &'a AttrValue,
    path: &mut String,
    out: &mut dyn FnMut(&str, &'a AttrValue),
) {
    let len = path.len();
    if len > 0 {
        path.push(SEP);
    }
    path.push_str(key);
    out(path, v);
    match v {
        AttrValue::Object(m) => walk(m, path, out),
        AttrValue::Objects(list) => list.iter().for_each(|m| walk(m, path, out)),
        _ => {}
    }
    path.truncate(len);
}

/// Whether `pred` holds for some value `flatten` lists at `path` (stops at
/// the first). A path without `.` is one map lookup.
pub fn any_at(attrs: &AttrObject, path: &str, pred: &mut dyn FnMut(&AttrValue) -> bool) -> bool {
    if attrs.get(path).is_some_and(&mut *pred) {
        return true;
    }
    for (i, _) in path.match_indices(SEP) {
        let (head, rest) = (&path[..i], &path[i + 1..]);
        let found = match attrs.get(head) {
            Some(AttrValue::Object(m)) => any_at(m, rest, pred),
            Some(AttrValue::Objects(list)) => list.iter().any(|m| any_at(m, rest, pred)),
            _ => false,
        };
        if found {
            return true;
        }
    }
    false
}

/// Every value at `path`, in no particular order (tests and tools; see
/// [`any_at`]).
pub fn values_at<'a>(attrs: &'a AttrObject, path: &str) -> Vec<&'a AttrValue> {
    let mut out = Vec::new();
    flatten(attrs, &mut |p, v| {
        if p == path {
            out.push(v)
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(pairs: &[(&str, AttrValue)]) -> AttrObject {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), v.clone()))
            .collect()
    }

    fn s(v: &str) -> AttrValue {
        AttrValue::Str(v.into())
    }

    fn sample() -> AttrObject {
        obj(&[
            ("plan", s("gold")),
            ("a.b", s("top")),
            (
                "a",
                AttrValue::Object(obj(&[("b", s("nested")), ("c", AttrValue::Num(1.0))])),
            ),
            (
                "kids",
                AttrValue::Objects(vec![
                    obj(&[
                        ("name", s("x")),
                        ("toy", AttrValue::Object(obj(&[("kind", s("ball"))]))),
                    ]),
                    obj(&[("name", s("y"))]),
                    obj(&[]),
                ]),
            ),
        ])
    }

    #[test]
    fn flatten_lists_parents_leaves_and_array_elements() {
        let a = sample();
        let mut got = Vec::new();
        flatten(&a, &mut |p, v| got.push((p.to_string(), v.clone())));
        let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "a",
                "a.b",
                "a.c",
                "a.b",
                "kids",
                "kids.name",
                "kids.toy",
                "kids.toy.kind",
                "kids.name",
                "plan"
            ]
        );
    }

    #[test]
    fn any_at_is_flatten_filtered_on_the_path() {
        let a = sample();
        let mut paths = Vec::new();
        flatten(&a, &mut |p, _| paths.push(p.to_string()));
        paths.extend(["nope", "a.", ".a", "kids.toy.kind.x", "plan.x", ""].map(String::from));
        for p in paths {
            let mut want: Vec<AttrValue> = values_at(&a, &p).into_iter().cloned().collect();
            let mut got = Vec::new();
            assert!(!any_at(&a, &p, &mut |v| {
                got.push(v.clone());
                false
            }));
            let key = |v: &AttrValue| format!("{v:?}");
            want.sort_by_key(key);
            got.sort_by_key(key);
            assert_eq!(got, want, "{p}");
        }
        assert!(any_at(&a, "kids.name", &mut |v| *v == s("y")));
        assert!(any_at(&a, "a.b", &mut |v| *v == s("top")));
        assert!(any_at(&a, "a.b", &mut |v| *v == s("nested")));
    }
}
