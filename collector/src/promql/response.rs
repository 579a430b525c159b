//! The Prometheus HTTP API's instant-query response, mapped to workload values.

use std::collections::HashMap;

use serde::Deserialize;

use super::{PromqlError, PromqlQuery};
use crate::signal::WorkloadKey;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ApiResponse {
    pub(super) status: String,
    #[serde(default)]
    pub(super) data: Option<Data>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

impl ApiResponse {
    /// The data of a successful answer, or the error Prometheus gave.
    pub(super) fn parse(body: &[u8]) -> Result<Data, PromqlError> {
        let response: ApiResponse =
            serde_json::from_slice(body).map_err(|e| PromqlError::Json(e.to_string()))?;
        if response.status != "success" {
            return Err(PromqlError::Failed {
                error_type: response.error_type.unwrap_or_else(|| "unknown".into()),
                error: response.error.unwrap_or_default(),
            });
        }
        response
            .data
            .ok_or_else(|| PromqlError::Json("success without data".into()))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Data {
    pub(super) result_type: String,
    pub(super) result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorSample {
    #[serde(default)]
    metric: HashMap<String, String>,
    /// `[unix seconds, "value"]`: Prometheus writes values as strings to carry NaN/Inf.
    value: (f64, String),
}

/// An instant vector as per-workload values.
#[derive(Debug, Default, PartialEq)]
pub struct VectorResult {
    /// Summed per workload, in case the expression was not aggregated by tenant and app.
    pub values: Vec<(WorkloadKey, f64)>,
    /// Evaluation time of the samples, unix milliseconds.
    pub at_ms: Option<i64>,
    /// Samples without the labels or with a value that is not a finite number.
    pub skipped: u64,
}

pub fn parse_vector(body: &[u8], query: &PromqlQuery) -> Result<VectorResult, PromqlError> {
    let data = ApiResponse::parse(body)?;
    if data.result_type != "vector" {
        return Err(PromqlError::NotVector(data.result_type));
    }
    let samples: Vec<VectorSample> =
        serde_json::from_value(data.result).map_err(|e| PromqlError::Json(e.to_string()))?;
    let mut result = VectorResult::default();
    let mut sums: HashMap<WorkloadKey, f64> = HashMap::new();
    for sample in samples {
        let value = sample.value.1.parse::<f64>().ok().filter(|v| v.is_finite());
        let (Some(tenant), Some(app), Some(value)) = (
            sample.metric.get(&query.tenant_label),
            sample.metric.get(&query.app_label),
            value,
        ) else {
            result.skipped += 1;
            continue;
        };
        if tenant.is_empty() || app.is_empty() {
            result.skipped += 1;
            continue;
        }
        *sums
            .entry(WorkloadKey::new(tenant.as_str(), app.as_str()))
            .or_default() += value;
        let at_ms = (sample.value.0 * 1000.0).round() as i64;
        result.at_ms = Some(result.at_ms.map_or(at_ms, |t| t.max(at_ms)));
    }
    result.values = sums.into_iter().collect();
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::super::tests::query;
    use super::*;

    #[test]
    fn a_vector_maps_to_workloads_and_skips_what_it_cannot_map() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"tenant":"acme","app":"web"},"value":[1700000000.5,"12.5"]},
            {"metric":{"tenant":"acme","app":"web","route":"/b"},"value":[1700000000.5,"2.5"]},
            {"metric":{"tenant":"acme","app":"api"},"value":[1700000000.5,"NaN"]},
            {"metric":{"app":"lost"},"value":[1700000000.5,"1"]}]}}"#;
        let result = parse_vector(body, &query()).unwrap();
        assert_eq!(result.values, vec![(WorkloadKey::new("acme", "web"), 15.0)]);
        assert_eq!(result.skipped, 2);
        assert_eq!(result.at_ms, Some(1_700_000_000_500));
    }

    #[test]
    fn errors_and_other_result_types_are_reported() {
        let error = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#;
        let message = parse_vector(error, &query()).unwrap_err().to_string();
        assert!(
            message.contains("bad_data") && message.contains("char 5"),
            "{message}"
        );
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(matches!(
            parse_vector(matrix, &query()),
            Err(PromqlError::NotVector(kind)) if kind == "matrix"
        ));
        assert!(matches!(
            parse_vector(b"<html>", &query()),
            Err(PromqlError::Json(_))
        ));
    }
}
