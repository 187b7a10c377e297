//! Rewriting the annotated function: keep the signature, acquire at the
//! start of the body.
//!
//! Three shapes of function:
//! - `async fn`: the acquisition is awaited at the start of the body;
//! - a function whose body is `Box::pin(async move { .. })` (what
//!   `#[async_trait]` produces): the acquisition is awaited at the start of
//!   the async block, so the lock covers the whole call and not just the
//!   building of the future;
//! - any other function: the acquisition blocks at the start of the body.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::{parse_quote, Block, Expr, ItemFn, Stmt};

use crate::args::{Args, Kind, OnBusy};

/// How the body waits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Async,
    Blocking,
}

/// Rewrites `item` so that it acquires every step of `steps`, in order,
/// before its body runs.
pub(crate) fn function(steps: &[Args], mut item: ItemFn) -> TokenStream {
    let (mode, block) = if item.sig.asyncness.is_some() {
        (Mode::Async, &mut *item.block)
    } else if let Some(block) = boxed_async_block(&mut item.block) {
        (Mode::Async, block)
    } else {
        (Mode::Blocking, &mut *item.block)
    };
    let mut prologue: Vec<Stmt> = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        let tokens = lock_step(step, mode, index);
        prologue.push(parse_quote!(#tokens));
    }
    block.stmts.splice(0..0, prologue);
    quote!(#item)
}

/// The async block of a body that is `Box::pin(async move { .. })`.
fn boxed_async_block(block: &mut Block) -> Option<&mut Block> {
    let Some(Stmt::Expr(Expr::Call(call), None)) = block.stmts.last_mut() else {
        return None;
    };
    let Expr::Path(func) = &*call.func else {
        return None;
    };
    let segments: Vec<String> = func
        .path
        .segments
        .iter()
        .map(|segment| segment.ident.to_string())
        .collect();
    if !segments.ends_with(&["Box".to_owned(), "pin".to_owned()]) || call.args.len() != 1 {
        return None;
    }
    match call.args.first_mut() {
        Some(Expr::Async(async_block)) => Some(&mut async_block.block),
        _ => None,
    }
}

fn krate(step: &Args) -> TokenStream {
    match &step.krate {
        Some(path) => quote!(#path),
        None => quote!(::keylock),
    }
}

/// The name expression (a closure returning `&'static str`) and the marker
/// item the default name needs.
fn name(step: &Args, private: &TokenStream) -> (TokenStream, TokenStream) {
    let site = Span::mixed_site();
    match &step.name {
        Some(lit) => (quote!(|| #lit), TokenStream::new()),
        None => (
            quote_spanned!(site=> || #private::fn_path(::core::any::type_name_of_val(&__keylock_marker))),
            quote_spanned!(site=> fn __keylock_marker() {}),
        ),
    }
}

fn registry(step: &Args, krate: &TokenStream) -> TokenStream {
    match &step.registry {
        Some(expr) => quote!(&(#expr)),
        None => quote!(#krate::Registry::global()),
    }
}

/// `(&&KeyProbe(&(key))).key()`, spanned on the user's key expression so
/// that type errors point at it.
fn key(expr: &Expr, private: &TokenStream) -> TokenStream {
    let span = syn::spanned::Spanned::span(expr);
    quote_spanned!(span=> (&&#private::KeyProbe(&(#expr))).key())
}

fn guard_binding(step: &Args, index: usize) -> TokenStream {
    match &step.guard {
        Some(ident) => quote!(#ident),
        None => {
            let ident = format_ident!("__keylock_guard_{}", index, span = Span::mixed_site());
            quote!(#ident)
        }
    }
}

/// Returns from the function with the failure converted through its return
/// type, spanned on the argument that made failure possible.
fn fail(step: &Args, span: Span) -> TokenStream {
    let site = Span::mixed_site();
    let error = quote_spanned!(site=> __keylock_error);
    // Every token of the path carries the argument's span, so the error
    // for an unsupported return type points at `timeout` / `on_busy`.
    let krate = match &step.krate {
        Some(path) => quote_spanned!(span=> #path),
        None => quote_spanned!(span=> ::keylock),
    };
    quote_spanned!(span=> return #krate::__private::LockFailure::from_lock_error(#error))
}

fn lock_step(step: &Args, mode: Mode, index: usize) -> TokenStream {
    let site = Span::mixed_site();
    let krate = krate(step);
    let private = quote!(#krate::__private);
    let (name, marker) = name(step, &private);
    let registry = registry(step, &krate);
    let binding = guard_binding(step, index);
    let access = if step.kind == Kind::Read {
        "read"
    } else {
        "write"
    };

    let lookup = match &step.key {
        Some(expr) => {
            let key = key(expr, &private);
            quote_spanned!(site=> {
                #[allow(unused_imports)]
                use #private::{KeyProbeRef as _, KeyProbeValue as _};
                __KEYLOCK_SITE.key_lock(__keylock_registry, #name, #key)
            })
        }
        None => quote_spanned!(site=> __KEYLOCK_SITE.lock(__keylock_registry, #name)),
    };

    let lock = quote_spanned!(site=> __keylock_lock);
    let error = quote_spanned!(site=> __keylock_error);
    let acquire = match (mode, &step.on_busy, &step.timeout) {
        (_, Some(on_busy), _) if on_busy.value == OnBusy::Skip => {
            let function = format_ident!("try_{}", access);
            let fail = fail(step, on_busy.span);
            quote!(match #private::#function(#lock) {
                ::core::result::Result::Ok(guard) => guard,
                ::core::result::Result::Err(#error) => #fail,
            })
        }
        (Mode::Async, _, Some(timeout)) => {
            let function = format_ident!("{}_timeout", access);
            let millis = timeout.value.millis;
            let fail = fail(step, timeout.span);
            quote!(match #private::#function(#lock, ::core::time::Duration::from_millis(#millis)).await {
                ::core::result::Result::Ok(guard) => guard,
                ::core::result::Result::Err(#error) => #fail,
            })
        }
        (Mode::Blocking, _, Some(timeout)) => {
            let function = format_ident!("{}_blocking_timeout", access);
            let millis = timeout.value.millis;
            let fail = fail(step, timeout.span);
            quote!(match #private::#function(#lock, ::core::time::Duration::from_millis(#millis)) {
                ::core::result::Result::Ok(guard) => guard,
                ::core::result::Result::Err(#error) => #fail,
            })
        }
        (Mode::Async, _, None) => {
            let function = format_ident!("{}", access);
            quote!(#private::#function(#lock).await)
        }
        (Mode::Blocking, _, None) => {
            let function = format_ident!("{}_blocking", access);
            quote!(#private::#function(#lock))
        }
    };

    quote_spanned! {site=>
        let #binding = {
            static __KEYLOCK_SITE: #private::SiteCache = #private::SiteCache::new();
            #marker
            let __keylock_registry: &#krate::Registry = #registry;
            let #lock = #lookup;
            #acquire
        };
    }
}
