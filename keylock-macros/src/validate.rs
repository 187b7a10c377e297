//! From the raw arguments to a checked plan: cross-argument checks and the
//! shape of the annotated function, all in one place. The plan's types
//! cannot express what is invalid (a dedup step without a key, a lock that
//! both skips and times out), so expansion needs no second check.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Expr, Ident, ItemFn, LitStr};

use crate::args::{Args, InFlight, Kind, OnBusy};

/// What one attribute does, checked.
pub(crate) enum Step {
    Lock(LockStep),
    Dedup(DedupStep),
}

/// Where a step's lock or scope lives: the arguments every attribute takes.
pub(crate) struct Site {
    /// The written name; `None` names it after the function (or, for
    /// [`Target::Resources`], is not used: the names are the target's).
    pub(crate) name: Option<LitStr>,
    pub(crate) registry: Option<Expr>,
    /// The path of the keylock crate; `None` for `::keylock`.
    pub(crate) krate: Option<syn::Path>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// How a lock step waits, with the span of the argument that chose a
/// policy that can fail.
pub(crate) enum Wait {
    Block,
    Timeout { millis: u64, span: Span },
    Skip { span: Span },
}

/// What a lock step locks.
pub(crate) enum Target {
    /// The resource's own lock.
    Whole,
    /// One key of the resource.
    Key(Expr),
    /// Several keys of the resource, as one set: at least one.
    Keys(Vec<Expr>),
    /// The own locks of several resources, as one set: at least two
    /// distinct names.
    Resources(Vec<LitStr>),
}

pub(crate) struct LockStep {
    pub(crate) site: Site,
    pub(crate) access: Access,
    pub(crate) target: Target,
    pub(crate) wait: Wait,
    /// The body's own name for the guard (`guard = name`).
    pub(crate) guard: Option<Ident>,
}

pub(crate) struct DedupStep {
    pub(crate) site: Site,
    pub(crate) key: Expr,
    pub(crate) ttl_millis: Option<u64>,
    pub(crate) capacity: Option<u64>,
    pub(crate) keep_on_error: bool,
    /// Whether a duplicate waits for the first call instead of skipping.
    pub(crate) wait: bool,
    pub(crate) on_duplicate: Option<Expr>,
}

impl Step {
    pub(crate) fn site(&self) -> &Site {
        match self {
            Step::Lock(step) => &step.site,
            Step::Dedup(step) => &step.site,
        }
    }
}

/// What the annotated function's body is, which decides where the
/// acquisition goes.
pub(crate) enum Shape {
    /// `async fn`: acquire at the start of the body.
    AsyncFn,
    /// A body that is `Box::pin(async move { .. })` (what `#[async_trait]`
    /// produces): acquire at the start of the async block.
    BoxedAsyncBlock,
    /// A function declared to return a future (`impl Future<Output = T>`,
    /// `Pin<Box<dyn Future<Output = T>>>`, `BoxFuture<'_, T>`): the body
    /// builds the future, then a new future acquires, awaits it and
    /// releases.
    ReturnsFuture {
        boxed: bool,
        output: Option<Box<syn::Type>>,
    },
    /// Anything else: acquire by blocking at the start of the body.
    Blocking,
}

/// Checks one attribute's arguments and turns them into a step.
pub(crate) fn step(mut args: Args) -> syn::Result<Step> {
    let target = if args.kind == Kind::Dedup {
        Target::Whole
    } else {
        target(&mut args)?
    };
    let name = match &target {
        Target::Resources(_) => None,
        _ => args.names.pop(),
    };
    let site = Site {
        name,
        registry: args.registry,
        krate: args.krate,
    };
    let access = match args.kind {
        Kind::Read => Access::Read,
        Kind::Write => Access::Write,
        Kind::Dedup => {
            let Some(key) = args.key else {
                return Err(syn::Error::new(
                    args.span,
                    "`#[dedup]` needs a key: `#[dedup(message.id)]` or `#[dedup(key = (event.guild_id, event.id))]`",
                ));
            };
            return Ok(Step::Dedup(DedupStep {
                site,
                key,
                ttl_millis: args.ttl.map(|ttl| ttl.value.millis),
                capacity: args.capacity.map(|capacity| capacity.value),
                keep_on_error: args.keep_on_error.is_some_and(|keep| keep.value),
                wait: args
                    .in_flight
                    .is_some_and(|in_flight| in_flight.value == InFlight::Wait),
                on_duplicate: args.on_duplicate,
            }));
        }
    };
    let wait = match (args.on_busy, args.timeout) {
        (Some(on_busy), Some(timeout)) if on_busy.value == OnBusy::Skip => {
            return Err(syn::Error::new(
                timeout.span,
                "`timeout` has no effect with `on_busy = \"skip\"`, which never waits; remove one of them",
            ));
        }
        (Some(on_busy), None) if on_busy.value == OnBusy::Skip => Wait::Skip { span: on_busy.span },
        (_, Some(timeout)) => Wait::Timeout {
            millis: timeout.value.millis,
            span: timeout.span,
        },
        (_, None) => Wait::Block,
    };
    Ok(Step::Lock(LockStep {
        site,
        access,
        target,
        wait,
        guard: args.guard,
    }))
}

/// What a lock attribute locks: a key, a set of keys of one resource, one
/// whole resource, or a set of whole resources. Takes the key arguments out
/// of `args`; leaves the name when there is one.
fn target(args: &mut Args) -> syn::Result<Target> {
    let several_names = args.names.len() > 1;
    match (args.key.take(), args.keys.take()) {
        (Some(_), Some(keys)) => Err(syn::Error::new(
            keys.span,
            "`key` and `keys` cannot be used together; list every key in `keys = [..]`",
        )),
        (Some(key), None) if several_names => Err(syn::Error::new_spanned(
            &key,
            "`key` locks one key of one resource, and this attribute names several resources; \
             several names lock those resources whole: remove `key`, or lock each resource \
             with its own attribute",
        )),
        (None, Some(keys)) if several_names => Err(syn::Error::new(
            keys.span,
            "`keys` locks keys of one resource, and this attribute names several resources; \
             several names lock those resources whole: keep one name, or remove `keys`",
        )),
        (Some(key), None) => Ok(Target::Key(key)),
        (None, Some(keys)) => Ok(Target::Keys(keys.value)),
        (None, None) if several_names => Ok(Target::Resources(std::mem::take(&mut args.names))),
        (None, None) => Ok(Target::Whole),
    }
}

/// Checks the annotated function can carry the attribute, and tells its
/// shape.
pub(crate) fn function(kind: Kind, item: &ItemFn, steps: &[Step]) -> syn::Result<Shape> {
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
    if item.sig.asyncness.is_some() {
        return Ok(Shape::AsyncFn);
    }
    if is_boxed_async_block(item) && item.block.stmts.len() == 1 {
        return Ok(Shape::BoxedAsyncBlock);
    }
    let syn::ReturnType::Type(_, ty) = &item.sig.output else {
        return Ok(Shape::Blocking);
    };
    let Some(future) = returned_future(ty) else {
        if mentions_future(ty) {
            return Err(syn::Error::new_spanned(
                ty,
                format!(
                    "`#[{attr}]` cannot hold its lock for the whole of a future or stream returned this way; write `async fn`, or return the future itself as `impl Future<Output = T>`, `Pin<Box<dyn Future<Output = T> + Send>>` or `BoxFuture<'_, T>`"
                ),
            ));
        }
        return Ok(Shape::Blocking);
    };
    if let syn::Type::ImplTrait(bounds) = &**ty {
        if let Some(unpin) = bounds.bounds.iter().find(|bound| {
            matches!(bound, syn::TypeParamBound::Trait(bound)
                if bound.path.segments.last().is_some_and(|last| last.ident == "Unpin"))
        }) {
            return Err(syn::Error::new_spanned(
                unpin,
                format!(
                    "`#[{attr}]` cannot return an `Unpin` future: the future that holds the lock is not `Unpin`; drop the bound, return `Pin<Box<dyn Future ..>>`, or write `async fn`"
                ),
            ));
        }
    }
    // The lock covers the returned future, from its first poll: whatever
    // the body does before building it would run unlocked.
    if let Some(span) = not_one_future_expression(&item.block) {
        return Err(syn::Error::new(
            span,
            format!(
                "`#[{attr}]` on a function returning a future holds its lock from the future's first poll until it completes, and would not cover code that runs while the future is built: move this into the async block, so the body only captures values (names, fields, references, clones) and builds the future (`async move {{ .. }}`, `Box::pin(async move {{ .. }})`, or a call that returns it), or write `async fn`"
            ),
        ));
    }
    // The body builds the future before the lock is taken, so it cannot
    // use the guard.
    for step in steps {
        if let Step::Lock(LockStep {
            guard: Some(guard), ..
        }) = step
        {
            return Err(syn::Error::new(
                guard.span(),
                "`guard` cannot be used on a function returning a future: its body runs before the lock is taken; write `async fn` instead",
            ));
        }
    }
    Ok(future)
}

/// The shape of a declared future return type: `impl Future<Output = T>`,
/// `Pin<Box<dyn Future<Output = T> ..>>`, `BoxFuture<'_, T>` or
/// `LocalBoxFuture<'_, T>`.
fn returned_future(ty: &syn::Type) -> Option<Shape> {
    match ty {
        syn::Type::ImplTrait(bounds) => {
            let output = future_output(bounds.bounds.iter())?;
            Some(Shape::ReturnsFuture {
                boxed: false,
                output,
            })
        }
        syn::Type::Path(path) => {
            let last = path.path.segments.last()?;
            let args = generic_types(last);
            match last.ident.to_string().as_str() {
                "BoxFuture" | "LocalBoxFuture" => Some(Shape::ReturnsFuture {
                    boxed: true,
                    output: args.first().map(|ty| Box::new((*ty).clone())),
                }),
                "Pin" => {
                    let syn::Type::Path(boxed) = args.first()? else {
                        return None;
                    };
                    let boxed = boxed.path.segments.last()?;
                    if boxed.ident != "Box" {
                        return None;
                    }
                    let syn::Type::TraitObject(object) = generic_types(boxed).first()? else {
                        return None;
                    };
                    let output = future_output(object.bounds.iter())?;
                    Some(Shape::ReturnsFuture {
                        boxed: true,
                        output,
                    })
                }
                _ => None,
            }
        }
        syn::Type::Paren(inner) => returned_future(&inner.elem),
        _ => None,
    }
}

/// `Some(T)` for bounds with `Future<Output = T>`, `Some(None)` for a
/// `Future` bound without a written output; `None` without a `Future`.
fn future_output<'a>(
    bounds: impl Iterator<Item = &'a syn::TypeParamBound>,
) -> Option<Option<Box<syn::Type>>> {
    for bound in bounds {
        let syn::TypeParamBound::Trait(bound) = bound else {
            continue;
        };
        let Some(last) = bound.path.segments.last() else {
            continue;
        };
        if last.ident != "Future" {
            continue;
        }
        let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
            return Some(None);
        };
        let output = args.args.iter().find_map(|arg| match arg {
            syn::GenericArgument::AssocType(assoc) if assoc.ident == "Output" => {
                Some(Box::new(assoc.ty.clone()))
            }
            _ => None,
        });
        return Some(output);
    }
    None
}

fn generic_types(segment: &syn::PathSegment) -> Vec<&syn::Type> {
    match &segment.arguments {
        syn::PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter_map(|arg| match arg {
                syn::GenericArgument::Type(ty) => Some(ty),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether a type holds a future or a stream that keylock cannot lock: a
/// bound `impl Future`/`dyn Stream`/an async closure trait anywhere in it,
/// or a `BoxFuture`/`BoxStream`. A plain type that happens to be called
/// `Future` or `Stream` (a bare trait is no type in Rust 2021) does not
/// count.
fn mentions_future(ty: &syn::Type) -> bool {
    const TRAITS: &[&str] = &[
        "Future",
        "IntoFuture",
        "Stream",
        "TryStream",
        "AsyncFn",
        "AsyncFnMut",
        "AsyncFnOnce",
    ];
    const BOXED: &[&str] = &["BoxFuture", "LocalBoxFuture", "BoxStream", "LocalBoxStream"];
    struct Finder(bool);
    impl<'ast> syn::visit::Visit<'ast> for Finder {
        fn visit_trait_bound(&mut self, bound: &'ast syn::TraitBound) {
            if bound
                .path
                .segments
                .last()
                .is_some_and(|last| TRAITS.contains(&last.ident.to_string().as_str()))
            {
                self.0 = true;
            }
            syn::visit::visit_trait_bound(self, bound);
        }
        fn visit_path_segment(&mut self, segment: &'ast syn::PathSegment) {
            if BOXED.contains(&segment.ident.to_string().as_str()) {
                self.0 = true;
            }
            syn::visit::visit_path_segment(self, segment);
        }
    }
    let mut finder = Finder(false);
    syn::visit::Visit::visit_type(&mut finder, ty);
    finder.0
}

/// Where a future-returning body does more than capture values and build
/// its future: the first statement that is not `let name = <capture>;`,
/// or a tail that is not an async block or a call whose arguments are
/// captures (`Box::pin(async move { .. })`, a function returning the
/// future); `None` when the body only builds the future. A capture is a
/// name, a literal, a field, a reference, a clone or conversion of one, or
/// an async block: nothing that does the function's work before the lock.
fn not_one_future_expression(block: &syn::Block) -> Option<Span> {
    let Some((syn::Stmt::Expr(tail, None), before)) = block.stmts.split_last() else {
        return Some(block.stmts.last().map_or(block.span(), |stmt| stmt.span()));
    };
    for stmt in before {
        let captures = matches!(stmt, syn::Stmt::Local(syn::Local {
            init: Some(syn::LocalInit { expr, diverge: None, .. }),
            ..
        }) if is_capture(expr));
        if !captures {
            return Some(stmt.span());
        }
    }
    let tail = match tail {
        Expr::Paren(inner) => &*inner.expr,
        tail => tail,
    };
    let builds = match tail {
        Expr::Async(_) | Expr::Path(_) => true,
        Expr::Call(call) => is_capture(&call.func) && call.args.iter().all(is_capture),
        Expr::MethodCall(call) => is_capture(&call.receiver) && call.args.iter().all(is_capture),
        _ => false,
    };
    (!builds).then(|| tail.span())
}

/// Whether `expr` only captures a value (see [`not_one_future_expression`]).
fn is_capture(expr: &Expr) -> bool {
    const CONVERSIONS: &[&str] = &[
        "clone",
        "to_owned",
        "to_string",
        "into",
        "as_ref",
        "as_str",
        "cloned",
        "copied",
    ];
    match expr {
        Expr::Path(_) | Expr::Lit(_) | Expr::Async(_) => true,
        Expr::Field(field) => is_capture(&field.base),
        Expr::Reference(reference) => is_capture(&reference.expr),
        Expr::Paren(inner) => is_capture(&inner.expr),
        Expr::MethodCall(call) => {
            CONVERSIONS.contains(&call.method.to_string().as_str())
                && is_capture(&call.receiver)
                && call.args.is_empty()
        }
        // `Arc::clone(&x)`, `String::from(x)`.
        Expr::Call(call) => {
            matches!(&*call.func, Expr::Path(path) if path.path.segments.last().is_some_and(
                |last| matches!(last.ident.to_string().as_str(), "clone" | "from" | "new")
            )) && call.args.iter().all(is_capture)
        }
        _ => false,
    }
}

/// Whether the body is `Box::pin(async move { .. })`.
fn is_boxed_async_block(item: &ItemFn) -> bool {
    let Some(syn::Stmt::Expr(Expr::Call(call), None)) = item.block.stmts.last() else {
        return false;
    };
    let Expr::Path(func) = &*call.func else {
        return false;
    };
    let segments: Vec<String> = func
        .path
        .segments
        .iter()
        .map(|segment| segment.ident.to_string())
        .collect();
    segments.ends_with(&["Box".to_owned(), "pin".to_owned()])
        && call.args.len() == 1
        && matches!(call.args.first(), Some(Expr::Async(_)))
}
