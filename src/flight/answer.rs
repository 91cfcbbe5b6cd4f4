//! An answer's Arrow IPC stream as Flight data. The IPC bytes are decoded as they come
//! (`StreamDecoder`, over the received buffers without copying them) and encoded again as
//! `FlightData` messages no larger than `flight.max_message_bytes`. The schema is read first,
//! so that an empty answer still tells its columns. A cut answer (the gateway's stream ends with
//! an error) ends the gRPC stream with an error status, never as a clean end.

use std::collections::VecDeque;

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamDecoder;
use arrow_flight::FlightData;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use tonic::Status;

use crate::gateway::{AnswerStream, QueryAnswer, QueryBody};

/// The IPC chunks of an answer, decoded into record batches.
struct Decoding {
    chunks: AnswerStream,
    decoder: StreamDecoder,
    ready: VecDeque<RecordBatch>,
    ended: bool,
    /// A whole answer cut at a limit: its end is an error, never a clean end.
    truncated: bool,
}

impl Decoding {
    fn new(body: QueryBody) -> Self {
        let (chunks, truncated): (AnswerStream, bool) = match body {
            QueryBody::Whole {
                bytes, truncated, ..
            } => (
                Box::pin(futures::stream::once(async move { Ok(bytes) })),
                truncated,
            ),
            // A streamed answer cut at a limit already ends with an error (gateway::query).
            QueryBody::Streamed(stream) => (stream, false),
        };
        Decoding {
            chunks,
            decoder: StreamDecoder::new(),
            ready: VecDeque::new(),
            ended: false,
            truncated,
        }
    }

    /// Reads one more chunk: `Ok(false)` once the answer ended cleanly.
    async fn read(&mut self) -> Result<bool, FlightError> {
        match self.chunks.next().await {
            Some(Ok(bytes)) => {
                let mut buffer = Buffer::from(bytes);
                while !buffer.is_empty() {
                    if let Some(batch) = self.decoder.decode(&mut buffer)? {
                        self.ready.push_back(batch);
                    }
                }
                Ok(true)
            }
            // SECURITY: a cut answer is an error, never a short answer.
            Some(Err(e)) => Err(FlightError::ExternalError(Box::new(e))),
            None => {
                self.decoder.finish()?;
                // SECURITY: Flight has no place to say "cut": a cut answer ends in an error.
                if self.truncated {
                    return Err(FlightError::Tonic(Box::new(Status::out_of_range(
                        "answer_truncated: the answer reached the hub's row or byte limit \
                         ([limits] max_result_rows, max_result_bytes): ask for fewer rows",
                    ))));
                }
                Ok(false)
            }
        }
    }

    /// Reads until the schema is known (the first message of the IPC stream).
    async fn schema(&mut self) -> Result<SchemaRef, FlightError> {
        loop {
            if let Some(schema) = self.decoder.schema() {
                return Ok(schema);
            }
            if !self.read().await? {
                return Err(FlightError::ProtocolError(
                    "the answer ended before its schema".into(),
                ));
            }
        }
    }

    fn into_batches(self) -> impl Stream<Item = Result<RecordBatch, FlightError>> + Send {
        futures::stream::try_unfold(self, |mut this| async move {
            loop {
                if let Some(batch) = this.ready.pop_front() {
                    return Ok(Some((batch, this)));
                }
                if this.ended {
                    return Ok(None);
                }
                this.ended = !this.read().await?;
            }
        })
    }
}

/// `answer` as Flight data, schema first.
pub async fn flight_data(
    answer: QueryAnswer,
    max_message_bytes: usize,
) -> Result<BoxStream<'static, Result<FlightData, Status>>, Status> {
    let mut decoding = Decoding::new(answer.body);
    let schema = decoding.schema().await.map_err(Status::from)?;
    let encoded = FlightDataEncoderBuilder::new()
        .with_max_flight_data_size(max_message_bytes / 2)
        .with_schema(schema)
        .build(decoding.into_batches())
        .map_err(Status::from);
    Ok(encoded.boxed())
}

/// A batch already in memory (metadata answers) as Flight data.
pub fn batch_data(batch: RecordBatch) -> BoxStream<'static, Result<FlightData, Status>> {
    FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(futures::stream::once(async move { Ok(batch) }))
        .map_err(Status::from)
        .boxed()
}

/// Most parameter rows read from a `DoPut` (one is bound; more are refused by the gateway).
const MAX_PARAMETER_ROWS: usize = 2;

/// The parameters a client sends with `DoPut`: at most a few rows, concatenated.
pub async fn parameter_row(
    stream: arrow_flight::sql::server::PeekableFlightDataStream,
) -> Result<RecordBatch, Status> {
    let mut batches = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
        stream
            .into_peekable()
            .map_err(|s| FlightError::Tonic(Box::new(s))),
    );
    let mut rows = Vec::new();
    let mut count = 0;
    let mut schema = None;
    while let Some(batch) = batches.next().await {
        let batch =
            batch.map_err(|e| Status::invalid_argument(format!("parameters_invalid: {e}")))?;
        count += batch.num_rows();
        schema = Some(batch.schema());
        rows.push(batch);
        // SECURITY (availability): the rest of a long stream is not read.
        if count >= MAX_PARAMETER_ROWS {
            break;
        }
    }
    let schema = schema
        .or_else(|| batches.schema().cloned())
        .ok_or_else(|| Status::invalid_argument("parameters_invalid: no parameters were sent"))?;
    arrow::compute::concat_batches(&schema, &rows)
        .map_err(|e| Status::invalid_argument(format!("parameters_invalid: {e}")))
}

/// `stream`, ended by `CANCELLED` when its principal cancels the statement (`CancelFlightInfo`);
/// the rest of the answer is dropped, which stops the query (its outcome says so).
pub fn cancellable(
    stream: BoxStream<'static, Result<FlightData, Status>>,
    cancellation: crate::gateway::Cancellation,
) -> BoxStream<'static, Result<FlightData, Status>> {
    futures::stream::unfold(Some((stream, cancellation)), |state| async move {
        let (mut stream, mut cancellation) = state?;
        tokio::select! {
            item = stream.next() => item.map(|item| (item, Some((stream, cancellation)))),
            () = cancellation.cancelled() => Some((
                Err(Status::cancelled("cancelled: the statement was cancelled (CancelFlightInfo)")),
                None,
            )),
        }
    })
    .boxed()
}
