//! Parsing attribute arguments into one typed configuration.
//!
//! Every argument error is collected, so one compile reports all of them,
//! each spanned on the offending tokens.

use proc_macro2::{Span, TokenStream};
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, LitStr, Token};

use crate::validate::{self, Duration};

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
            Kind::Read | Kind::Write => {
                &["key", "timeout", "on_busy", "registry", "guard", "crate"]
            }
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
    pub(crate) name: Option<LitStr>,
    pub(crate) key: Option<Expr>,
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
            name: None,
            key: None,
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
            if self.name.is_some() {
                return Err(syn::Error::new_spanned(
                    lit,
                    "the name is set more than once",
                ));
            }
            if lit.value().trim().is_empty() {
                return Err(syn::Error::new_spanned(lit, "the name must not be empty"));
            }
            self.name = Some(lit.clone());
            return Ok(());
        }
        if self.kind == Kind::Dedup {
            return set(&mut self.key, expr, "key", |e| e);
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
        if !accepted.contains(&text.as_str()) {
            return Err(syn::Error::new(
                name.span(),
                unknown_argument(self.kind, &text, accepted),
            ));
        }
        let span = name.span();
        match text.as_str() {
            "key" => set(&mut self.key, value, "key", |e| e),
            "registry" => set(&mut self.registry, value, "registry", |e| e),
            "on_duplicate" => set(&mut self.on_duplicate, value, "on_duplicate", |e| e),
            "timeout" => {
                let duration = validate::duration(&value, "timeout")?;
                set_spanned(&mut self.timeout, duration, span, "timeout")
            }
            "ttl" => {
                let duration = validate::duration(&value, "ttl")?;
                set_spanned(&mut self.ttl, duration, span, "ttl")
            }
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
            "capacity" => {
                let capacity = validate::capacity(&value)?;
                set_spanned(&mut self.capacity, capacity, span, "capacity")
            }
            "keep_on_error" => {
                let Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Bool(flag),
                    ..
                }) = &value
                else {
                    return Err(syn::Error::new_spanned(
                        value,
                        "`keep_on_error` takes `true` or `false`",
                    ));
                };
                set_spanned(&mut self.keep_on_error, flag.value, span, "keep_on_error")
            }
            "guard" => {
                let Expr::Path(path) = &value else {
                    return Err(guard_error(&value));
                };
                let Some(ident) = path.path.get_ident() else {
                    return Err(guard_error(&value));
                };
                if self.guard.is_some() {
                    return Err(duplicate(span, "guard"));
                }
                self.guard = Some(ident.clone());
                Ok(())
            }
            "crate" => {
                let lit = string_lit(&value, "crate", "a path such as \"::my_keylock\"")?;
                let path = lit.parse::<syn::Path>().map_err(|_| {
                    syn::Error::new_spanned(
                        &lit,
                        "`crate` must be a path to the keylock crate, such as \"::my_keylock\"",
                    )
                })?;
                if self.krate.is_some() {
                    return Err(duplicate(span, "crate"));
                }
                self.krate = Some(path);
                Ok(())
            }
            _ => unreachable!("checked against the accepted list"),
        }
    }
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

fn set<T>(
    slot: &mut Option<T>,
    value: Expr,
    name: &str,
    map: impl FnOnce(Expr) -> T,
) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new_spanned(
            value,
            format!("`{name}` set more than once"),
        ));
    }
    *slot = Some(map(value));
    Ok(())
}

fn set_spanned<T>(
    slot: &mut Option<Spanned<T>>,
    value: T,
    span: Span,
    name: &str,
) -> syn::Result<()> {
    if slot.is_some() {
        return Err(duplicate(span, name));
    }
    *slot = Some(Spanned { value, span });
    Ok(())
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
        match self.0 {
            Some(error) => Err(error),
            None => Ok(()),
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
        assert_eq!(args.name.unwrap().value(), "sessions");
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
    fn key_comparison_is_not_a_named_argument() {
        let args = Args::parse(Kind::Dedup, quote!(a == b)).unwrap();
        assert!(args.key.is_some());
    }
}
