//! The one error shape of the API:
//!
//! ```json
//! {"error": "Not Found", "message": "agent not found", "details": {...}}
//! ```
//!
//! `error` is the canonical reason phrase of the status; `details` is optional. Internal
//! failures are logged with their text and answered with a generic message: no SQL, paths,
//! tokens or keys ever reach a client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use openhive_store::StoreError;
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400, with optional structured details (e.g. `{"field": "name"}`).
    #[error("{message}")]
    BadRequest {
        message: String,
        details: Option<Value>,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    /// 503: the write queue is full; the client retries after `retry_after_secs`.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after_secs: u64,
    },
    /// 500. The text is logged, never returned.
    #[error("internal error: {0}")]
    Internal(String),
    /// Any other status (405 from the router, ...), message returned as is.
    #[error("{message}")]
    Other { status: StatusCode, message: String },
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            details: None,
        }
    }

    /// 400 for one invalid field.
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            details: Some(json!({ "field": field })),
        }
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Other { status, .. } => *status,
        }
    }
}

/// The JSON body of an error response with `status`.
pub fn error_body(status: StatusCode, message: &str, details: Option<Value>) -> Value {
    let mut body = json!({
        "error": status.canonical_reason().unwrap_or("Error"),
        "message": message,
    });
    if let (Some(d), Some(obj)) = (details, body.as_object_mut()) {
        obj.insert("details".into(), d);
    }
    body
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (message, details) = match self {
            ApiError::Internal(text) => {
                tracing::error!(error = %text, "internal error");
                ("internal server error".to_string(), None)
            }
            ApiError::BadRequest { message, details } => (message, details),
            ApiError::TooManyRequests {
                message,
                retry_after_secs,
            }
            | ApiError::Unavailable {
                message,
                retry_after_secs,
            } => {
                let mut resp =
                    (status, axum::Json(error_body(status, &message, None))).into_response();
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                return resp;
            }
            ApiError::Unauthorized(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::PayloadTooLarge(m)
            | ApiError::Unprocessable(m)
            | ApiError::Other { message: m, .. } => (m, None),
        };
        (status, axum::Json(error_body(status, &message, details))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Invalid(m) => ApiError::Unprocessable(m),
            StoreError::Overloaded => ApiError::Unavailable {
                message: "the server is busy; retry shortly".into(),
                retry_after_secs: 1,
            },
            e @ (StoreError::Db(_)
            | StoreError::Corrupt(_)
            | StoreError::Pool(_)
            | StoreError::Task(_)
            | StoreError::Migration { .. }
            | StoreError::SchemaTooNew { .. }) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection as J;
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::PayloadTooLarge("request body is too large".into());
        }
        let message = match &r {
            J::JsonDataError(_) => "request body does not match the expected shape",
            J::JsonSyntaxError(_) => "request body is not valid JSON",
            J::MissingJsonContentType(_) => {
                "expected a request with Content-Type: application/json"
            }
            _ => "could not read the request body",
        };
        ApiError::BadRequest {
            message: message.into(),
            details: Some(json!({ "reason": r.body_text() })),
        }
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(r: axum::extract::rejection::PathRejection) -> Self {
        if r.status().is_server_error() {
            return ApiError::Internal(r.body_text());
        }
        ApiError::BadRequest {
            message: "invalid path parameter".into(),
            details: Some(json!({ "reason": r.body_text() })),
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::BadRequest {
            message: "invalid query string".into(),
            details: Some(json!({ "reason": r.body_text() })),
        }
    }
}

impl From<crate::service::ServiceError> for ApiError {
    fn from(e: crate::service::ServiceError) -> Self {
        use crate::service::ServiceError as S;
        match e {
            S::NotFound(what) => ApiError::not_found(what),
            S::Forbidden(m) => ApiError::Forbidden(m),
            S::BadRequest(m) => ApiError::bad_request(m),
            S::Conflict(m) => ApiError::Conflict(m),
            S::Store(e) => e.into(),
        }
    }
}
