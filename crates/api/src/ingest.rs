//! Parsing of reading batches in the three formats `POST /api/v1/readings` accepts — a JSON
//! array, NDJSON, CSV — into rows that are each either usable or rejected with a reason, so one
//! bad row never costs the others.

use chrono::{DateTime, Utc};
use ecocityhub_domain::reading::{parse_time, IncomingReading};
use ecocityhub_domain::{Parameter, QualityFlag, StationId, Unit};
use serde::Deserialize;

use crate::error::{ApiError, ApiResult, RowProblem};

/// The most rows one request may carry.
pub const MAX_BATCH_ROWS: usize = 10_000;
/// The largest body `POST /api/v1/readings` accepts (bytes).
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// The body formats, chosen by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    NdJson,
    Csv,
}

impl Format {
    pub fn from_content_type(ct: Option<&str>) -> ApiResult<Format> {
        let essence = ct
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Ok(Format::Json),
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/x-jsonlines" => {
                Ok(Format::NdJson)
            }
            "text/csv" | "application/csv" => Ok(Format::Csv),
            "" => Err(ApiError::UnsupportedMediaType(
                "missing Content-Type: send application/json, application/x-ndjson or text/csv".into(),
            )),
            other => Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type {other:?} is not accepted: send application/json, application/x-ndjson or text/csv"
            ))),
        }
    }
}

/// One row as a client writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RowIn {
    station: Option<String>,
    parameter: String,
    time: String,
    value: f64,
    unit: Option<String>,
    flag: Option<String>,
}

/// A parsed row: the station it names (if any) and the reading, or why it is rejected.
pub type ParsedRow = Result<(Option<StationId>, IncomingReading), String>;

/// Parses a body into rows. Fails as a whole only when the body itself cannot be read
/// (malformed JSON array, CSV without the needed header, too many rows).
pub fn parse(
    format: Format,
    body: &[u8],
    default_station: &StationId,
) -> ApiResult<Vec<ParsedRow>> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not UTF-8: {e}")))?;
    let rows: Vec<Result<RowIn, String>> = match format {
        Format::Json => {
            let values: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|e| {
                ApiError::BadRequest(format!("the body is not a JSON array of readings: {e}"))
            })?;
            check_count(values.len())?;
            values
                .into_iter()
                .map(|v| serde_json::from_value::<RowIn>(v).map_err(|e| e.to_string()))
                .collect()
        }
        Format::NdJson => {
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            check_count(lines.len())?;
            lines
                .into_iter()
                .map(|l| serde_json::from_str::<RowIn>(l).map_err(|e| e.to_string()))
                .collect()
        }
        Format::Csv => parse_csv(text)?,
    };
    Ok(rows
        .into_iter()
        .map(|r| r.and_then(|row| to_incoming(row, default_station)))
        .collect())
}

fn check_count(n: usize) -> ApiResult<()> {
    if n > MAX_BATCH_ROWS {
        return Err(ApiError::PayloadTooLarge(format!(
            "the batch has {n} rows; send at most {MAX_BATCH_ROWS} per request"
        )));
    }
    Ok(())
}

fn parse_csv(text: &str) -> ApiResult<Vec<Result<RowIn, String>>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| ApiError::BadRequest(format!("the CSV header cannot be read: {e}")))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(p), Some(t), Some(v)) = (col("parameter"), col("time"), col("value")) else {
        return Err(ApiError::BadRequest(format!(
            "the CSV header must name the columns parameter, time and value (and may name station, unit, flag); got: {}",
            headers.iter().collect::<Vec<_>>().join(",")
        )));
    };
    // `site` is the shared data's name for the station column: a row naming another station
    // there is refused like one naming it under `station`.
    let (s, site, u, f) = (col("station"), col("site"), col("unit"), col("flag"));
    let records: Vec<Result<csv::StringRecord, csv::Error>> = reader.records().collect();
    check_count(records.len())?;
    Ok(records
        .into_iter()
        .map(|rec| {
            let rec = rec.map_err(|e| format!("unreadable CSV row: {e}"))?;
            if rec.len() != headers.len() {
                return Err(format!(
                    "the row has {} fields, the header {}",
                    rec.len(),
                    headers.len()
                ));
            }
            let get = |i: Option<usize>| {
                i.and_then(|i| rec.get(i))
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            };
            let raw_value = get(Some(v)).ok_or("value is empty")?;
            let station = match (get(s), get(site)) {
                (Some(a), Some(b)) if a != b => {
                    return Err(format!("the row's station {a:?} and site {b:?} differ"))
                }
                (a, b) => a.or(b),
            };
            Ok(RowIn {
                station,
                parameter: get(Some(p)).ok_or("parameter is empty")?,
                time: get(Some(t)).ok_or("time is empty")?,
                value: raw_value
                    .parse()
                    .map_err(|_| format!("value {raw_value:?} is not a number"))?,
                unit: get(u),
                flag: get(f),
            })
        })
        .collect())
}

fn to_incoming(row: RowIn, default_station: &StationId) -> ParsedRow {
    let named = row
        .station
        .map(|s| StationId::parse(&s).map_err(|e| e.to_string()))
        .transpose()?;
    let parameter: Parameter = row
        .parameter
        .parse()
        .map_err(|e: ecocityhub_domain::parameter::UnknownParameter| e.to_string())?;
    let unit = row
        .unit
        .map(|u| u.parse::<Unit>().map_err(|e| e.to_string()))
        .transpose()?;
    let flag = row
        .flag
        .as_deref()
        .map_or(Ok(QualityFlag::Valid), str::parse)?;
    let time: DateTime<Utc> = parse_time(&row.time)?;
    Ok((
        named,
        IncomingReading {
            station: default_station.clone(),
            parameter,
            time,
            value: row.value,
            unit,
            flag,
        },
    ))
}

/// Collects the rejected rows of a parse, with their indices.
pub fn problems(rows: &[ParsedRow]) -> Vec<RowProblem> {
    rows.iter()
        .enumerate()
        .filter_map(|(index, r)| {
            r.as_ref().err().map(|reason| RowProblem {
                index,
                reason: reason.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st() -> StationId {
        StationId::parse("s1").unwrap()
    }

    #[test]
    fn content_types_choose_the_format() {
        assert_eq!(
            Format::from_content_type(Some("application/json; charset=utf-8")).unwrap(),
            Format::Json
        );
        assert_eq!(
            Format::from_content_type(Some("application/x-ndjson")).unwrap(),
            Format::NdJson
        );
        assert_eq!(
            Format::from_content_type(Some("text/csv")).unwrap(),
            Format::Csv
        );
        assert!(matches!(
            Format::from_content_type(Some("text/plain")),
            Err(ApiError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            Format::from_content_type(None),
            Err(ApiError::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn json_rows_fail_one_by_one() {
        let body = br#"[
            {"parameter":"pm25","time":"2024-01-01T00:00:00Z","value":12.5},
            {"parameter":"pm1","time":"2024-01-01T00:00:00Z","value":1},
            {"parameter":"no2","time":"2024-01-01T00:00:00Z","value":20,"unit":"ppb","station":"s1"},
            {"parameter":"no2","time":"not a time","value":20},
            {"parameter":"no2","time":"2024-01-01T00:00:00Z","value":"high"}
        ]"#;
        let rows = parse(Format::Json, body, &st()).unwrap();
        assert_eq!(rows.len(), 5);
        assert!(rows[0].is_ok());
        assert!(rows[1].as_ref().unwrap_err().contains("unknown parameter"));
        let (named, r) = rows[2].as_ref().unwrap();
        assert_eq!(named.as_ref().unwrap().as_str(), "s1");
        assert_eq!(r.unit, Some(Unit::Ppb));
        assert!(rows[3].as_ref().unwrap_err().contains("not an ISO-8601"));
        assert!(rows[4].is_err());
        assert_eq!(
            problems(&rows).iter().map(|p| p.index).collect::<Vec<_>>(),
            vec![1, 3, 4]
        );
    }

    #[test]
    fn malformed_json_fails_the_request() {
        assert!(matches!(
            parse(Format::Json, b"[{", &st()),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse(Format::Json, b"{\"a\":1}", &st()),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn ndjson_and_csv_parse() {
        let nd =
            b"{\"parameter\":\"o3\",\"time\":\"2024-01-01T00:00:00Z\",\"value\":40}\n\n{oops}\n";
        let rows = parse(Format::NdJson, nd, &st()).unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows[0].is_ok() && rows[1].is_err());
        let csv = b"time,parameter,value,unit\n2024-01-01T00:00:00Z,no2,20,ppb\n2024-01-01T01:00:00Z,no2,abc,ppb\n2024-01-01T02:00:00Z,no2\n";
        let rows = parse(Format::Csv, csv, &st()).unwrap();
        assert_eq!(rows.len(), 3);
        assert!(rows[0].is_ok());
        assert!(rows[1].as_ref().unwrap_err().contains("not a number"));
        assert!(rows[2].as_ref().unwrap_err().contains("fields"));
        assert!(matches!(
            parse(Format::Csv, b"a,b\n1,2\n", &st()),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn oversized_batches_are_refused() {
        let mut body = String::from("[");
        for i in 0..=MAX_BATCH_ROWS {
            if i > 0 {
                body.push(',');
            }
            body.push_str(r#"{"parameter":"pm25","time":"2024-01-01T00:00:00Z","value":1}"#);
        }
        body.push(']');
        assert!(matches!(
            parse(Format::Json, body.as_bytes(), &st()),
            Err(ApiError::PayloadTooLarge(_))
        ));
    }
}
