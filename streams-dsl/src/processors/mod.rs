//! The DSL's processors, written against the core Processor API.

pub(crate) mod aggregate;
pub(crate) mod fk_join;
pub(crate) mod join;
pub(crate) mod suppress;
pub(crate) mod table;
pub(crate) mod window;

use std::marker::PhantomData;
use std::sync::Arc;

use streams_core::{Processor, ProcessorContext, ProcessorSupplier, Punctuation, Record, Result, StreamsError};

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

/// A DSL processor with its state in hand: `init` looks its stores up and builds the running
/// processor `P`, so the running code has them as plain fields. Records before `init` are an
/// illegal state (the task initializes every processor before it processes anything).
pub(crate) struct Stateful<F, P> {
    init: F,
    running: Option<P>,
}

impl<F, P> Stateful<F, P> {
    /// A processor built by `init` when its task initializes it.
    pub(crate) fn new(init: F) -> Self {
        Stateful { init, running: None }
    }
}

impl<KIn, VIn, KOut, VOut, F, P> Processor<KIn, VIn, KOut, VOut> for Stateful<F, P>
where
    F: Fn(&mut ProcessorContext<'_, KOut, VOut>) -> Result<P>,
    P: Processor<KIn, VIn, KOut, VOut>,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<()> {
        let mut running = (self.init)(ctx)?;
        running.init(ctx)?;
        self.running = Some(running);
        Ok(())
    }

    fn process(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>, record: Record<KIn, VIn>) -> Result<()> {
        match &mut self.running {
            Some(running) => running.process(ctx, record),
            None => Err(not_initialized(ctx.node_name())),
        }
    }

    fn punctuate(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>, punctuation: Punctuation) -> Result<()> {
        match &mut self.running {
            Some(running) => running.punctuate(ctx, punctuation),
            None => Err(not_initialized(ctx.node_name())),
        }
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<()> {
        match &mut self.running {
            Some(running) => running.flush(ctx),
            None => Ok(()),
        }
    }

    fn close(&mut self) -> Result<()> {
        match &mut self.running {
            Some(running) => running.close(),
            None => Ok(()),
        }
    }
}

fn not_initialized(node: &str) -> StreamsError {
    StreamsError::IllegalState(format!("processor `{node}` used before init"))
}
