//! Extractors whose rejections come out in the API's JSON error shape. Use these instead of
//! `axum::Json`, `axum::extract::Path` and `axum::extract::Query` in every handler.

use super::error::ApiError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// JSON body extractor and response type. A bad body is a 400, a too large one a 413
/// (whatever else is wrong with the request: a body over the limit without a JSON content
/// type is still a 413).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

/// True if the request says its body is JSON (`application/json`, `application/*+json`).
fn is_json(req: &Request) -> bool {
    req.headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
}

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(&req) {
            // Refused for its content type; but an oversized body is a 413 first (read up to
            // the limit, no further).
            if let Err(r) = axum::body::Bytes::from_request(req, state).await
                && r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE
            {
                return Err(ApiError::PayloadTooLarge(
                    "request body is too large".into(),
                ));
            }
            return Err(ApiError::BadRequest {
                message: "expected a request with Content-Type: application/json".into(),
                details: Some(serde_json::json!({
                    "reason": "Expected request with `Content-Type: application/json`"
                })),
            });
        }
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(r) => Err(r.into()),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters; a parse failure is a 400.
#[derive(Debug, Clone)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(r) => Err(r.into()),
        }
    }
}

/// Query string; a parse failure is a 400.
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(r) => Err(r.into()),
        }
    }
}

/// `?limit&offset` with the API's bounds: limit 1..=100 (default 50), offset ≥ 0.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
pub struct PageParams {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl PageParams {
    /// Validated `(limit, offset)` with `default_limit` when none is given.
    pub fn resolve(&self, default_limit: i64) -> Result<(i64, i64), ApiError> {
        let limit = self.limit.unwrap_or(default_limit);
        if !(1..=100).contains(&limit) {
            return Err(ApiError::validation(
                "limit",
                "limit must be between 1 and 100",
            ));
        }
        let offset = self.offset.unwrap_or(0);
        if offset < 0 {
            return Err(ApiError::validation("offset", "offset must be >= 0"));
        }
        Ok((limit, offset))
    }
}

/// Deserializes a field that may be absent (`None`), `null` (`Some(None)`) or a value.
pub fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize as _;
    Option::<T>::deserialize(d).map(Some)
}
