//! Checks that need more than one token: durations, numbers, the shape of
//! the annotated function, and combinations of arguments.

use syn::spanned::Spanned;
use syn::{Expr, ItemFn};

use crate::args::{Args, Kind, OnBusy};

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

/// Checks the annotated function can carry the attribute.
pub(crate) fn function(kind: Kind, item: &ItemFn) -> syn::Result<()> {
    let attr = kind.attr_name();
    if let Some(constness) = &item.sig.constness {
        return Err(syn::Error::new(
            constness.span,
            format!("`#[{attr}]` cannot be applied to a `const fn`: locks are taken at run time"),
        ));
    }
    if let Some(abi) = &item.sig.abi {
        return Err(syn::Error::new(
            abi.span(),
            format!(
                "`#[{attr}]` cannot be applied to an `extern` function; annotate a Rust function and call it from the foreign one"
            ),
        ));
    }
    if let Some(variadic) = &item.sig.variadic {
        return Err(syn::Error::new(
            variadic.span(),
            format!("`#[{attr}]` cannot be applied to a variadic function"),
        ));
    }
    Ok(())
}

/// Cross-argument checks, all in one place.
pub(crate) fn combination(args: &Args) -> syn::Result<()> {
    if let (Some(timeout), Some(on_busy)) = (&args.timeout, &args.on_busy) {
        if on_busy.value == OnBusy::Skip {
            return Err(syn::Error::new(
                timeout.span,
                "`timeout` has no effect with `on_busy = \"skip\"`, which never waits; remove one of them",
            ));
        }
    }
    if args.kind == Kind::Dedup && args.key.is_none() {
        return Err(syn::Error::new(
            args.span,
            "`#[dedup]` needs a key: `#[dedup(message.id)]` or `#[dedup(key = (event.guild_id, event.id))]`",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_millis;

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
