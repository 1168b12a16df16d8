//! The DSL's processors, written against the core Processor API.

pub(crate) mod aggregate;
pub(crate) mod fk_join;
pub(crate) mod join;
pub(crate) mod suppress;
pub(crate) mod table;
pub(crate) mod window;

use std::marker::PhantomData;
use std::sync::Arc;

use streams_core::{Processor, ProcessorContext, ProcessorSupplier, Record, Result};

/// A stateless operator: a function of the context and one record.
pub(crate) struct Stateless<F, KIn, VIn> {
    f: Arc<F>,
    _types: PhantomData<fn(KIn, VIn)>,
}

impl<KIn, VIn, KOut, VOut, F> Processor<KIn, VIn, KOut, VOut> for Stateless<F, KIn, VIn>
where
    F: Fn(&mut ProcessorContext<'_, KOut, VOut>, Record<KIn, VIn>) -> Result<()>,
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>, record: Record<KIn, VIn>) -> Result<()> {
        (self.f)(ctx, record)
    }
}

/// A supplier of [`Stateless`] processors sharing one function.
pub(crate) fn stateless<KIn, VIn, KOut, VOut, F>(f: F) -> impl ProcessorSupplier<KIn, VIn, KOut, VOut>
where
    KIn: 'static,
    VIn: 'static,
    KOut: 'static,
    VOut: 'static,
    F: Fn(&mut ProcessorContext<'_, KOut, VOut>, Record<KIn, VIn>) -> Result<()> + Send + Sync + 'static,
{
    let f = Arc::new(f);
    move || Stateless { f: f.clone(), _types: PhantomData }
}
