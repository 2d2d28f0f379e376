//! EXPLAIN in table format: each plan as a titled section, its lines indented and wrapped to
//! the terminal (120 columns in scripts) instead of one table cell padded to the longest line.
//! A scan's OData request is one long line; it is broken after `&`, `,` and spaces, with the
//! continuation indented under the line it continues. The plan text itself is unchanged: CSV
//! and JSON output keep DataFusion's cells as they are.

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::error::Result;

use super::cancel::CANCEL_CHECK_EXEC;
use super::print::escape;

/// The width plans are wrapped to when the terminal's is unknown.
pub const WIDTH: usize = 120;

/// The sections of an EXPLAIN result (columns `plan_type`, `plan`).
pub fn render(batches: &[RecordBatch], width: usize) -> Result<String> {
    let mut out = String::new();
    for batch in batches {
        if batch.num_columns() < 2 {
            continue;
        }
        let cast = |i: usize| {
            datafusion::arrow::compute::cast(
                batch.column(i),
                &datafusion::arrow::datatypes::DataType::Utf8,
            )
        };
        let (types, plans) = (cast(0)?, cast(1)?);
        let (types, plans) = (types.as_string::<i32>(), plans.as_string::<i32>());
        for row in 0..batch.num_rows() {
            out.push_str(&escape(types.value(row)));
            out.push('\n');
            for line in without_cancel_checks(plans.value(row)).lines() {
                for piece in wrap(line, width.saturating_sub(2).max(20)) {
                    out.push_str("  ");
                    out.push_str(&piece);
                    out.push('\n');
                }
            }
        }
    }
    Ok(out)
}

/// `batch` (an EXPLAIN result) with [`without_cancel_checks`] applied to its `plan` column,
/// for every output format.
pub fn clean_batch(batch: RecordBatch) -> Result<RecordBatch> {
    use datafusion::arrow::array::{Array, StringArray};
    use datafusion::arrow::datatypes::DataType;
    if batch.num_columns() < 2 || *batch.column(1).data_type() != DataType::Utf8 {
        return Ok(batch);
    }
    let plans = batch.column(1).as_string::<i32>();
    if !plans
        .iter()
        .flatten()
        .any(|p| p.contains(CANCEL_CHECK_EXEC))
    {
        return Ok(batch);
    }
    let cleaned: StringArray = plans.iter().map(|p| p.map(without_cancel_checks)).collect();
    let mut columns = batch.columns().to_vec();
    columns[1] = std::sync::Arc::new(cleaned) as std::sync::Arc<dyn Array>;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// EXPLAIN ANALYZE shows the plan that ran, which has the CLI's cancellation checks above
/// every node (see `cancel.rs`); they are left out and the nodes below moved back up.
pub fn without_cancel_checks(plan: &str) -> String {
    if !plan.contains(CANCEL_CHECK_EXEC) {
        return plan.to_string();
    }
    // (indent, is a check) of the lines above the current one, innermost last.
    let mut stack: Vec<(usize, bool)> = Vec::new();
    let mut out = String::new();
    for line in plan.lines() {
        let indent = line.len() - line.trim_start().len();
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let checks_above = stack.iter().filter(|(_, check)| *check).count();
        let is_check = line.trim_start().starts_with(CANCEL_CHECK_EXEC);
        stack.push((indent, is_check));
        if is_check {
            continue;
        }
        // DataFusion indents each level by two spaces.
        out.push_str(&" ".repeat(indent.saturating_sub(2 * checks_above)));
        out.push_str(line.trim_start());
        out.push('\n');
    }
    out
}

/// `line` in pieces of at most `width` characters, broken after a space, `,` or `&`; the
/// pieces after the first are indented four more than the line.
pub fn wrap(line: &str, width: usize) -> Vec<String> {
    if line.chars().count() <= width {
        return vec![line.to_string()];
    }
    let indent = line.len() - line.trim_start().len();
    let hang = " ".repeat(indent + 4);
    // Segments ending at a break point: a space, `&`, or a `,` outside parentheses (not
    // inside `Decimal128(1000000.0000,38,4)`).
    let mut segments: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    for c in line.trim_start().chars() {
        current.push(c);
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if c == ' ' || c == '&' || (c == ',' && depth == 0) {
            segments.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        segments.push(current);
    }
    let mut pieces: Vec<String> = Vec::new();
    let mut piece = " ".repeat(indent);
    for segment in segments {
        let len = piece.chars().count();
        if !piece.trim().is_empty() && len + segment.trim_end().chars().count() > width {
            pieces.push(piece.trim_end().to_string());
            piece = hang.clone();
        }
        // A segment longer than a whole line is cut where it must be.
        let mut rest: &str = &segment;
        while piece.chars().count() + rest.trim_end().chars().count() > width {
            let room = width.saturating_sub(piece.chars().count()).max(1);
            let cut = rest.char_indices().nth(room).map_or(rest.len(), |(i, _)| i);
            piece.push_str(&rest[..cut]);
            pieces.push(piece.trim_end().to_string());
            piece = hang.clone();
            rest = &rest[cut..];
        }
        piece.push_str(rest);
    }
    if !piece.trim().is_empty() {
        pieces.push(piece.trim_end().to_string());
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_break_after_ampersands_and_commas_with_a_hanging_indent() {
        let line = "  DataverseScanExec: GET accounts?$select=name,revenue,industrycode&$filter=revenue gt 1000000&$top=5";
        let pieces = wrap(line, 40);
        assert!(pieces.iter().all(|p| p.chars().count() <= 40), "{pieces:?}");
        assert_eq!(pieces[0], "  DataverseScanExec: GET");
        assert!(
            pieces[1..].iter().all(|p| p.starts_with("      ")),
            "{pieces:?}"
        );
        assert_eq!(
            pieces
                .iter()
                .map(|p| p.trim())
                .collect::<Vec<_>>()
                .join(" ")
                .replace(", ", ",")
                .replace("& ", "&"),
            line.trim()
        );
    }

    #[test]
    fn short_lines_are_left_alone() {
        assert_eq!(
            wrap("  ProjectionExec: expr=[a]", 120),
            vec!["  ProjectionExec: expr=[a]"]
        );
    }

    #[test]
    fn cancel_checks_are_left_out_of_analyzed_plans() {
        let plan = "CancelCheckExec\n  ProjectionExec: a\n    CancelCheckExec\n      ScanExec: b\n";
        assert_eq!(
            without_cancel_checks(plan),
            "ProjectionExec: a\n  ScanExec: b\n"
        );
    }
}
