//! Parsing attribute arguments into one raw configuration, [`Args`]:
//! every argument as written, each value parsed (durations, capacities,
//! choices) and spanned, duplicates rejected. Whether the arguments make
//! sense together is `validate`'s question.
//!
//! Every argument error is collected, so one compile reports all of them,
//! each spanned on the offending tokens. This module imports nothing from
//! the rest of the crate.

use proc_macro2::{Span, TokenStream};
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, LitStr, Token};

/// Which attribute is being expanded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Read,
    Write,
    Dedup,
}

impl Kind {
    pub(crate) fn attr_name(self) -> &'static str {
        match self {
            Kind::Read => "read_lock",
            Kind::Write => "write_lock",
            Kind::Dedup => "dedup",
        }
    }

    /// The `name = value` arguments this attribute accepts.
    fn accepted(self) -> &'static [&'static str] {
        match self {
            Kind::Read | Kind::Write => &[
                "key", "keys", "timeout", "on_busy", "registry", "guard", "crate",
            ],
            Kind::Dedup => &[
                "key",
                "ttl",
                "capacity",
                "in_flight",
                "keep_on_error",
                "on_duplicate",
                "registry",
                "crate",
            ],
        }
    }
}

/// What a lock attribute does when the lock is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnBusy {
    Wait,
    Skip,
}

/// What a duplicate does while the first call still runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InFlight {
    Skip,
    Wait,
}

/// A value together with the span of the argument that set it.
pub(crate) struct Spanned<T> {
    pub(crate) value: T,
    pub(crate) span: Span,
}

/// The typed configuration shared by all attributes.
pub(crate) struct Args {
    pub(crate) kind: Kind,
    /// The positional names, in the order written: one at most for
    /// `#[dedup]`, any number of distinct names for the locks.
    pub(crate) names: Vec<LitStr>,
    pub(crate) key: Option<Expr>,
    /// `keys = [a, b, ..]`: at least one key expression; spanned on `keys`.
    pub(crate) keys: Option<Spanned<Vec<Expr>>>,
    pub(crate) timeout: Option<Spanned<Duration>>,
    pub(crate) on_busy: Option<Spanned<OnBusy>>,
    pub(crate) registry: Option<Expr>,
    pub(crate) guard: Option<Ident>,
    pub(crate) krate: Option<syn::Path>,
    pub(crate) ttl: Option<Spanned<Duration>>,
    pub(crate) capacity: Option<Spanned<u64>>,
    pub(crate) in_flight: Option<Spanned<InFlight>>,
    pub(crate) keep_on_error: Option<Spanned<bool>>,
    pub(crate) on_duplicate: Option<Expr>,
    /// Span of the whole argument list, for errors about what is missing.
    pub(crate) span: Span,
}

/// One raw argument: a positional expression, or `name = value`.
enum RawArg {
    Positional(Expr),
    Named { name: Ident, value: Expr },
}

impl Parse for RawArg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let is_named = (input.peek(Ident) || input.peek(Token![crate]))
            && input.peek2(Token![=])
            && !input.peek2(Token![==]);
        if is_named {
            let name = if input.peek(Token![crate]) {
                let token: Token![crate] = input.parse()?;
                Ident::new("crate", token.span)
            } else {
                input.parse()?
            };
            input.parse::<Token![=]>()?;
            let value = input.parse()?;
            Ok(RawArg::Named { name, value })
        } else {
            Ok(RawArg::Positional(input.parse()?))
        }
    }
}

impl Args {
    /// Parses the argument tokens of `kind`.
    pub(crate) fn parse(kind: Kind, tokens: TokenStream) -> syn::Result<Args> {
        let span = if tokens.is_empty() {
            Span::call_site()
        } else {
            syn::spanned::Spanned::span(&tokens)
        };
        let raw = Punctuated::<RawArg, Token![,]>::parse_terminated.parse2(tokens)?;
        let mut args = Args {
            kind,
            names: Vec::new(),
            key: None,
            keys: None,
            timeout: None,
            on_busy: None,
            registry: None,
            guard: None,
            krate: None,
            ttl: None,
            capacity: None,
            in_flight: None,
            keep_on_error: None,
            on_duplicate: None,
            span,
        };
        let mut errors = Errors::default();
        for arg in raw {
            match arg {
                RawArg::Positional(expr) => errors.push(args.positional(expr)),
                RawArg::Named { name, value } => errors.push(args.named(&name, value)),
            }
        }
        errors.finish()?;
        Ok(args)
    }

    fn positional(&mut self, expr: Expr) -> syn::Result<()> {
        if let Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(lit),
            ..
        }) = &expr
        {
            if self.kind == Kind::Dedup && !self.names.is_empty() {
                return Err(syn::Error::new_spanned(
                    lit,
                    "the name is set more than once",
                ));
            }
            if lit.value().trim().is_empty() {
                return Err(syn::Error::new_spanned(lit, "the name must not be empty"));
            }
            if self.names.iter().any(|name| name.value() == lit.value()) {
                return Err(syn::Error::new_spanned(
                    lit,
                    format!("resource \"{}\" is named twice", lit.value()),
                ));
            }
            self.names.push(lit.clone());
            return Ok(());
        }
        if self.kind == Kind::Dedup {
            let span = syn::spanned::Spanned::span(&expr);
            return set(&mut self.key, expr, span, "key");
        }
        let message = match &expr {
            Expr::Path(path) if path.path.get_ident().is_some() => format!(
                "the resource name must be a string literal: `\"{}\"`; arguments are written `name = value`",
                quote::ToTokens::to_token_stream(&path.path)
            ),
            _ => "the resource name must be a string literal, such as `\"db\"`; other arguments are written `name = value`".to_owned(),
        };
        Err(syn::Error::new_spanned(expr, message))
    }

    fn named(&mut self, name: &Ident, value: Expr) -> syn::Result<()> {
        let accepted = self.kind.accepted();
        let text = name.to_string();
        if matches!(text.as_str(), "name" | "resource" | "scope") {
            return Err(syn::Error::new(
                name.span(),
                positional_name(self.kind, &value),
            ));
        }
        if !accepted.contains(&text.as_str()) {
            return Err(syn::Error::new(
                name.span(),
                unknown_argument(self.kind, &text, accepted),
            ));
        }
        let span = name.span();
        match text.as_str() {
            "key" => set(&mut self.key, value, span, "key"),
            "keys" => set_spanned(&mut self.keys, key_list(value)?, span, "keys"),
            "registry" => set(&mut self.registry, value, span, "registry"),
            "on_duplicate" => set(&mut self.on_duplicate, value, span, "on_duplicate"),
            "timeout" => set_spanned(
                &mut self.timeout,
                duration(&value, "timeout")?,
                span,
                "timeout",
            ),
            "ttl" => set_spanned(&mut self.ttl, duration(&value, "ttl")?, span, "ttl"),
            "capacity" => set_spanned(&mut self.capacity, capacity(&value)?, span, "capacity"),
            "keep_on_error" => set_spanned(
                &mut self.keep_on_error,
                flag(&value, "keep_on_error")?,
                span,
                "keep_on_error",
            ),
            "on_busy" => {
                let on_busy = choice(
                    &value,
                    "on_busy",
                    [("wait", OnBusy::Wait), ("skip", OnBusy::Skip)],
                )?;
                set_spanned(&mut self.on_busy, on_busy, span, "on_busy")
            }
            "in_flight" => {
                let in_flight = choice(
                    &value,
                    "in_flight",
                    [("skip", InFlight::Skip), ("wait", InFlight::Wait)],
                )?;
                set_spanned(&mut self.in_flight, in_flight, span, "in_flight")
            }
            "guard" => set(&mut self.guard, guard(&value)?, span, "guard"),
            "crate" => set(&mut self.krate, crate_path(&value)?, span, "crate"),
            _ => Err(syn::Error::new(
                span,
                unknown_argument(self.kind, &text, accepted),
            )),
        }
    }
}

/// The hint for `name = "db"`: the name is the first, unnamed argument.
fn positional_name(kind: Kind, value: &Expr) -> String {
    let attr = kind.attr_name();
    let (what, example) = match kind {
        Kind::Read | Kind::Write => ("resource", "db"),
        Kind::Dedup => ("scope", "jobs"),
    };
    let name = match value {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(lit),
            ..
        }) => lit.value(),
        _ => example.to_owned(),
    };
    let rest = if kind == Kind::Dedup { ", key" } else { "" };
    format!("the {what} name is positional: write `#[{attr}(\"{name}\"{rest})]`")
}

/// The key expressions of `keys = [a, b, ..]`; at least one.
fn key_list(value: Expr) -> syn::Result<Vec<Expr>> {
    let Expr::Array(list) = value else {
        return Err(syn::Error::new_spanned(
            value,
            "`keys` takes a list of key expressions in brackets, such as `keys = [from, to]`",
        ));
    };
    if list.elems.is_empty() {
        return Err(syn::Error::new(
            list.bracket_token.span.join(),
            "`keys` needs at least one key, such as `keys = [from, to]`",
        ));
    }
    Ok(list.elems.into_iter().collect())
}

/// The variable a `guard = name` argument binds.
fn guard(value: &Expr) -> syn::Result<Ident> {
    match value {
        Expr::Path(path) => path
            .path
            .get_ident()
            .cloned()
            .ok_or_else(|| guard_error(value)),
        _ => Err(guard_error(value)),
    }
}

/// The path a `crate = "path"` argument gives.
fn crate_path(value: &Expr) -> syn::Result<syn::Path> {
    let lit = string_lit(value, "crate", "a path such as \"::my_keylock\"")?;
    lit.parse::<syn::Path>().map_err(|_| {
        syn::Error::new_spanned(
            &lit,
            "`crate` must be a path to the keylock crate, such as \"::my_keylock\"",
        )
    })
}

/// `true` or `false`.
fn flag(value: &Expr, name: &str) -> syn::Result<bool> {
    match value {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Bool(flag),
            ..
        }) => Ok(flag.value),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{name}` takes `true` or `false`"),
        )),
    }
}

/// A duration parsed at compile time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Duration {
    pub(crate) millis: u64,
}

const DURATION_FORMS: &str =
    "a number and a unit (`ms`, `s`, `m`, `h`), such as \"250ms\", \"30s\", \"5m\", \"1h\" or \"1m30s\"";

/// Parses `"250ms"`, `"30s"`, `"5m"`, `"1h"` and combinations (`"1m30s"`).
pub(crate) fn duration(value: &Expr, name: &str) -> syn::Result<Duration> {
    let lit = match value {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(lit),
            ..
        }) => lit,
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(int),
            ..
        }) => {
            return Err(syn::Error::new_spanned(
                int,
                format!(
                    "`{name}` needs a unit: write \"{}s\" or \"{}ms\"",
                    int.base10_digits(),
                    int.base10_digits()
                ),
            ))
        }
        _ => {
            return Err(syn::Error::new_spanned(
                value,
                format!("`{name}` takes a string literal: {DURATION_FORMS}"),
            ))
        }
    };
    let text = lit.value();
    let invalid = || {
        syn::Error::new_spanned(
            lit,
            format!("invalid duration \"{text}\"; expected {DURATION_FORMS}"),
        )
    };
    let millis = parse_millis(&text).ok_or_else(invalid)?;
    if millis == 0 {
        return Err(syn::Error::new_spanned(
            lit,
            format!("`{name}` must be greater than zero"),
        ));
    }
    Ok(Duration { millis })
}

fn parse_millis(text: &str) -> Option<u64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut last_unit = u64::MAX;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else {
            return None;
        };
        // Units go from largest to smallest, each once: "1h30m", not "30m1h".
        if unit >= last_unit {
            return None;
        }
        last_unit = unit;
        rest = &rest[len..];
        total = total.checked_add(number.checked_mul(unit)?)?;
    }
    Some(total)
}

/// Parses a positive integer literal.
pub(crate) fn capacity(value: &Expr) -> syn::Result<u64> {
    let Expr::Lit(syn::ExprLit {
        lit: syn::Lit::Int(int),
        ..
    }) = value
    else {
        return Err(syn::Error::new_spanned(
            value,
            "`capacity` takes an integer literal, such as `capacity = 50_000`",
        ));
    };
    let capacity: u64 = int.base10_parse()?;
    if capacity == 0 {
        return Err(syn::Error::new_spanned(
            int,
            "`capacity` must be at least 1: it is how many keys are remembered",
        ));
    }
    Ok(capacity)
}

/// One of two string values; the first is the default.
fn choice<T: Copy>(value: &Expr, name: &str, choices: [(&str, T); 2]) -> syn::Result<T> {
    let [(default, _), (other, _)] = choices;
    let lit = string_lit(value, name, &format!("\"{default}\" or \"{other}\""))?;
    let text = lit.value();
    match choices.iter().find(|(choice, _)| *choice == text) {
        Some((_, chosen)) => Ok(*chosen),
        None => Err(syn::Error::new_spanned(
            lit,
            format!(
                "unknown `{name}` value `{text}`; expected \"{default}\" (the default) or \"{other}\""
            ),
        )),
    }
}

fn guard_error(value: &Expr) -> syn::Error {
    syn::Error::new_spanned(
        value,
        "`guard` takes a variable name, such as `guard = lock`; the guard is bound to it in the body",
    )
}

fn string_lit(value: &Expr, name: &str, expected: &str) -> syn::Result<LitStr> {
    match value {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(lit),
            ..
        }) => Ok(lit.clone()),
        _ => Err(syn::Error::new_spanned(
            value,
            format!("`{name}` takes a string literal: {expected}"),
        )),
    }
}

fn duplicate(span: Span, name: &str) -> syn::Error {
    syn::Error::new(span, format!("`{name}` set more than once"))
}

/// Stores an argument, rejecting a second one at the second's name.
fn set<T>(slot: &mut Option<T>, value: T, span: Span, name: &str) -> syn::Result<()> {
    if slot.is_some() {
        return Err(duplicate(span, name));
    }
    *slot = Some(value);
    Ok(())
}

fn set_spanned<T>(
    slot: &mut Option<Spanned<T>>,
    value: T,
    span: Span,
    name: &str,
) -> syn::Result<()> {
    set(slot, Spanned { value, span }, span, name)
}

fn unknown_argument(kind: Kind, got: &str, accepted: &[&str]) -> String {
    let list = accepted
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut message = format!(
        "unknown argument `{got}` for `#[{}]`; expected one of: {list}",
        kind.attr_name()
    );
    if let Some(closest) = closest(got, accepted) {
        message.push_str(&format!(" (did you mean `{closest}`?)"));
    }
    message
}

/// The accepted name within edit distance 2 of `got`, if any.
fn closest<'a>(got: &str, accepted: &[&'a str]) -> Option<&'a str> {
    accepted
        .iter()
        .map(|name| (edit_distance(got, name), *name))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// Collects errors so all of them are reported together.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, result: syn::Result<()>) {
        if let Err(error) = result {
            self.add(error);
        }
    }

    pub(crate) fn add(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(existing) => existing.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        self.finish_with(Ok(()))
    }

    /// `last`'s value if nothing failed; otherwise every error, `last`'s
    /// included.
    pub(crate) fn finish_with<T>(self, last: syn::Result<T>) -> syn::Result<T> {
        match (self.0, last) {
            (None, last) => last,
            (Some(error), Ok(_)) => Err(error),
            (Some(mut error), Err(more)) => {
                error.combine(more);
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn suggests_the_closest_argument() {
        assert_eq!(closest("tiemout", Kind::Write.accepted()), Some("timeout"));
        assert_eq!(closest("ky", Kind::Write.accepted()), Some("key"));
        assert_eq!(closest("banana", Kind::Write.accepted()), None);
    }

    #[test]
    fn parses_every_lock_argument() {
        let args = Args::parse(
            Kind::Write,
            quote!(
                "sessions",
                key = msg.channel_id,
                timeout = "1m30s",
                on_busy = "wait",
                registry = &self.registry,
                guard = lock,
                crate = "::renamed"
            ),
        )
        .unwrap();
        assert_eq!(args.names[0].value(), "sessions");
        assert!(args.key.is_some() && args.registry.is_some() && args.krate.is_some());
        assert_eq!(args.timeout.unwrap().value.millis, 90_000);
        assert_eq!(args.on_busy.unwrap().value, OnBusy::Wait);
        assert_eq!(args.guard.unwrap(), "lock");
    }

    #[test]
    fn reports_every_error_at_once() {
        let error = Args::parse(
            Kind::Write,
            quote!(tiemout = "1s", key = a, key = b, on_busy = "never"),
        )
        .err()
        .unwrap();
        let messages: Vec<String> = error.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages[0].contains("did you mean `timeout`"));
        assert!(messages[1].contains("`key` set more than once"));
        assert!(messages[2].contains("unknown `on_busy` value `never`"));
    }

    #[test]
    fn name_written_as_an_argument_says_it_is_positional() {
        for (kind, tokens) in [
            (Kind::Write, quote!(name = "db")),
            (Kind::Read, quote!(resource = "db")),
            (Kind::Dedup, quote!(scope = "jobs", key = id)),
        ] {
            let error = Args::parse(kind, tokens).err().unwrap().to_string();
            assert!(error.contains("is positional"), "{error}");
        }
    }

    #[test]
    fn parses_sets_of_keys_and_names() {
        let args = Args::parse(Kind::Write, quote!("accounts", keys = [from, to, a.b])).unwrap();
        assert_eq!(args.keys.unwrap().value.len(), 3);
        let args = Args::parse(Kind::Read, quote!("a", "b", "c")).unwrap();
        let names: Vec<String> = args.names.iter().map(LitStr::value).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn rejects_malformed_sets() {
        for (kind, tokens, expected) in [
            (Kind::Write, quote!(keys = []), "at least one key"),
            (Kind::Write, quote!(keys = from), "in brackets"),
            (Kind::Write, quote!("a", "a"), "named twice"),
            (Kind::Dedup, quote!("a", "b", key = id), "more than once"),
            (
                Kind::Dedup,
                quote!("a", keys = [id]),
                "unknown argument `keys`",
            ),
        ] {
            let error = Args::parse(kind, tokens).err().unwrap().to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn key_comparison_is_not_a_named_argument() {
        let args = Args::parse(Kind::Dedup, quote!(a == b)).unwrap();
        assert!(args.key.is_some());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_millis("250ms"), Some(250));
        assert_eq!(parse_millis("30s"), Some(30_000));
        assert_eq!(parse_millis("5m"), Some(300_000));
        assert_eq!(parse_millis("1h"), Some(3_600_000));
        assert_eq!(parse_millis("1m30s"), Some(90_000));
        assert_eq!(parse_millis("1h1m1s1ms"), Some(3_661_001));
        assert_eq!(parse_millis("0s"), Some(0));
        for bad in [
            "",
            "30",
            "s",
            "30 s",
            "1.5s",
            "30sec",
            "30s1m",
            "1s1s",
            "-1s",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_millis(bad), None, "{bad}");
        }
    }
}
