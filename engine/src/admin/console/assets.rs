//! The console's stylesheet and script, compiled into the binary: the
//! console works with no access to anything but this listener.

use super::{Reply, with_body};
use http::{HeaderValue, StatusCode, header};

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// `/ui/assets/{name}`.
pub fn serve(name: &str) -> Reply {
    let (content_type, body) = match name {
        "console.css" => ("text/css; charset=utf-8", CSS),
        "console.js" => ("text/javascript; charset=utf-8", JS),
        _ => {
            return with_body(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "no such asset",
            );
        }
    };
    let mut r = with_body(StatusCode::OK, content_type, body);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}
