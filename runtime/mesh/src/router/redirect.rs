//! The `Location` of an Envoy `RedirectAction`.

use crate::model::{Redirect, RouteMatch};

use super::rewrite::{replace_matched_prefix, split_query};

/// Builds the `Location` for a redirect of a request for `scheme://host/path?query`.
///
/// - Scheme: `redirect.scheme`, else the request's.
/// - Host: `redirect.host`, else the request's `Host`.
/// - Port: `redirect.port` replaces any port in the host. Otherwise a port kept from the
///   request's `Host` is dropped when the scheme changes and it is the old scheme's default
///   (`:80` → https, `:443` → http), as Envoy does.
/// - Path: `redirect.path` (a query written in it replaces the request's and is always kept),
///   else the request path with `redirect.prefix_rewrite` replacing what the route matched,
///   else the request path.
/// - Query: the request's, unless `strip_query`.
pub fn redirect_location(
    redirect: &Redirect,
    scheme: &str,
    host: &str,
    path: &str,
    query: Option<&str>,
    matched: &RouteMatch,
) -> String {
    let final_scheme = redirect.scheme.as_deref().unwrap_or(scheme);
    let authority = redirect_authority(redirect, scheme, final_scheme, host);
    let query = query.filter(|query| !redirect.strip_query && !query.is_empty());
    let (final_path, final_query) = match &redirect.path {
        Some(path_redirect) => match split_query(path_redirect) {
            (redirect_path, Some(redirect_query)) => {
                (redirect_path.to_owned(), Some(redirect_query))
            }
            (redirect_path, None) => (redirect_path.to_owned(), query),
        },
        None => {
            let rewritten = redirect
                .prefix_rewrite
                .as_deref()
                .and_then(|replacement| replace_matched_prefix(matched, path, replacement));
            (rewritten.unwrap_or_else(|| path.to_owned()), query)
        }
    };
    match final_query {
        Some(query) => format!("{final_scheme}://{authority}{final_path}?{query}"),
        None => format!("{final_scheme}://{authority}{final_path}"),
    }
}

fn redirect_authority(redirect: &Redirect, scheme: &str, final_scheme: &str, host: &str) -> String {
    if let Some(new_host) = &redirect.host {
        return match redirect.port {
            Some(port) => format!("{}:{port}", strip_port(new_host).0),
            None => new_host.clone(),
        };
    }
    let (name, port) = strip_port(host);
    match (redirect.port, port) {
        (Some(new_port), _) => format!("{name}:{new_port}"),
        (None, Some(old_port))
            if !scheme.eq_ignore_ascii_case(final_scheme)
                && default_port(scheme) == Some(old_port) =>
        {
            name.to_owned()
        }
        _ => host.to_owned(),
    }
}

/// Splits `name:port` / `[v6]:port` into the name and the port text.
fn strip_port(host: &str) -> (&str, Option<&str>) {
    let colon = if host.starts_with('[') {
        host.rfind("]:").map(|at| at + 1)
    } else {
        host.rfind(':')
    };
    match colon {
        Some(at) => (&host[..at], Some(&host[at + 1..])),
        None => (host, None),
    }
}

fn default_port(scheme: &str) -> Option<&'static str> {
    if scheme.eq_ignore_ascii_case("http") {
        Some("80")
    } else if scheme.eq_ignore_ascii_case("https") {
        Some("443")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PathMatch;

    fn prefix_match(prefix: &str) -> RouteMatch {
        RouteMatch {
            path: PathMatch::Prefix(prefix.into()),
            case_sensitive: true,
            headers: Vec::new(),
            query_parameters: Vec::new(),
        }
    }

    fn location(redirect: &Redirect, host: &str, path: &str, query: Option<&str>) -> String {
        redirect_location(redirect, "http", host, path, query, &prefix_match("/old"))
    }

    #[test]
    fn default_redirect_keeps_everything() {
        let redirect = Redirect::default();
        assert_eq!(
            location(&redirect, "a.com:8080", "/old/x", Some("q=1")),
            "http://a.com:8080/old/x?q=1"
        );
    }

    #[test]
    fn scheme_redirect_drops_the_old_default_port_only() {
        let https = Redirect {
            scheme: Some("https".into()),
            ..Redirect::default()
        };
        assert_eq!(location(&https, "a.com:80", "/p", None), "https://a.com/p");
        assert_eq!(
            location(&https, "a.com:8080", "/p", None),
            "https://a.com:8080/p"
        );
        assert_eq!(location(&https, "a.com", "/p", None), "https://a.com/p");
        let http = Redirect {
            scheme: Some("http".into()),
            ..Redirect::default()
        };
        assert_eq!(
            redirect_location(&http, "https", "[::1]:443", "/p", None, &prefix_match("/")),
            "http://[::1]/p"
        );
    }

    #[test]
    fn host_and_port_redirects() {
        let host = Redirect {
            host: Some("b.com".into()),
            ..Redirect::default()
        };
        assert_eq!(location(&host, "a.com:8080", "/p", None), "http://b.com/p");
        let port = Redirect {
            port: Some(9443),
            ..Redirect::default()
        };
        assert_eq!(
            location(&port, "a.com:8080", "/p", None),
            "http://a.com:9443/p"
        );
        assert_eq!(location(&port, "a.com", "/p", None), "http://a.com:9443/p");
        let both = Redirect {
            scheme: Some("https".into()),
            host: Some("b.com:1".into()),
            port: Some(8443),
            ..Redirect::default()
        };
        assert_eq!(
            location(&both, "a.com", "/p", Some("x")),
            "https://b.com:8443/p?x"
        );
    }

    #[test]
    fn path_redirect_and_its_query() {
        let path = Redirect {
            path: Some("/new".into()),
            ..Redirect::default()
        };
        assert_eq!(
            location(&path, "a.com", "/old/x", Some("q=1")),
            "http://a.com/new?q=1"
        );
        let with_query = Redirect {
            path: Some("/new?from=redirect".into()),
            strip_query: true,
            ..Redirect::default()
        };
        assert_eq!(
            location(&with_query, "a.com", "/old", Some("q=1")),
            "http://a.com/new?from=redirect"
        );
    }

    #[test]
    fn prefix_rewrite_redirect() {
        let rewrite = Redirect {
            prefix_rewrite: Some("/new".into()),
            ..Redirect::default()
        };
        assert_eq!(
            location(&rewrite, "a.com", "/old/x", Some("q=1")),
            "http://a.com/new/x?q=1"
        );
    }

    #[test]
    fn strip_query_and_empty_query() {
        let strip = Redirect {
            strip_query: true,
            ..Redirect::default()
        };
        assert_eq!(
            location(&strip, "a.com", "/p", Some("q=1")),
            "http://a.com/p"
        );
        assert_eq!(
            location(&Redirect::default(), "a.com", "/p", Some("")),
            "http://a.com/p"
        );
    }
}
