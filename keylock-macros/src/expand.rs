//! Rewriting the annotated function from its checked plan: keep the
//! signature, acquire at the start of the body.
//!
//! Where the acquisition goes depends on the function's [`Shape`]:
//! - `async fn`: awaited at the start of the body;
//! - a body that is `Box::pin(async move { .. })` (what `#[async_trait]`
//!   produces): awaited at the start of the async block, so the lock covers
//!   the whole call and not just the building of the future;
//! - a function declared to return a future: the body builds the future as
//!   before, and a new future acquires, awaits it and releases;
//! - any other function: the acquisition blocks at the start of the body.
//!
//! One lock step, in an `async fn`:
//!
//! ```text
//! // Input:
//! #[write_lock("sessions", key = channel_id, timeout = "5s")]
//! async fn handle(&self, channel_id: u64) -> Result<(), BotError> { BODY }
//!
//! // Output:
//! async fn handle(&self, channel_id: u64) -> Result<(), BotError> {
//!     let __keylock_guard_0 = {
//!         static __KEYLOCK_SITE: ::keylock::__private::SiteCache = ..::new();
//!         let __keylock_registry: &::keylock::Registry = ::keylock::Registry::global();
//!         let __keylock_lock = {
//!             use ::keylock::__private::{KeyProbeRef as _, KeyProbeValue as _, ..};
//!             __KEYLOCK_SITE.key_lock(__keylock_registry, || "sessions",
//!                 ::keylock::__private::key_arg((&&&&KeyProbe(&(channel_id))).key()))
//!         };
//!         match ::keylock::__private::acquire::<::keylock::WriteGuard, _>(
//!             __keylock_lock,
//!             ::keylock::__private::Timeout(::core::time::Duration::from_millis(5000)),
//!         ).wait().await {
//!             Ok(guard) => guard,
//!             Err(__keylock_error) => return ::keylock::__private::lock_failure(__keylock_error),
//!         }
//!     };
//!     // Only when the function can return an `Err`: run the body, then
//!     // count a failure while the lock was held.
//!     let __keylock_result: Result<(), BotError> = async move { BODY }.await;
//!     let __keylock_failed = (&&OutcomeProbe(&__keylock_result)).is_failure();
//!     GuardOutcome::body_finished(&__keylock_guard_0, __keylock_failed);
//!     __keylock_result
//! }
//! ```
//!
//! One dedup step, in a blocking function:
//!
//! ```text
//! // Input:
//! #[dedup(event.id, ttl = "10m")]
//! fn on_event(event: &Event) { BODY }
//!
//! // Output:
//! fn on_event(event: &Event) {
//!     let __keylock_claim_0 = {
//!         use ::keylock::__private::{KeyProbeRef as _, KeyProbeValue as _, ..};
//!         static __KEYLOCK_SITE: ::keylock::__private::SiteCache = ..::new();
//!         fn __keylock_marker() {}
//!         let __keylock_registry: &::keylock::Registry = ::keylock::Registry::global();
//!         match ::keylock::__private::key_arg((&&&&KeyProbe(&(event.id))).key()) {
//!             __keylock_key => match __KEYLOCK_SITE.dedup(
//!                 __keylock_registry,
//!                 || fn_path(type_name_of_val(&__keylock_marker)),
//!                 || DedupOptions::new().ttl(Duration::from_millis(600000)),
//!                 |__keylock_scope| ::keylock::__private::try_claim(__keylock_scope, __keylock_key),
//!             ) {
//!                 Ok(claim) => claim,
//!                 Err(__keylock_error) => return ::keylock::__private::duplicate(
//!                     move || __keylock_error.into_error()),
//!             },
//!         }
//!     };
//!     let __keylock_result: () = ::keylock::__private::call_once(move || -> () { BODY });
//!     let __keylock_failed = (&&OutcomeProbe(&__keylock_result)).is_failure();
//!     __keylock_claim_0.finish(__keylock_failed);
//!     __keylock_result
//! }
//! ```
//!
//! The snapshots in `tests/snapshots/` show every shape in full.

use proc_macro2::{Delimiter, Group, Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::{parse_quote, Block, Expr, ItemFn, Stmt};

use crate::validate::{Access, DedupStep, LockStep, Shape, Site, Step, Target, Wait};

/// How the body waits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Async,
    Blocking,
}

/// Rewrites `item`, of the given shape, so that it acquires every step of
/// `steps`, in order, before its body runs.
pub(crate) fn function(steps: &[Step], shape: Shape, mut item: ItemFn) -> TokenStream {
    let declared = declared_output(&item);
    match shape {
        Shape::AsyncFn => wrap_block(steps, Mode::Async, declared, &mut item.block),
        Shape::BoxedAsyncBlock => {
            // The future's output type is not written anywhere we can see.
            let block = boxed_async_block(&mut item.block)
                .expect("validated: the body is `Box::pin(async move { .. })`");
            wrap_block(steps, Mode::Async, None, block);
        }
        Shape::Blocking => {
            let mut parts = Vec::new();
            if let Some(ty) = &declared {
                probed_types(ty, &mut parts);
            }
            let probe = (!parts.is_empty()).then(|| sync_return_probe(steps, &parts));
            wrap_block(steps, Mode::Blocking, declared.clone(), &mut item.block);
            if let Some(probe) = probe {
                item.block.stmts.insert(0, parse_quote!(#probe));
            }
        }
        Shape::ReturnsFuture { boxed, output } => {
            let body = std::mem::take(&mut item.block.stmts);
            let tokens = returned_future(steps, boxed, output.as_deref(), body);
            item.block.stmts = parse_quote!(#tokens);
        }
    }
    quote!(#item)
}

/// The types a sync function's return type is made of that could be a
/// future keylock cannot see: the type itself, and the type arguments,
/// tuple elements and array elements in it (`Result<Job, E>`,
/// `(Job, u32)`), except `()` and `!` (no futures, and `!` cannot be
/// named), references (a borrowed future is not run by being returned),
/// and trait objects and `impl` types, which cannot be named here (`validate`
/// refuses those that name a future).
fn probed_types<'a>(ty: &'a syn::Type, parts: &mut Vec<&'a syn::Type>) {
    match ty {
        syn::Type::Never(_)
        | syn::Type::Reference(_)
        | syn::Type::TraitObject(_)
        | syn::Type::ImplTrait(_) => {}
        syn::Type::Tuple(tuple) => {
            for elem in &tuple.elems {
                probed_types(elem, parts);
            }
        }
        syn::Type::Array(array) => probed_types(&array.elem, parts),
        syn::Type::Slice(slice) => probed_types(&slice.elem, parts),
        syn::Type::Paren(inner) => probed_types(&inner.elem, parts),
        // A bare `N` or `CAP` in `Buf<N>` parses as a type but is most
        // likely a constant: an upper-case name is left alone.
        syn::Type::Path(path) if path.qself.is_none() && is_constant_name(&path.path) => {}
        syn::Type::Path(path) => {
            parts.push(ty);
            for segment in &path.path.segments {
                if let syn::PathArguments::AngleBracketed(args) = &segment.arguments {
                    for arg in &args.args {
                        if let syn::GenericArgument::Type(inner) = arg {
                            probed_types(inner, parts);
                        }
                    }
                }
            }
        }
        _ => parts.push(ty),
    }
}

/// Whether `path` is one upper-case name (`N`, `CAP`, `MAX_LEN`): a const
/// generic or a constant more often than a type (type parameters are
/// usually one letter too, and such a `T` escapes the check).
fn is_constant_name(path: &syn::Path) -> bool {
    let [segment] = path.segments.iter().collect::<Vec<_>>()[..] else {
        return false;
    };
    let name = segment.ident.to_string();
    segment.arguments.is_none()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// A compile-time check that a sync function's return type is not a future
/// the signature does not show (a type alias, a generic): such a future
/// would run after the lock was released.
//
// Input:  `fn spawn_job(&self) -> Job`  (`type Job = Pin<Box<dyn Future ..>>`)
// Output: `{ use ..::{ProbeFuture as _, ProbeValue as _};
//            ..::sync_return((&&..::ReturnProbe::<Job>::new()).kind()); }`
//         which fails to compile, naming the fix, when `Job: Future`.
fn sync_return_probe(steps: &[Step], parts: &[&syn::Type]) -> TokenStream {
    let private = private(steps[0].site());
    let checks = parts.iter().map(|ty| {
        let span = syn::spanned::Spanned::span(ty);
        quote_spanned! {span=>
            #private::sync_return((&&#private::ReturnProbe::<#ty>::new()).kind());
        }
    });
    quote! {
        {
            #[allow(unused_imports)]
            use #private::{ProbeFuture as _, ProbeValue as _};
            #(#checks)*
        }
    }
}

/// Puts the acquisitions at the start of `block`, and observes the
/// outcome of the rest where it matters.
fn wrap_block(steps: &[Step], mode: Mode, output: Option<syn::Type>, block: &mut Block) {
    let prologue: Vec<Stmt> = steps
        .iter()
        .enumerate()
        .map(|(index, step)| {
            let tokens = match step {
                Step::Lock(step) => lock_step(step, mode, index),
                Step::Dedup(step) => dedup_step(step, mode, index),
            };
            parse_quote!(#tokens)
        })
        .collect();
    if observes_outcome(steps, output.as_ref()) {
        let body = std::mem::take(&mut block.stmts);
        let private = private(steps[0].site());
        let run = match mode {
            Mode::Async => {
                unless_lease_lost(steps, output.as_ref(), quote!(async move { #(#body)* }))
            }
            Mode::Blocking => {
                let arrow = output.as_ref().map(|ty| quote!(-> #ty));
                quote!(#private::call_once(move || #arrow { #(#body)* }))
            }
        };
        let tokens = observe_outcome(steps, output.as_ref(), run);
        let wrapped: Block = parse_quote!({ #tokens });
        block.stmts = wrapped.stmts;
    }
    block.stmts.splice(0..0, prologue);
}

/// The awaited async body, cancelled if a backend loses the lock of one of
/// the guards the function keeps; the loss is then returned through the
/// return type (a panic if it cannot carry it).
///
/// ```text
/// match if has_lease(&__keylock_guard_0) {
///     unless_lease_lost(&[&__keylock_guard_0 as &(dyn GuardOutcome + Sync)], BODY).await
/// } else {
///     Ok(BODY.await)
/// } {
///     Ok(result) => result,
///     Err(error) => return (&&LostProbe::<OUTPUT>::new()).lease_lost(error),
/// }
/// ```
fn unless_lease_lost(steps: &[Step], output: Option<&syn::Type>, body: TokenStream) -> TokenStream {
    let site = Span::mixed_site();
    let private = private(steps[0].site());
    // A guard handed to the body (`guard = ..`) is the body's to check.
    let guards: Vec<_> = steps
        .iter()
        .enumerate()
        .filter(|(_, step)| matches!(step, Step::Lock(LockStep { guard: None, .. })))
        .map(|(index, _)| guard_ident(index))
        .collect();
    // Where the return type is not known here (an `#[async_trait]`
    // method's future, an `impl Trait`), the loss could not be returned.
    let (false, Some(output)) = (guards.is_empty(), output) else {
        return quote!(#body.await);
    };
    // Decided before the body starts, so that in-process locks (no lease)
    // await the body itself, with no watching future around it.
    quote_spanned! {site=>
        match {
            let __keylock_body = #body;
            if #(#private::GuardOutcome::has_lease(&#guards))||* {
                #private::unless_lease_lost(
                    &[#(&#guards as &(dyn #private::GuardOutcome + ::core::marker::Sync)),*],
                    __keylock_body,
                )
                .await
            } else {
                ::core::result::Result::Ok(__keylock_body.await)
            }
        } {
            ::core::result::Result::Ok(__keylock_output) => __keylock_output,
            ::core::result::Result::Err(__keylock_lost) => {
                #[allow(unused_imports)]
                use #private::{LostOther as _, LostResult as _};
                return (&&#private::LostProbe::<#output>::new()).lease_lost(__keylock_lost);
            }
        }
    }
}

/// Observing the outcome wraps the body; do it only where the outcome
/// matters: a dedup claim must commit or release, and a lock counts errors
/// only of functions that can return one. A function that never returns
/// has no outcome at all.
fn observes_outcome(steps: &[Step], output: Option<&syn::Type>) -> bool {
    let has_dedup = steps.iter().any(|step| matches!(step, Step::Dedup(_)));
    let returns = !matches!(output, Some(syn::Type::Never(_)));
    returns && (has_dedup || may_return_err(output))
}

/// A function declared to return a future: the lock (or claim) must cover
/// the future until it completes, not just its building.
///
/// ```text
/// // Input:
/// #[write_lock("db")]
/// fn query(&self) -> impl Future<Output = u64> + '_ { BODY }
///
/// // Output:
/// fn query(&self) -> impl Future<Output = u64> + '_ {
///     // Evaluated at the call, as the unannotated function would: the
///     // lock handle, then the body, which builds the future.
///     let __keylock_lock_0 = { static __KEYLOCK_SITE: ..; .. __KEYLOCK_SITE.lock(..) };
///     let __keylock_future = ::keylock::__private::call_once(move || { BODY });
///     async move {
///         let __keylock_guard_0 = {
///             let __keylock_lock = __keylock_lock_0;
///             ::keylock::__private::acquire::<::keylock::WriteGuard, _>(
///                 __keylock_lock, ::keylock::__private::Block).wait().await
///         };
///         __keylock_future.await
///     }
/// }
/// ```
///
/// A boxed future (`Pin<Box<dyn Future ..>>`, `BoxFuture`) is returned as
/// `Box::pin(async move { .. })`.
fn returned_future(
    steps: &[Step],
    boxed: bool,
    output: Option<&syn::Type>,
    body: Vec<Stmt>,
) -> TokenStream {
    let site = Span::mixed_site();
    let private = private(steps[0].site());
    let mut at_call = Vec::new();
    let mut in_future = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        let handle = format_ident!("__keylock_lock_{}", index, span = site);
        match step {
            Step::Lock(step) => {
                let lookup = lock_lookup(step);
                at_call.push(quote_spanned!(site=> let #handle = #lookup;));
                let binding = guard_binding(step, index);
                let acquire = lock_acquire(step, Mode::Async);
                in_future.push(quote_spanned! {site=>
                    let #binding = {
                        let __keylock_lock = #handle;
                        #acquire
                    };
                });
            }
            Step::Dedup(step) => {
                let later = later_claim(step);
                at_call.push(quote_spanned!(site=> let #handle = #later;));
                let binding = claim_ident(index);
                let claim = if step.wait {
                    quote_spanned!(site=> #handle.claim_or_wait().await)
                } else {
                    quote_spanned!(site=> #handle.try_claim())
                };
                let on_duplicate =
                    on_duplicate(step, quote_spanned!(site=> move || __keylock_error));
                in_future.push(quote_spanned! {site=>
                    let #binding = match #claim {
                        ::core::result::Result::Ok(claim) => claim,
                        ::core::result::Result::Err(__keylock_error) => #on_duplicate,
                    };
                });
            }
        }
    }
    let run = quote_spanned!(site=> __keylock_future.await);
    let rest = if observes_outcome(steps, output) {
        observe_outcome(steps, output, run)
    } else {
        run
    };
    let future = quote_spanned!(site=> async move { #(#in_future)* #rest });
    let future = if boxed {
        quote_spanned!(site=> ::std::boxed::Box::pin(#future))
    } else {
        future
    };
    quote_spanned! {site=>
        #(#at_call)*
        let __keylock_future = #private::call_once(move || { #(#body)* });
        #future
    }
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
    if contains_impl_trait(&ty) {
        None
    } else {
        Some(ty)
    }
}

/// Whether `impl Trait` appears anywhere in `ty` (looked for in the syntax
/// tree, not the text: `backend_impl::Job` has none).
fn contains_impl_trait(ty: &syn::Type) -> bool {
    struct Finder(bool);
    impl<'ast> syn::visit::Visit<'ast> for Finder {
        fn visit_type_impl_trait(&mut self, _: &'ast syn::TypeImplTrait) {
            self.0 = true;
        }
    }
    let mut finder = Finder(false);
    syn::visit::Visit::visit_type(&mut finder, ty);
    finder.0
}

/// Runs the original body (`run`: a closure call or an awaited async
/// block, so that `return` and `?` inside it end only the body), then tells
/// each step whether the result is a failure (an `Err`): a dedup claim
/// commits or releases, a held lock counts a body that failed while holding
/// it. Steps are told in reverse order, innermost first.
fn observe_outcome(steps: &[Step], output: Option<&syn::Type>, run: TokenStream) -> TokenStream {
    let site = Span::mixed_site();
    let private = private(steps[0].site());
    let result = quote_spanned!(site=> __keylock_result);
    let annotation = output.map(|ty| quote!(: #ty));
    let finishes = steps.iter().enumerate().rev().map(|(index, step)| match step {
        Step::Dedup(_) => {
            let claim = claim_ident(index);
            quote_spanned!(site=> #claim.finish(__keylock_failed);)
        }
        // A guard the body took over (`guard = ...`) may be gone by now.
        Step::Lock(LockStep { guard: Some(_), .. }) => TokenStream::new(),
        Step::Lock(_) => {
            let guard = guard_ident(index);
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
    match call.args.first_mut() {
        Some(Expr::Async(async_block)) => Some(&mut async_block.block),
        _ => None,
    }
}

fn krate(site: &Site) -> TokenStream {
    match &site.krate {
        Some(path) => quote!(#path),
        None => quote!(::keylock),
    }
}

/// The crate path with every token spanned on `span`, so that a trait
/// error of a call through it points at the user's argument.
fn krate_at(site: &Site, span: Span) -> TokenStream {
    match &site.krate {
        Some(path) => quote_spanned!(span=> #path),
        None => quote_spanned!(span=> ::keylock),
    }
}

fn private(site: &Site) -> TokenStream {
    let krate = krate(site);
    quote!(#krate::__private)
}

/// The name expression (a closure returning `&'static str`) and the marker
/// item the default name needs.
fn name(site: &Site) -> (TokenStream, TokenStream) {
    let mixed = Span::mixed_site();
    let private = private(site);
    match &site.name {
        Some(lit) => (quote!(|| #lit), TokenStream::new()),
        None => (
            quote_spanned!(mixed=> || #private::fn_path(::core::any::type_name_of_val(&__keylock_marker))),
            quote_spanned!(mixed=> fn __keylock_marker() {}),
        ),
    }
}

fn registry(site: &Site) -> TokenStream {
    match &site.registry {
        Some(expr) => quote!(&(#expr)),
        None => {
            let krate = krate(site);
            quote!(#krate::Registry::global())
        }
    }
}

/// The key as a `&Q` with `Q: LockKey`, one reference removed; spanned on
/// the user's key expression, so that a type that is not a key gets one
/// error there. The probe traits must be in scope.
fn key(expr: &Expr, site: &Site) -> TokenStream {
    let span = syn::spanned::Spanned::span(expr);
    let private = private(site);
    quote_spanned!(span=> #private::key_arg((&&&&#private::KeyProbe(&(#expr))).key()))
}

/// Brings the key probe traits into scope.
fn key_probes(site: &Site) -> TokenStream {
    let private = private(site);
    quote! {
        #[allow(unused_imports)]
        use #private::{KeyProbeOther as _, KeyProbeRef as _, KeyProbeRefOther as _, KeyProbeValue as _};
    }
}

/// The hidden variable that keeps step `index`'s guard. Every piece of
/// the expansion that names it goes through here, so they agree.
fn guard_ident(index: usize) -> Ident {
    format_ident!("__keylock_guard_{}", index, span = Span::mixed_site())
}

/// The hidden variable that keeps step `index`'s dedup claim.
fn claim_ident(index: usize) -> Ident {
    format_ident!("__keylock_claim_{}", index, span = Span::mixed_site())
}

fn guard_binding(step: &LockStep, index: usize) -> TokenStream {
    match &step.guard {
        Some(ident) => quote!(#ident),
        None => {
            let ident = guard_ident(index);
            quote!(#ident)
        }
    }
}

/// One lock step: `let <guard> = { <lookup>; <acquire> };`
fn lock_step(step: &LockStep, mode: Mode, index: usize) -> TokenStream {
    let site = Span::mixed_site();
    let binding = guard_binding(step, index);
    let lookup = lock_lookup(step);
    let acquire = lock_acquire(step, mode);
    quote_spanned! {site=>
        let #binding = {
            let __keylock_lock = #lookup;
            #acquire
        };
    }
}

/// The lock of a step, as a block giving a `Lock` (the resource's own, or
/// the key's) or a `LockSet` (of keys, or of resources), through a
/// per-call-site cache.
///
/// ```text
/// // keys = [from, to]:
/// __KEYLOCK_SITE.key_set(__keylock_registry, || "accounts",
///     &[key_arg(..from..), key_arg(..to..)])
/// // "a", "b":
/// __KEYLOCK_SITE.lock_set(__keylock_registry, &["a", "b"])
/// ```
fn lock_lookup(step: &LockStep) -> TokenStream {
    let site = Span::mixed_site();
    let private = private(&step.site);
    let krate = krate(&step.site);
    let (name, marker) = match &step.target {
        Target::Resources(_) => (TokenStream::new(), TokenStream::new()),
        _ => name(&step.site),
    };
    let registry = registry(&step.site);
    let (cache, lookup) = match &step.target {
        Target::Key(expr) => {
            let probes = key_probes(&step.site);
            let key = key(expr, &step.site);
            (
                quote_spanned!(site=> #private::SiteCache),
                quote_spanned!(site=> {
                    #probes
                    __KEYLOCK_SITE.key_lock(__keylock_registry, #name, #key)
                }),
            )
        }
        Target::Keys(exprs) => {
            let probes = key_probes(&step.site);
            let keys = exprs.iter().map(|expr| key(expr, &step.site));
            // Spanned from the first key to the last, so that a key type
            // without an order is reported on the list.
            let first = exprs.first().map_or(site, syn::spanned::Spanned::span);
            let last = exprs.last().map_or(site, syn::spanned::Spanned::span);
            let mut list = Group::new(Delimiter::Bracket, quote!(#(#keys),*));
            list.set_span(last);
            let list = quote_spanned!(first=> &#list);
            (
                quote_spanned!(site=> #private::SiteCache),
                quote_spanned!(site=> {
                    #probes
                    __KEYLOCK_SITE.key_set(__keylock_registry, #name, #list)
                }),
            )
        }
        Target::Whole => (
            quote_spanned!(site=> #private::NamedSite),
            quote_spanned!(site=> __KEYLOCK_SITE.lock(__keylock_registry, #name)),
        ),
        Target::Resources(names) => (
            quote_spanned!(site=> #private::SetSite),
            quote_spanned!(site=> __KEYLOCK_SITE.lock_set(__keylock_registry, &[#(#names),*])),
        ),
    };
    quote_spanned! {site=>
        {
            static __KEYLOCK_SITE: #cache = #cache::new();
            #marker
            let __keylock_registry: &#krate::Registry = #registry;
            #lookup
        }
    }
}

/// Acquires `__keylock_lock` with the step's waiting policy, giving the
/// guard; a policy that can fail returns from the function on failure.
fn lock_acquire(step: &LockStep, mode: Mode) -> TokenStream {
    let site = Span::mixed_site();
    let krate = krate(&step.site);
    let private = private(&step.site);
    let set = matches!(step.target, Target::Keys(_) | Target::Resources(_));
    let guard = match (step.access, set) {
        (Access::Read, false) => quote!(#krate::ReadGuard),
        (Access::Write, false) => quote!(#krate::WriteGuard),
        (Access::Read, true) => quote!(#krate::ReadSetGuard),
        (Access::Write, true) => quote!(#krate::WriteSetGuard),
    };
    let (wait, fail_span) = match &step.wait {
        Wait::Block => (quote!(#private::Block), None),
        Wait::Timeout { millis, span } => (
            quote!(#private::Timeout(::core::time::Duration::from_millis(#millis))),
            Some(*span),
        ),
        Wait::Skip { span } => (quote!(#private::Skip), Some(*span)),
    };
    // A guard handed to the body (`guard = name`) may leave the function,
    // so its thread is not recorded as the holder.
    let entry = if step.guard.is_some() {
        quote!(acquire_handed_out)
    } else {
        quote!(acquire)
    };
    let acquisition = quote_spanned!(site=> #private::#entry::<#guard, _>(__keylock_lock, #wait));
    let acquired = match mode {
        Mode::Async => quote!(#acquisition.wait().await),
        Mode::Blocking => quote!(#acquisition.block()),
    };
    let Some(span) = fail_span else {
        return acquired;
    };
    // Every token of the path carries the argument's span, so the error
    // for an unsupported return type points at `timeout` / `on_busy`.
    let krate = krate_at(&step.site, span);
    let error = quote_spanned!(site=> __keylock_error);
    let fail = quote_spanned!(span=> return #krate::__private::lock_failure(#error));
    quote!(match #acquired {
        ::core::result::Result::Ok(guard) => guard,
        ::core::result::Result::Err(#error) => #fail,
    })
}

/// The dedup scope's options, as a `DedupOptions` builder expression.
fn dedup_options(step: &DedupStep) -> TokenStream {
    let krate = krate(&step.site);
    let mut options = quote!(#krate::DedupOptions::new());
    if let Some(millis) = step.ttl_millis {
        options.extend(quote!(.ttl(::core::time::Duration::from_millis(#millis))));
    }
    if let Some(capacity) = step.capacity {
        let value = proc_macro2::Literal::u64_unsuffixed(capacity);
        options.extend(quote!(.capacity(#value)));
    }
    if step.keep_on_error {
        options.extend(quote!(.keep_on_error(true)));
    }
    options
}

/// What a duplicate returns: the `on_duplicate` value, or the function's
/// return type built from `describe` (a closure giving the error).
fn on_duplicate(step: &DedupStep, describe: TokenStream) -> TokenStream {
    match &step.on_duplicate {
        Some(expr) => quote!(return #expr),
        None => {
            let span = syn::spanned::Spanned::span(&step.key);
            let krate = krate_at(&step.site, span);
            quote_spanned!(span=> return #krate::__private::duplicate(#describe))
        }
    }
}

/// One dedup step: `let <claim> = { <scope>; match <claim> { .. } };`
fn dedup_step(step: &DedupStep, mode: Mode, index: usize) -> TokenStream {
    let site = Span::mixed_site();
    let krate = krate(&step.site);
    let private = private(&step.site);
    let (name, marker) = name(&step.site);
    let registry = registry(&step.site);
    let options = dedup_options(step);
    let binding = claim_ident(index);
    let probes = key_probes(&step.site);
    let key = key(&step.key, &step.site);
    let claim = match (step.wait, mode) {
        (false, _) => quote_spanned!(site=> #private::try_claim(__keylock_scope, __keylock_key)),
        (true, Mode::Async) => quote_spanned!(site=> __keylock_scope.claim_or_wait(__keylock_key)),
        (true, Mode::Blocking) => {
            quote_spanned!(site=> __keylock_scope.claim_or_wait_blocking(__keylock_key))
        }
    };
    let claim = quote_spanned!(site=>
        __KEYLOCK_SITE.dedup(__keylock_registry, #name, || #options, |__keylock_scope| #claim)
    );
    let claim = if step.wait && mode == Mode::Async {
        quote!(#claim.await)
    } else {
        claim
    };
    // A rejection from `try_claim` is described only if the return type
    // carries the error; the waiting forms return the error itself.
    let describe = if step.wait {
        quote_spanned!(site=> move || __keylock_error)
    } else {
        quote_spanned!(site=> move || __keylock_error.into_error())
    };
    let rejected = if step.on_duplicate.is_some() {
        quote!(_)
    } else {
        quote_spanned!(site=> __keylock_error)
    };
    let on_duplicate = on_duplicate(step, describe);
    quote_spanned! {site=>
        let #binding = {
            #probes
            static __KEYLOCK_SITE: #private::SiteCache = #private::SiteCache::new();
            #marker
            let __keylock_registry: &#krate::Registry = #registry;
            // A `match` keeps the key's temporaries alive to the end.
            match #key {
                __keylock_key => match #claim {
                    ::core::result::Result::Ok(claim) => claim,
                    ::core::result::Result::Err(#rejected) => #on_duplicate,
                },
            }
        };
    }
}

/// A dedup step of a function returning a future, as taken at the call: a
/// block giving a `LaterClaim`, the scope and owned key, claimed when the
/// future first runs.
fn later_claim(step: &DedupStep) -> TokenStream {
    let site = Span::mixed_site();
    let krate = krate(&step.site);
    let private = private(&step.site);
    let (name, marker) = name(&step.site);
    let registry = registry(&step.site);
    let options = dedup_options(step);
    let probes = key_probes(&step.site);
    let key = key(&step.key, &step.site);
    quote_spanned! {site=>
        {
            #probes
            static __KEYLOCK_SITE: #private::SiteCache = #private::SiteCache::new();
            #marker
            let __keylock_registry: &#krate::Registry = #registry;
            __KEYLOCK_SITE.dedup(
                __keylock_registry,
                #name,
                || #options,
                |__keylock_scope| #private::LaterClaim::new(__keylock_scope, #key),
            )
        }
    }
}
