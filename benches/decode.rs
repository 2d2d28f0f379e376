//! Page decoding throughput (issue 7): one Web API response body → one Arrow `RecordBatch`.
//!
//! The pages are real: a simulator is started once, and a full 5,000-row page of `accounts`
//! (every data column, so every attribute type the entity has) and of `new_widgets` (the
//! custom entity, with the types `account` lacks) is fetched through the library's own client
//! with the request the provider builds for those columns. A third page is `accounts` as
//! `SELECT *` reads it, label columns included (FormattedValue and lookuplogicalname
//! annotations on the wire). Only `PageDecoder::decode` is timed, on those bytes.
//! Throughput is reported both in bytes (MB/s of page JSON, the issue's 250 MB/s-per-core
//! target) and in elements (rows/s).
//!
//! A `serde_json::Value` parse of the same bytes is measured beside as a reference: it is what
//! a naive decoder would spend before building a single Arrow array.
//!
//! ```sh
//! cargo bench --bench decode -- --warm-up-time 1 --measurement-time 5
//! ```

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use datafusion_dataverse::config::MAX_PAGE_SIZE;
use datafusion_dataverse::internals::PageDecoder;
use datafusion_dataverse::internals::projection_request;
use datafusion_dataverse::sim::{RowCounts, Simulator, SimulatorOptions};
use datafusion_dataverse::{Config, Dataverse};

/// One fetched page and the decoder a scan of its columns would use.
struct Page {
    table: String,
    body: Bytes,
    rows: usize,
    decoder: PageDecoder,
}

/// Starts a simulator with one full page of each table and fetches it as the provider would.
fn fetch_pages() -> Vec<Page> {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let sim = Simulator::start(SimulatorOptions::default().with_rows(
            RowCounts::accounts_only(MAX_PAGE_SIZE as usize).with_widgets(MAX_PAGE_SIZE as usize),
        ))
        .await
        .expect("simulator starts");
        let dv = Dataverse::connect(Config::for_simulator(&sim))
            .await
            .expect("connects to the simulator");
        let mut pages = Vec::new();
        for (table, labels) in [("account", false), ("new_widget", false), ("account", true)] {
            let def = dv
                .metadata()
                .table(table)
                .await
                .expect("metadata")
                .expect("table exists");
            let columns: Vec<usize> = (0..def.columns.len())
                .filter(|&i| labels || !def.columns[i].is_label())
                .collect();
            let (query, decoder) = projection_request(&def, &columns, MAX_PAGE_SIZE);
            // The option-set labels a scan fills, as it hands them to its decoder.
            let option_labels = dv
                .metadata()
                .option_labels(table)
                .await
                .expect("option sets")
                .expect("table exists");
            let decoder = decoder.with_labels(option_labels);
            let url = datafusion_dataverse::internals::client(&dv)
                .api_url(&query.relative_url().expect("no literals"));
            let response = datafusion_dataverse::internals::client(&dv)
                .get(&url, &query.preferences(), "benchmark page")
                .await
                .expect("page fetched");
            // Decode once up front: a page that does not decode, or is not full, would make
            // the figures meaningless.
            let rows = decoder
                .decode(&response.body)
                .expect("page decodes")
                .num_rows();
            assert_eq!(rows, MAX_PAGE_SIZE as usize, "{table}: a full page");
            pages.push(Page {
                table: if labels {
                    format!("{table}_with_labels")
                } else {
                    table.to_string()
                },
                body: response.body,
                rows,
                decoder,
            });
        }
        pages
    })
}

fn decode_pages(c: &mut Criterion) {
    for page in fetch_pages() {
        eprintln!(
            "{}: {} rows, {} columns, {} bytes ({:.0} bytes/row)",
            page.table,
            page.rows,
            page.decoder.schema().fields().len(),
            page.body.len(),
            page.body.len() as f64 / page.rows as f64
        );
        let mut group = c.benchmark_group(format!("decode/{}", page.table));
        // Both units from one measurement: MB/s for the per-core target, rows/s for scale.
        group.throughput(Throughput::ElementsAndBytes {
            elements: page.rows as u64,
            bytes: page.body.len() as u64,
        });
        group.bench_function("page_decoder", |b| {
            b.iter(|| page.decoder.decode(&page.body).expect("decodes"))
        });
        group.bench_function("serde_json_value", |b| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(&page.body).expect("parses"))
        });
        group.finish();
    }
}

criterion_group!(benches, decode_pages);
criterion_main!(benches);
