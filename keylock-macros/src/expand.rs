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

use crate::args::{Args, InFlight, Kind, OnBusy};

/// How the body waits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Async,
    Blocking,
}

/// Rewrites `item` so that it acquires every step of `steps`, in order,
/// before its body runs.
pub(crate) fn function(steps: &[Args], mut item: ItemFn) -> TokenStream {
    let declared = declared_output(&item);
    let (mode, block, output) = if item.sig.asyncness.is_some() {
        (Mode::Async, &mut *item.block, declared)
    } else if let Some(block) = boxed_async_block(&mut item.block) {
        // The future's output type is not written anywhere we can see.
        (Mode::Async, block, None)
    } else {
        (Mode::Blocking, &mut *item.block, declared)
    };
    let mut prologue: Vec<Stmt> = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        let tokens = match step.kind {
            Kind::Read | Kind::Write => lock_step(step, mode, index),
            Kind::Dedup => dedup_step(step, mode, index),
        };
        prologue.push(parse_quote!(#tokens));
    }
    // Observing the outcome wraps the body; do it only where the outcome
    // matters: a dedup claim must commit or release, and a lock counts
    // errors only of functions that can return one. A function that never
    // returns has no outcome at all.
    let has_dedup = steps.iter().any(|step| step.kind == Kind::Dedup);
    let returns = !matches!(output, Some(syn::Type::Never(_)));
    if returns && (has_dedup || may_return_err(output.as_ref())) {
        let body = std::mem::take(&mut block.stmts);
        let tokens = observe_outcome(steps, mode, output.as_ref(), body);
        let wrapped: Block = parse_quote!({ #tokens });
        block.stmts = wrapped.stmts;
    }
    block.stmts.splice(0..0, prologue);
    quote!(#item)
}

/// Whether a function with this return type can return an `Err`: unknown
/// types (an `#[async_trait]` future) may; otherwise a type named
/// `Result`, or ending in `Result` (`io::Result`, `BotResult`).
fn may_return_err(output: Option<&syn::Type>) -> bool {
    match output {
        None => true,
        Some(syn::Type::Path(path)) => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident.to_string().ends_with("Result")),
        Some(_) => false,
    }
}

/// The declared return type, when it can be written in a `let` (it cannot
/// when it contains `impl Trait`).
fn declared_output(item: &ItemFn) -> Option<syn::Type> {
    let ty = match &item.sig.output {
        syn::ReturnType::Default => parse_quote!(()),
        syn::ReturnType::Type(_, ty) => (**ty).clone(),
    };
    let text = quote!(#ty).to_string();
    if text.contains("impl ") {
        None
    } else {
        Some(ty)
    }
}

/// Runs the original body in a closure or async block, so that `return`
/// and `?` inside it end only the body, then tells each step whether the
/// result is a failure (an `Err`): a dedup claim commits or releases, a
/// held lock counts a body that failed while holding it. Steps are told in
/// reverse order, innermost first.
fn observe_outcome(
    steps: &[Args],
    mode: Mode,
    output: Option<&syn::Type>,
    body: Vec<Stmt>,
) -> TokenStream {
    let site = Span::mixed_site();
    let private = {
        let krate = krate(&steps[0]);
        quote!(#krate::__private)
    };
    let result = quote_spanned!(site=> __keylock_result);
    let annotation = output.map(|ty| quote!(: #ty));
    let run = match mode {
        Mode::Async => quote!(async move { #(#body)* }.await),
        Mode::Blocking => {
            let arrow = output.map(|ty| quote!(-> #ty));
            quote!(#private::call_once(move || #arrow { #(#body)* }))
        }
    };
    let finishes = steps.iter().enumerate().rev().map(|(index, step)| match step.kind {
        Kind::Dedup => {
            let claim = format_ident!("__keylock_claim_{}", index, span = site);
            quote_spanned!(site=> #claim.finish(__keylock_failed);)
        }
        // A guard the body took over (`guard = ...`) may be gone by now.
        Kind::Read | Kind::Write if step.guard.is_some() => TokenStream::new(),
        Kind::Read | Kind::Write => {
            let guard = format_ident!("__keylock_guard_{}", index, span = site);
            quote_spanned!(site=> #private::GuardOutcome::body_finished(&#guard, __keylock_failed);)
        }
    });
    quote_spanned! {site=>
        let #result #annotation = #run;
        let __keylock_failed = {
            #[allow(unused_imports)]
            use #private::{OutcomeOther as _, OutcomeResult as _};
            (&&#private::OutcomeProbe(&#result)).is_failure()
        };
        #(#finishes)*
        #result
    }
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

    let cache = if step.key.is_some() {
        quote_spanned!(site=> #private::SiteCache)
    } else {
        quote_spanned!(site=> #private::NamedSite)
    };

    quote_spanned! {site=>
        let #binding = {
            static __KEYLOCK_SITE: #cache = #cache::new();
            #marker
            let __keylock_registry: &#krate::Registry = #registry;
            let #lock = #lookup;
            #acquire
        };
    }
}

fn dedup_step(step: &Args, mode: Mode, index: usize) -> TokenStream {
    let site = Span::mixed_site();
    let krate = krate(step);
    let private = quote!(#krate::__private);
    let (name, marker) = name(step, &private);
    let registry = registry(step, &krate);
    let binding = format_ident!("__keylock_claim_{}", index, span = site);
    let Some(key_expr) = &step.key else {
        unreachable!("validated: `#[dedup]` has a key");
    };
    let key = key(key_expr, &private);
    let mut options = quote!(#krate::DedupOptions::new());
    if let Some(ttl) = &step.ttl {
        let millis = ttl.value.millis;
        options.extend(quote!(.ttl(::core::time::Duration::from_millis(#millis))));
    }
    if let Some(capacity) = &step.capacity {
        let value = proc_macro2::Literal::u64_unsuffixed(capacity.value);
        options.extend(quote!(.capacity(#value)));
    }
    if step.keep_on_error.as_ref().is_some_and(|keep| keep.value) {
        options.extend(quote!(.keep_on_error(true)));
    }
    let wait = step
        .in_flight
        .as_ref()
        .is_some_and(|in_flight| in_flight.value == InFlight::Wait);
    let scope = quote_spanned!(site=> __keylock_scope);
    let key_var = quote_spanned!(site=> __keylock_key);
    let claim = match (wait, mode) {
        (false, _) => quote!(#scope.try_claim(#key_var)),
        (true, Mode::Async) => quote!(#scope.claim_or_wait(#key_var)),
        (true, Mode::Blocking) => quote!(#scope.claim_or_wait_blocking(#key_var)),
    };
    // A rejection from `try_claim` is described only if the return type
    // carries the error; the waiting forms return the error itself.
    let describe = if wait {
        quote_spanned!(site=> move || __keylock_error)
    } else {
        quote_spanned!(site=> move || __keylock_error.into_error())
    };
    let claim = quote_spanned!(site=>
        __KEYLOCK_SITE.dedup(__keylock_registry, #name, || #options, |#scope| #claim)
    );
    let claim = if wait && mode == Mode::Async {
        quote!(#claim.await)
    } else {
        claim
    };
    let error = quote_spanned!(site=> __keylock_error);
    let rejected = if step.on_duplicate.is_some() {
        quote!(_)
    } else {
        error.clone()
    };
    let on_duplicate = match &step.on_duplicate {
        Some(expr) => quote!(return #expr),
        None => {
            let span = syn::spanned::Spanned::span(key_expr);
            let krate = match &step.krate {
                Some(path) => quote_spanned!(span=> #path),
                None => quote_spanned!(span=> ::keylock),
            };
            quote_spanned!(span=> return #krate::__private::DuplicateOutcome::from_duplicate(#describe))
        }
    };
    quote_spanned! {site=>
        let #binding = {
            #[allow(unused_imports)]
            use #private::{KeyProbeRef as _, KeyProbeValue as _};
            static __KEYLOCK_SITE: #private::SiteCache = #private::SiteCache::new();
            #marker
            let __keylock_registry: &#krate::Registry = #registry;
            // A `match` keeps the key's temporaries alive to the end.
            match #key {
                #key_var => match #claim {
                    ::core::result::Result::Ok(claim) => claim,
                    ::core::result::Result::Err(#rejected) => #on_duplicate,
                },
            }
        };
    }
}
