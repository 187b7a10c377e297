//! From tokens to tokens: parse, validate, expand, and on any error still
//! emit the user's item next to the error.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Attribute, ItemFn};

use crate::args::{Args, Errors, Kind};
use crate::{expand, validate};

/// Runs one attribute of `kind` on `item`.
pub(crate) fn attribute(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let mut function = match parse_function(kind, item.clone()) {
        Ok(function) => function,
        Err(error) => return with_error(item, &error),
    };
    // Later keylock attributes on the same function are expanded here, in
    // the order they are written, so stacked attributes acquire in that
    // order.
    let stacked = take_stacked(&mut function.attrs);
    // They were expanded here, not by themselves: refer to their imports so
    // `use keylock::read_lock;` does not look unused, whether or not the
    // expansion succeeds.
    for (_, path, _) in stacked
        .iter()
        .filter(|(_, path, _)| path.segments.len() == 1)
    {
        function.block.stmts.insert(
            0,
            syn::parse_quote!(#[allow(unused_imports)] use #path as _;),
        );
    }
    let mut errors = Errors::default();
    let all = std::iter::once((kind, args))
        .chain(stacked.into_iter().map(|(kind, _, tokens)| (kind, tokens)));
    let mut steps = Vec::new();
    for (kind, tokens) in all {
        match Args::parse(kind, tokens).and_then(validate::step) {
            Ok(step) => steps.push(step),
            Err(error) => errors.add(error),
        }
    }
    match errors.finish_with(validate::function(kind, &function, &steps)) {
        Ok(shape) => expand::function(&steps, shape, function),
        Err(error) => with_error(quote!(#function), &error),
    }
}

/// The user's item, unchanged, followed by the error: the item keeps
/// type-checking and IDEs keep seeing it.
fn with_error(item: TokenStream, error: &syn::Error) -> TokenStream {
    let error = error.to_compile_error();
    quote!(#item #error)
}

fn parse_function(kind: Kind, item: TokenStream) -> syn::Result<ItemFn> {
    if let Ok(function) = syn::parse2::<ItemFn>(item.clone()) {
        return Ok(function);
    }
    let attr = kind.attr_name();
    if let Ok(method) = syn::parse2::<syn::TraitItemFn>(item.clone()) {
        if method.default.is_none() {
            return Err(syn::Error::new_spanned(
                &method.sig,
                format!(
                    "`#[{attr}]` needs a function body to wrap; put it on the implementations of this method, or give it a default body"
                ),
            ));
        }
    }
    let message = format!("`#[{attr}]` can only be applied to functions and methods");
    Err(match syn::parse2::<syn::Item>(item.clone()) {
        Ok(other) => syn::Error::new_spanned(item_keyword(&other), message),
        Err(_) => syn::Error::new_spanned(item, message),
    })
}

/// The tokens naming an item's kind (`struct Foo`, `const X`), for errors.
fn item_keyword(item: &syn::Item) -> TokenStream {
    match item {
        syn::Item::Struct(item) => {
            let (token, ident) = (&item.struct_token, &item.ident);
            quote!(#token #ident)
        }
        syn::Item::Enum(item) => {
            let (token, ident) = (&item.enum_token, &item.ident);
            quote!(#token #ident)
        }
        syn::Item::Const(item) => {
            let (token, ident) = (&item.const_token, &item.ident);
            quote!(#token #ident)
        }
        syn::Item::Static(item) => {
            let (token, ident) = (&item.static_token, &item.ident);
            quote!(#token #ident)
        }
        syn::Item::Impl(item) => {
            let token = &item.impl_token;
            quote!(#token)
        }
        syn::Item::Trait(item) => {
            let (token, ident) = (&item.trait_token, &item.ident);
            quote!(#token #ident)
        }
        syn::Item::Mod(item) => {
            let (token, ident) = (&item.mod_token, &item.ident);
            quote!(#token #ident)
        }
        syn::Item::Type(item) => {
            let (token, ident) = (&item.type_token, &item.ident);
            quote!(#token #ident)
        }
        other => quote!(#other),
    }
}

/// Removes the keylock attributes written below this one and returns their
/// kinds and argument tokens.
fn take_stacked(attrs: &mut Vec<Attribute>) -> Vec<(Kind, syn::Path, TokenStream)> {
    let mut stacked = Vec::new();
    attrs.retain(|attr| {
        let Some(kind) = keylock_kind(attr) else {
            return true;
        };
        let tokens = match &attr.meta {
            syn::Meta::List(list) => list.tokens.clone(),
            _ => TokenStream::new(),
        };
        stacked.push((kind, attr.path().clone(), tokens));
        false
    });
    stacked
}

fn keylock_kind(attr: &Attribute) -> Option<Kind> {
    let segments: Vec<String> = attr
        .path()
        .segments
        .iter()
        .map(|segment| segment.ident.to_string())
        .collect();
    let last = match segments.as_slice() {
        [last] => last,
        [krate, last] if krate == "keylock" => last,
        _ => return None,
    };
    match last.as_str() {
        "read_lock" => Some(Kind::Read),
        "write_lock" => Some(Kind::Write),
        "dedup" => Some(Kind::Dedup),
        _ => None,
    }
}

/// Snapshots of whole expansions, pretty-printed, under
/// `tests/snapshots/`. Update them with
/// `KEYLOCK_BLESS=1 cargo test -p keylock-macros`.
#[cfg(test)]
mod snapshots {
    use super::*;

    fn check(name: &str, kind: Kind, args: TokenStream, item: TokenStream) {
        let expanded = attribute(kind, args, item);
        let file: syn::File = syn::parse2(expanded).expect("the expansion parses as items");
        let actual = prettyplease::unparse(&file);
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/snapshots")
            .join(format!("{name}.rs"));
        if std::env::var_os("KEYLOCK_BLESS").is_some() {
            std::fs::write(&path, &actual).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            expected == actual,
            "expansion of `{name}` changed; run `KEYLOCK_BLESS=1 cargo test -p keylock-macros` and review the diff\n{actual}"
        );
    }

    #[test]
    fn named_async() {
        check(
            "named_async",
            Kind::Write,
            quote!("db"),
            quote!(
                async fn save(&self) -> u64 {
                    1
                }
            ),
        );
    }

    #[test]
    fn keyed_timeout_async_result() {
        check(
            "keyed_timeout_async_result",
            Kind::Write,
            quote!(
                "sessions",
                key = channel_id,
                timeout = "5s",
                registry = self.registry
            ),
            quote!(
                async fn handle(&self, channel_id: u64) -> Result<(), BotError> {
                    Ok(())
                }
            ),
        );
    }

    #[test]
    fn read_skip_blocking() {
        check(
            "read_skip_blocking",
            Kind::Read,
            quote!(key = name, on_busy = "skip"),
            quote!(
                fn query(name: &str) -> Option<usize> {
                    Some(name.len())
                }
            ),
        );
    }

    #[test]
    fn dedup_blocking() {
        check(
            "dedup_blocking",
            Kind::Dedup,
            quote!(event.id, ttl = "10m"),
            quote!(
                fn on_event(event: &Event) {
                    run(event)
                }
            ),
        );
    }

    #[test]
    fn dedup_wait_async() {
        check(
            "dedup_wait_async",
            Kind::Dedup,
            quote!("jobs", id, in_flight = "wait", on_duplicate = 0),
            quote!(
                async fn job(id: u64) -> u32 {
                    1
                }
            ),
        );
    }

    #[test]
    fn key_set_timeout_async() {
        check(
            "key_set_timeout_async",
            Kind::Write,
            quote!("accounts", keys = [from, to], timeout = "50ms"),
            quote!(
                async fn transfer(from: u64, to: u64) -> Result<(), keylock::Error> {
                    Ok(())
                }
            ),
        );
    }

    #[test]
    fn resource_set_blocking() {
        check(
            "resource_set_blocking",
            Kind::Read,
            quote!("ledger", "audit"),
            quote!(
                fn report() -> usize {
                    1
                }
            ),
        );
    }

    #[test]
    fn stacked() {
        check(
            "stacked",
            Kind::Read,
            quote!("a"),
            quote!(
                #[write_lock("b", guard = b)]
                fn both() -> bool {
                    b.lock().is_locked()
                }
            ),
        );
    }

    #[test]
    fn async_trait_body() {
        check(
            "async_trait_body",
            Kind::Write,
            quote!("db"),
            quote!(
                fn on_message<'a>(&'a self) -> Pin<Box<dyn Future<Output = u64> + Send + 'a>> {
                    Box::pin(async move { 1 })
                }
            ),
        );
    }

    #[test]
    fn returns_impl_future() {
        check(
            "returns_impl_future",
            Kind::Write,
            quote!("db", key = id),
            quote!(
                fn fetch(id: u64) -> impl Future<Output = u64> {
                    async move { id }
                }
            ),
        );
    }

    #[test]
    fn returns_box_future_with_dedup() {
        check(
            "returns_box_future_with_dedup",
            Kind::Dedup,
            quote!(id),
            quote!(
                fn once(id: &u64) -> BoxFuture<'_, Option<u64>> {
                    Box::pin(async move { Some(*id) })
                }
            ),
        );
    }
}
