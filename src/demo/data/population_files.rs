//! `fiscal.revenus` (one row per person) and `social.allocataires` (CAF recipients), written
//! in one pass over the synthetic population.
//!
//! It only lays out rows drawn by `population` and `households`: it must never read real data or
//! touch the network, and it writes only through [`Output`] (temporary file, then rename).

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, StringBuilder};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::households::{MAX_CAF_FILES, caf_number, derive_caf, foyer_number, household_of};
use super::population::INCOME_YEAR;
use super::writer::{CHUNK, Output, field, push_digits, schema};
use super::{ALLOCATAIRES, Ctx, GenerateError, REVENUS};

fn revenus_schema() -> SchemaRef {
    schema(vec![
        field("nir", DataType::Utf8),
        field("id_foyer", DataType::Utf8),
        field("annee", DataType::Int32),
        field("revenu_fiscal_reference", DataType::Int64),
        field("nombre_parts", DataType::Float64),
        field("montant_impot", DataType::Int64),
        field("situation_familiale", DataType::Utf8),
    ])
}

fn allocataires_schema() -> SchemaRef {
    schema(vec![
        field("numero_allocataire", DataType::Utf8),
        field("nir", DataType::Utf8),
        field("quotient_familial", DataType::Int32),
        field("nombre_enfants", DataType::Int32),
        field("commune", DataType::Utf8),
        field("montant_prestations", DataType::Float64),
    ])
}

/// Column buffers of `social.allocataires`, flushed every [`CHUNK`] rows.
struct CafColumns {
    numero: StringBuilder,
    nir: StringBuilder,
    quotient: Vec<i32>,
    children: Vec<i32>,
    commune: StringBuilder,
    benefits: Vec<f64>,
}

impl CafColumns {
    fn new() -> Self {
        Self {
            numero: StringBuilder::with_capacity(CHUNK, CHUNK * 7),
            nir: StringBuilder::with_capacity(CHUNK, CHUNK * 13),
            quotient: Vec::with_capacity(CHUNK),
            children: Vec::with_capacity(CHUNK),
            commune: StringBuilder::with_capacity(CHUNK, CHUNK * 5),
            benefits: Vec::with_capacity(CHUNK),
        }
    }

    fn len(&self) -> usize {
        self.quotient.len()
    }

    fn flush(&mut self, schema: &SchemaRef, output: &mut Output) -> Result<(), GenerateError> {
        if self.len() == 0 {
            return Ok(());
        }
        let full = std::mem::replace(self, Self::new());
        let columns: Vec<ArrayRef> = vec![
            Arc::new({ full.numero }.finish()),
            Arc::new({ full.nir }.finish()),
            Arc::new(Int32Array::from(full.quotient)),
            Arc::new(Int32Array::from(full.children)),
            Arc::new({ full.commune }.finish()),
            Arc::new(Float64Array::from(full.benefits)),
        ];
        output.write(&RecordBatch::try_new(schema.clone(), columns)?)
    }
}

/// Writes `fiscal.revenus` (every person) and `social.allocataires` (CAF recipients, at most
/// [`MAX_CAF_FILES`]) in one pass over the population; returns their row counts.
pub(super) fn write_population_files(ctx: &Ctx<'_>) -> Result<(u64, u64), GenerateError> {
    let seed = ctx.opts.seed;
    let revenus_schema = revenus_schema();
    let caf_schema = allocataires_schema();
    let mut revenus = Output::create(
        ctx.data_dir,
        REVENUS.1,
        &revenus_schema,
        ctx.opts,
        REVENUS.0,
    )?;
    let mut caf = Output::create(
        ctx.data_dir,
        ALLOCATAIRES.1,
        &caf_schema,
        ctx.opts,
        ALLOCATAIRES.0,
    )?;
    let size = ctx.population.size;
    let mut caf_columns = CafColumns::new();
    let mut recipients = 0u64;
    let mut text = String::with_capacity(16);
    let mut start = 0u64;
    while start < size {
        let n = (size - start).min(CHUNK as u64) as usize;
        let mut nir = StringBuilder::with_capacity(n, n * 13);
        let mut foyer = StringBuilder::with_capacity(n, n * 13);
        let mut rfr = Vec::with_capacity(n);
        let mut parts = Vec::with_capacity(n);
        let mut tax = Vec::with_capacity(n);
        let mut situation = StringBuilder::with_capacity(n, n);
        for i in start..start + n as u64 {
            let person = ctx.population.person(i);
            let (declarant, hh) = household_of(seed, ctx.population, i, &person);
            text.clear();
            push_digits(&mut text, foyer_number(seed, declarant), 13);
            foyer.append_value(&text);
            text.clear();
            push_digits(&mut text, person.nir, 13);
            nir.append_value(&text);
            rfr.push(hh.rfr);
            parts.push(f64::from(hh.parts_x2) / 2.0);
            tax.push(hh.tax);
            situation.append_value(hh.situation);
            // The seven-digit numbering holds 10 million files: past that (only near
            // `MAX_ROWS`), the remaining people get no CAF file.
            let file = (recipients < MAX_CAF_FILES)
                .then(|| derive_caf(seed, i, &person, &hh))
                .flatten();
            if let Some(file) = file {
                let mut number = String::with_capacity(7);
                push_digits(&mut number, caf_number(seed, recipients), 7);
                caf_columns.numero.append_value(&number);
                caf_columns.nir.append_value(&text);
                caf_columns.quotient.push(file.quotient);
                caf_columns.children.push(hh.children as i32);
                caf_columns.commune.append_value(person.commune().code);
                caf_columns.benefits.push(file.benefits);
                recipients += 1;
                if caf_columns.len() >= CHUNK {
                    caf_columns.flush(&caf_schema, &mut caf)?;
                }
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(nir.finish()),
            Arc::new(foyer.finish()),
            Arc::new(Int32Array::from(vec![INCOME_YEAR; n])),
            Arc::new(Int64Array::from(rfr)),
            Arc::new(Float64Array::from(parts)),
            Arc::new(Int64Array::from(tax)),
            Arc::new(situation.finish()),
        ];
        revenus.write(&RecordBatch::try_new(revenus_schema.clone(), columns)?)?;
        ctx.progress.inc(2 * n as u64);
        start += n as u64;
    }
    caf_columns.flush(&caf_schema, &mut caf)?;
    revenus.commit()?;
    caf.commit()?;
    Ok((size, recipients))
}
