//! Every way a request can be refused, and the single place that turns a refusal into an HTTP
//! response. Other modules return their own error types; the pipeline converts them into a
//! [`Rejection`] and [`Rejection::into_response`] is the only code that knows statuses,
//! `WWW-Authenticate` forms and body shapes (SPEC §3). It does not log: the access log records the
//! outcome once, in `proxy::pipeline`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use crate::http::body::ProxyBody;

/// The closed set of reasons (SPEC §6). Used as a metric label, so it must stay bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Ok,
    Public,
    MissingToken,
    MalformedToken,
    BadAlg,
    UnknownKid,
    BadSignature,
    Expired,
    NotYetValid,
    BadIss,
    BadTokenUse,
    BadClient,
    BadClaim,
    UnencodableClaim,
    InsufficientScope,
    ForbiddenGroup,
    ForbiddenClaim,
    NoRoute,
    KeysUnavailable,
    AmbiguousPath,
    BadRequest,
    HeaderTooLarge,
    UpstreamConnect,
    UpstreamReset,
    UpstreamTimeout,
    UpstreamProtocol,
    ClientAbort,
    /// A sign-in callback failed (SPEC §8).
    LoginFailed,
    /// The provider refused a session's refresh token (SPEC §8).
    SessionExpired,
    /// The identity provider could not be reached (SPEC §8).
    IdpUnavailable,
}

impl Reason {
    /// Every reason, in SPEC §6 order (docs and dashboards are checked against this list).
    pub const ALL: [Reason; 30] = [
        Reason::Ok,
        Reason::Public,
        Reason::MissingToken,
        Reason::MalformedToken,
        Reason::BadAlg,
        Reason::UnknownKid,
        Reason::BadSignature,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::BadIss,
        Reason::BadTokenUse,
        Reason::BadClient,
        Reason::BadClaim,
        Reason::UnencodableClaim,
        Reason::InsufficientScope,
        Reason::ForbiddenGroup,
        Reason::ForbiddenClaim,
        Reason::NoRoute,
        Reason::KeysUnavailable,
        Reason::AmbiguousPath,
        Reason::BadRequest,
        Reason::HeaderTooLarge,
        Reason::UpstreamConnect,
        Reason::UpstreamReset,
        Reason::UpstreamTimeout,
        Reason::UpstreamProtocol,
        Reason::ClientAbort,
        Reason::LoginFailed,
        Reason::SessionExpired,
        Reason::IdpUnavailable,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::Public => "public",
            Reason::MissingToken => "missing_token",
            Reason::MalformedToken => "malformed_token",
            Reason::BadAlg => "bad_alg",
            Reason::UnknownKid => "unknown_kid",
            Reason::BadSignature => "bad_signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::BadIss => "bad_iss",
            Reason::BadTokenUse => "bad_token_use",
            Reason::BadClient => "bad_client",
            Reason::BadClaim => "bad_claim",
            Reason::UnencodableClaim => "unencodable_claim",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::ForbiddenGroup => "forbidden_group",
            Reason::ForbiddenClaim => "forbidden_claim",
            Reason::NoRoute => "no_route",
            Reason::KeysUnavailable => "keys_unavailable",
            Reason::AmbiguousPath => "ambiguous_path",
            Reason::BadRequest => "bad_request",
            Reason::HeaderTooLarge => "header_too_large",
            Reason::UpstreamConnect => "upstream_connect",
            Reason::UpstreamReset => "upstream_reset",
            Reason::UpstreamTimeout => "upstream_timeout",
            Reason::UpstreamProtocol => "upstream_protocol",
            Reason::ClientAbort => "client_abort",
            Reason::LoginFailed => "login_failed",
            Reason::SessionExpired => "session_expired",
            Reason::IdpUnavailable => "idp_unavailable",
        }
    }

    /// The fixed, generic text for `error_description`. Never contains request or token data
    /// (OBS-04): details go to the log, not to the client.
    const fn description(self) -> &'static str {
        match self {
            Reason::Ok | Reason::Public => "ok",
            Reason::MissingToken => "a bearer token is required",
            Reason::MalformedToken => "the token is malformed",
            Reason::BadAlg => "the token algorithm is not accepted",
            Reason::UnknownKid => "the token signing key is unknown",
            Reason::BadSignature => "the token signature is invalid",
            Reason::Expired => "token expired",
            Reason::NotYetValid => "the token is not yet valid",
            Reason::BadIss => "the token issuer is not accepted",
            Reason::BadTokenUse => "the token type is not accepted here",
            Reason::BadClient => "the token was issued to another client",
            Reason::BadClaim => "the token claims are invalid",
            Reason::UnencodableClaim => "the identity cannot be forwarded",
            Reason::InsufficientScope => "the token lacks a required scope",
            Reason::ForbiddenGroup => "access denied",
            Reason::ForbiddenClaim => "access denied",
            Reason::NoRoute => "access denied",
            Reason::KeysUnavailable => "token verification is temporarily unavailable",
            Reason::AmbiguousPath => "the request path is ambiguous",
            Reason::BadRequest => "the request is malformed",
            Reason::HeaderTooLarge => "request headers too large",
            Reason::UpstreamConnect => "the application is unavailable",
            Reason::UpstreamReset => "the application closed the connection",
            Reason::UpstreamTimeout => "the application did not answer in time",
            Reason::UpstreamProtocol => "the application sent an invalid response",
            Reason::ClientAbort => "client closed the request",
            Reason::LoginFailed => "sign-in failed",
            Reason::SessionExpired => "the session has expired; sign in again",
            Reason::IdpUnavailable => "the identity provider is temporarily unavailable",
        }
    }
}

/// Why a request was not forwarded (or could not be completed). Made by the pipeline stages;
/// turned into a response only by [`Rejection::into_response`].
///
/// The variants that share a status carry a small enum of their own reasons instead of any
/// [`Reason`], so a wrong pair (`Forbidden` with `expired`, `BadRequest` with `no_route`) cannot
/// be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No credential on a route that needs one.
    MissingToken,
    /// A credential was presented but is not a valid token for this route.
    InvalidToken(InvalidToken),
    /// Valid token without a required scope; carries the space-joined scopes that would satisfy
    /// the route (they come from config, never from the token).
    InsufficientScope {
        scope: String,
    },
    /// Valid token, group or claim requirement not met, or no route.
    Forbidden(Forbidden),
    /// The identity cannot be encoded within the configured limits.
    UnencodableClaim,
    /// The token's issuer has no usable keys.
    KeysUnavailable,
    /// Ambiguous or malformed request.
    BadRequest(BadRequest),
    /// `CONNECT`, `TRACE`, h2c upgrade.
    MethodNotAllowed,
    /// Request headers or token section too large.
    HeaderTooLarge,
    /// The request target is longer than `limits.max_uri_bytes`.
    UriTooLong,
    /// Upstream failures.
    UpstreamConnect,
    UpstreamReset,
    UpstreamTimeout,
    UpstreamProtocol,
    /// The client went away before the response; no response is sent, only logged.
    ClientAbort,
    /// A browser navigation without a credential (or whose session ended), where sign-in is
    /// configured: 302 to the authorize endpoint (SPEC §3, §8). `reason` is what it replaces
    /// (`missing_token` or `session_expired`).
    SignIn {
        location: HeaderValue,
        reason: SignIn,
    },
    /// A sign-in callback whose `state` matches no pending sign-in (or is missing, or replayed):
    /// 400 `login_failed`, nothing exchanged (SECURITY LOGIN-01).
    LoginState,
    /// A sign-in that failed at the provider or in token verification: 401 `login_failed`.
    LoginFailed,
    /// The provider refused the session's refresh token: 401 `session_expired`.
    SessionExpired,
    /// The provider could not be reached: 503 `idp_unavailable` with `Retry-After`.
    IdpUnavailable,
}

/// What is wrong with a presented token (401 `invalid_token`): only the token reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidToken {
    Malformed,
    BadAlg,
    UnknownKid,
    BadSignature,
    Expired,
    NotYetValid,
    BadIss,
    BadTokenUse,
    BadClient,
    BadClaim,
}

impl InvalidToken {
    pub const fn reason(self) -> Reason {
        match self {
            InvalidToken::Malformed => Reason::MalformedToken,
            InvalidToken::BadAlg => Reason::BadAlg,
            InvalidToken::UnknownKid => Reason::UnknownKid,
            InvalidToken::BadSignature => Reason::BadSignature,
            InvalidToken::Expired => Reason::Expired,
            InvalidToken::NotYetValid => Reason::NotYetValid,
            InvalidToken::BadIss => Reason::BadIss,
            InvalidToken::BadTokenUse => Reason::BadTokenUse,
            InvalidToken::BadClient => Reason::BadClient,
            InvalidToken::BadClaim => Reason::BadClaim,
        }
    }
}

/// Why a request is refused with a plain 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    /// No route matches the path and method.
    NoRoute,
    /// A `groups_any` / `groups_all` requirement is not met.
    Group,
    /// A `claims` requirement is not met.
    Claim,
    /// A `require.issuers` restriction is not met: the token is valid, from another pool.
    Issuer,
    /// A sign-out `GET` not from this site (SPEC §8 "Sign-out"): it could be an `<img>` on any
    /// page, so it does nothing (`bad_request`).
    CrossSiteLogout,
}

impl Forbidden {
    pub const fn reason(self) -> Reason {
        match self {
            Forbidden::NoRoute => Reason::NoRoute,
            Forbidden::Group => Reason::ForbiddenGroup,
            Forbidden::Claim => Reason::ForbiddenClaim,
            Forbidden::Issuer => Reason::BadIss,
            Forbidden::CrossSiteLogout => Reason::BadRequest,
        }
    }
}

/// Why the request itself is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRequest {
    /// Malformed framing, method, `Host`, or a client body that failed mid-stream (`bad_request`).
    Malformed,
    /// The path could be read more than one way (`ambiguous_path`).
    AmbiguousPath,
    /// Several credentials and no way to tell which one the app meant (`malformed_token`).
    AmbiguousCredential,
}

impl BadRequest {
    pub const fn reason(self) -> Reason {
        match self {
            BadRequest::Malformed => Reason::BadRequest,
            BadRequest::AmbiguousPath => Reason::AmbiguousPath,
            BadRequest::AmbiguousCredential => Reason::MalformedToken,
        }
    }
}

/// What a sign-in redirect replaces (SPEC §8): the request had no credential, or its session
/// ended at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignIn {
    MissingToken,
    SessionExpired,
}

impl SignIn {
    pub const fn reason(self) -> Reason {
        match self {
            SignIn::MissingToken => Reason::MissingToken,
            SignIn::SessionExpired => Reason::SessionExpired,
        }
    }
}

/// What the access log and metrics record about an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Public,
    Deny,
    AuditDeny,
    Error,
}

impl Decision {
    /// Every decision label value (SPEC §6).
    pub const ALL: [Decision; 5] =
        [Decision::Allow, Decision::Public, Decision::Deny, Decision::AuditDeny, Decision::Error];

    pub const fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Public => "public",
            Decision::Deny => "deny",
            Decision::AuditDeny => "audit_deny",
            Decision::Error => "error",
        }
    }
}

const REALM: &str = "Bearer realm=\"portcullis\"";

impl Rejection {
    pub fn reason(&self) -> Reason {
        match self {
            Rejection::MissingToken => Reason::MissingToken,
            Rejection::InvalidToken(r) => r.reason(),
            Rejection::Forbidden(r) => r.reason(),
            Rejection::BadRequest(r) => r.reason(),
            Rejection::InsufficientScope { .. } => Reason::InsufficientScope,
            Rejection::UnencodableClaim => Reason::UnencodableClaim,
            Rejection::KeysUnavailable => Reason::KeysUnavailable,
            Rejection::MethodNotAllowed | Rejection::UriTooLong => Reason::BadRequest,
            Rejection::HeaderTooLarge => Reason::HeaderTooLarge,
            Rejection::UpstreamConnect => Reason::UpstreamConnect,
            Rejection::UpstreamReset => Reason::UpstreamReset,
            Rejection::UpstreamTimeout => Reason::UpstreamTimeout,
            Rejection::UpstreamProtocol => Reason::UpstreamProtocol,
            Rejection::ClientAbort => Reason::ClientAbort,
            Rejection::SignIn { reason, .. } => reason.reason(),
            Rejection::LoginState | Rejection::LoginFailed => Reason::LoginFailed,
            Rejection::SessionExpired => Reason::SessionExpired,
            Rejection::IdpUnavailable => Reason::IdpUnavailable,
        }
    }

    /// Who is at fault (SPEC §6). `deny`: every refusal the client caused — no or a bad token, a
    /// rule not met, and a malformed, ambiguous, oversized or forbidden-method request (400, 401,
    /// 403, 405, 414, 431). `error`: Portcullis or the app failed (503, 502, 504), or the client
    /// went away. Dashboards and alerts page on `error`, so attack traffic must never land there.
    pub fn decision(&self) -> Decision {
        match self {
            Rejection::MissingToken
            | Rejection::InvalidToken(_)
            | Rejection::InsufficientScope { .. }
            | Rejection::Forbidden(_)
            | Rejection::UnencodableClaim
            | Rejection::SignIn { .. }
            | Rejection::LoginState
            | Rejection::LoginFailed
            | Rejection::SessionExpired
            | Rejection::BadRequest(_)
            | Rejection::MethodNotAllowed
            | Rejection::HeaderTooLarge
            | Rejection::UriTooLong => Decision::Deny,
            Rejection::KeysUnavailable
            | Rejection::IdpUnavailable
            | Rejection::UpstreamConnect
            | Rejection::UpstreamReset
            | Rejection::UpstreamTimeout
            | Rejection::UpstreamProtocol
            | Rejection::ClientAbort => Decision::Error,
        }
    }

    /// The one exhaustive mapping from refusal to status, `WWW-Authenticate` and body (SPEC §3).
    /// The refusal as a response. `origin` is the request's `Origin`, when it had one.
    pub fn into_response(self, request_id: &str, origin: Option<&HeaderValue>) -> Response<ProxyBody> {
        let reason = self.reason();
        let (status, error, www_authenticate): (StatusCode, &str, Option<String>) = match &self {
            // RFC 6750 §3.1: no `error` attribute when the request carried no credential.
            Rejection::MissingToken => (StatusCode::UNAUTHORIZED, "unauthorized", Some(REALM.to_owned())),
            Rejection::InvalidToken(r) => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                Some(format!("{REALM}, error=\"invalid_token\", error_description=\"{}\"", r.reason().description())),
            ),
            Rejection::InsufficientScope { scope } => (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                // The scope list comes from config (validated as header-safe at load), never from
                // the token.
                Some(format!("{REALM}, error=\"insufficient_scope\", scope=\"{scope}\"")),
            ),
            Rejection::Forbidden(_) | Rejection::UnencodableClaim => (StatusCode::FORBIDDEN, "forbidden", None),
            Rejection::KeysUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", None),
            Rejection::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request", None),
            Rejection::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None),
            Rejection::HeaderTooLarge => (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "invalid_request", None),
            Rejection::UriTooLong => (StatusCode::URI_TOO_LONG, "invalid_request", None),
            Rejection::UpstreamConnect | Rejection::UpstreamReset | Rejection::UpstreamProtocol => {
                (StatusCode::BAD_GATEWAY, "bad_gateway", None)
            }
            Rejection::UpstreamTimeout => (StatusCode::GATEWAY_TIMEOUT, "gateway_timeout", None),
            Rejection::SignIn { .. } => (StatusCode::FOUND, "sign_in_required", None),
            Rejection::LoginState => (StatusCode::BAD_REQUEST, "login_failed", None),
            Rejection::LoginFailed => (StatusCode::UNAUTHORIZED, "login_failed", None),
            Rejection::SessionExpired => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                Some(format!("{REALM}, error=\"invalid_token\", error_description=\"{}\"", reason.description())),
            ),
            Rejection::IdpUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", None),
            // Nobody is listening; a response is still built so the types stay simple.
            Rejection::ClientAbort => (StatusCode::BAD_REQUEST, "client_abort", None),
        };
        let body = serde_json::json!({
            "error": error,
            "error_description": reason.description(),
            "request_id": request_id,
        });
        let mut response =
            Response::new(Full::new(Bytes::from(body.to_string())).map_err(|never| match never {}).boxed_unsync());
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(value) = www_authenticate.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if matches!(self, Rejection::KeysUnavailable | Rejection::IdpUnavailable) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let Rejection::SignIn { location, .. } = &self {
            headers.insert(header::LOCATION, location.clone());
        }
        if matches!(self, Rejection::MethodNotAllowed) {
            headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"));
        }
        if status == StatusCode::BAD_REQUEST {
            // A malformed request may have left the connection in an unknown state.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(origin) = origin.filter(|o| is_web_origin(o)) {
            // A browser app on another origin must be able to read a refusal — "token expired,
            // refresh it" is not a network error. The app never sees refused requests, so it
            // cannot answer for them. Safe to reflect: the body names only the refusal (never a
            // claim or the token), and without `Access-Control-Allow-Credentials` a page can read
            // only refusals of requests it could have made itself without cookies.
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("WWW-Authenticate, Retry-After, X-Request-Id"),
            );
            headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        response
    }
}

/// `http(s)://host[:port]` as browsers serialise an origin. `null` (sandboxed documents, local
/// files) is never reflected.
fn is_web_origin(origin: &HeaderValue) -> bool {
    let Ok(s) = origin.to_str() else { return false };
    let Some(rest) = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")) else { return false };
    !rest.is_empty()
        && rest.len() <= 253 + 6
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(r: Rejection) -> (StatusCode, Option<String>, serde_json::Value) {
        let resp = r.into_response("rid-1", None);
        let www = resp.headers().get(header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap_or_default().to_owned());
        let status = resp.status();
        let body = futures_lite_body(resp);
        (status, www, body)
    }

    fn futures_lite_body(resp: Response<ProxyBody>) -> serde_json::Value {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let bytes = rt.block_on(async { resp.into_body().collect().await.unwrap().to_bytes() });
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn missing_token_has_no_error_attribute() {
        let (status, www, body) = parts(Rejection::MissingToken);
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(www.as_deref(), Some("Bearer realm=\"portcullis\""));
        assert_eq!(body["request_id"], "rid-1");
    }

    #[test]
    fn invalid_token_names_the_error() {
        let (status, www, body) = parts(Rejection::InvalidToken(InvalidToken::Expired));
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            www.as_deref(),
            Some("Bearer realm=\"portcullis\", error=\"invalid_token\", error_description=\"token expired\"")
        );
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(body["error_description"], "token expired");
    }

    #[test]
    fn statuses_follow_the_spec_table() {
        let table = [
            (Rejection::InsufficientScope { scope: "a b".into() }, 403),
            (Rejection::Forbidden(Forbidden::Group), 403),
            (Rejection::Forbidden(Forbidden::NoRoute), 403),
            (Rejection::UnencodableClaim, 403),
            (Rejection::KeysUnavailable, 503),
            (Rejection::BadRequest(BadRequest::AmbiguousPath), 400),
            (Rejection::MethodNotAllowed, 405),
            (Rejection::HeaderTooLarge, 431),
            (Rejection::UriTooLong, 414),
            (Rejection::UpstreamConnect, 502),
            (Rejection::UpstreamReset, 502),
            (Rejection::UpstreamProtocol, 502),
            (Rejection::UpstreamTimeout, 504),
            (
                Rejection::SignIn { location: HeaderValue::from_static("https://idp/"), reason: SignIn::MissingToken },
                302,
            ),
            (Rejection::LoginState, 400),
            (Rejection::LoginFailed, 401),
            (Rejection::SessionExpired, 401),
            (Rejection::IdpUnavailable, 503),
        ];
        for (rejection, status) in table {
            let label = format!("{rejection:?}");
            assert_eq!(parts(rejection).0.as_u16(), status, "{label}");
        }
    }

    /// SPEC §6: a refusal the client caused is `deny`, whatever its status; `error` is kept for
    /// faults of Portcullis or the app (5xx) and for clients that went away.
    #[test]
    fn client_caused_refusals_are_deny_and_only_faults_are_error() {
        let every = [
            Rejection::MissingToken,
            Rejection::InvalidToken(InvalidToken::Expired),
            Rejection::InsufficientScope { scope: "a".into() },
            Rejection::Forbidden(Forbidden::Issuer),
            Rejection::UnencodableClaim,
            Rejection::KeysUnavailable,
            Rejection::BadRequest(BadRequest::AmbiguousCredential),
            Rejection::BadRequest(BadRequest::AmbiguousPath),
            Rejection::BadRequest(BadRequest::Malformed),
            Rejection::MethodNotAllowed,
            Rejection::HeaderTooLarge,
            Rejection::UriTooLong,
            Rejection::UpstreamConnect,
            Rejection::UpstreamReset,
            Rejection::UpstreamTimeout,
            Rejection::UpstreamProtocol,
        ];
        for rejection in every {
            let label = format!("{rejection:?}");
            let decision = rejection.decision();
            let status = parts(rejection).0;
            let want = if status.is_server_error() { Decision::Error } else { Decision::Deny };
            assert_eq!(decision, want, "{label} ({status})");
        }
        assert_eq!(Rejection::ClientAbort.decision(), Decision::Error);
    }

    /// `Reason::ALL` lists every variant exactly once (the docs and dashboard tests read it).
    #[test]
    fn every_reason_is_listed_once() {
        // Exhaustive: a new variant does not compile until it has a place here and in `ALL`.
        let position = |r: Reason| match r {
            Reason::Ok => 0,
            Reason::Public => 1,
            Reason::MissingToken => 2,
            Reason::MalformedToken => 3,
            Reason::BadAlg => 4,
            Reason::UnknownKid => 5,
            Reason::BadSignature => 6,
            Reason::Expired => 7,
            Reason::NotYetValid => 8,
            Reason::BadIss => 9,
            Reason::BadTokenUse => 10,
            Reason::BadClient => 11,
            Reason::BadClaim => 12,
            Reason::UnencodableClaim => 13,
            Reason::InsufficientScope => 14,
            Reason::ForbiddenGroup => 15,
            Reason::ForbiddenClaim => 16,
            Reason::NoRoute => 17,
            Reason::KeysUnavailable => 18,
            Reason::AmbiguousPath => 19,
            Reason::BadRequest => 20,
            Reason::HeaderTooLarge => 21,
            Reason::UpstreamConnect => 22,
            Reason::UpstreamReset => 23,
            Reason::UpstreamTimeout => 24,
            Reason::UpstreamProtocol => 25,
            Reason::ClientAbort => 26,
            Reason::LoginFailed => 27,
            Reason::SessionExpired => 28,
            Reason::IdpUnavailable => 29,
        };
        for (i, r) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(position(r), i, "{}", r.as_str());
        }
        let names: std::collections::HashSet<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Reason::ALL.len());
    }

    #[test]
    fn refusals_reflect_only_web_origins_without_credentials() {
        let origin = |v: &'static str| {
            let resp = Rejection::MissingToken.into_response("r", Some(&HeaderValue::from_static(v)));
            let h = resp.headers();
            assert!(h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
            h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(origin("https://app.example.com").as_deref(), Some("https://app.example.com"));
        assert_eq!(origin("http://localhost:3000").as_deref(), Some("http://localhost:3000"));
        assert_eq!(origin("http://[::1]:8080").as_deref(), Some("http://[::1]:8080"));
        for bad in ["null", "*", "file://", "https://a.example, https://b.example", "javascript:x", "https://"] {
            assert_eq!(origin(bad), None, "{bad}");
        }
        let resp = Rejection::MissingToken.into_response("r", Some(&HeaderValue::from_static("https://a.example")));
        assert_eq!(resp.headers()[header::VARY], "Origin");
        let exposed = resp.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS].to_str().unwrap().to_owned();
        assert!(exposed.contains("WWW-Authenticate") && exposed.contains("X-Request-Id"));
        assert!(Rejection::MissingToken.into_response("r", None).headers().get(header::VARY).is_none());
    }

    #[test]
    fn insufficient_scope_lists_scopes_and_group_denial_is_plain() {
        let (_, www, _) = parts(Rejection::InsufficientScope { scope: "openid email".into() });
        assert_eq!(
            www.as_deref(),
            Some("Bearer realm=\"portcullis\", error=\"insufficient_scope\", scope=\"openid email\"")
        );
        let (_, www, _) = parts(Rejection::Forbidden(Forbidden::Group));
        assert_eq!(www, None);
    }

    #[test]
    fn unavailable_keys_say_when_to_retry() {
        let resp = Rejection::KeysUnavailable.into_response("x", None);
        assert!(resp.headers().contains_key(header::RETRY_AFTER));
    }
}
