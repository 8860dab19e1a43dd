//! The names in a PROPFIND answer: each `<D:href>` is a percent-encoded URL, absolute
//! (`https://host/dav/a/b`), an absolute path (`/dav/a/b`, what Apache and rclone send) or,
//! rarely, relative to the request. [`relative_name`] turns one into the object name it
//! stands for, relative to the base collection.

use percent_encoding::percent_decode_str;
use reqwest::Url;

/// Why an href does not give a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HrefError {
    /// It is not a URL, even relative to the request.
    Malformed,
    /// Its path, decoded, is not UTF-8 (so it cannot be an object name).
    NotUtf8,
    /// It is not inside the base collection.
    Outside,
}

/// The decoded path of the base collection, ending with `/`, which hrefs are compared with.
#[derive(Debug, Clone)]
pub(crate) struct BasePath(String);

impl BasePath {
    pub(crate) fn new(base: &Url) -> Self {
        let decoded = percent_decode_str(base.path()).decode_utf8_lossy();
        let mut path = decoded.into_owned();
        if !path.ends_with('/') {
            path.push('/');
        }
        BasePath(path)
    }
}

/// The name `href` stands for, relative to the base collection, without a trailing `/`: `""`
/// for the base itself, `"packs/ab"` for a collection under it, `"packs/ab/x"` for an object.
///
/// `request` is the URL the answer is for, against which a relative href is resolved. Hrefs
/// are compared decoded, so a server may encode more or fewer characters than the client did.
pub(crate) fn relative_name(
    request: &Url,
    base: &BasePath,
    href: &str,
) -> Result<String, HrefError> {
    let url = request
        .join(href.trim())
        .map_err(|_| HrefError::Malformed)?;
    let path = percent_decode_str(url.path())
        .decode_utf8()
        .map_err(|_| HrefError::NotUtf8)?;
    let with_slash = if path.ends_with('/') {
        path.into_owned()
    } else {
        format!("{path}/")
    };
    let relative = with_slash
        .strip_prefix(base.0.as_str())
        .ok_or(HrefError::Outside)?;
    Ok(relative.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("url")
    }

    #[test]
    fn absolute_paths_absolute_urls_and_relative_hrefs_give_the_same_name() {
        let base_url = url("https://dav.example/my%20backup/");
        let base = BasePath::new(&base_url);
        let request = url("https://dav.example/my%20backup/packs/");
        for href in [
            "/my%20backup/packs/ab01.pack",
            "https://dav.example/my%20backup/packs/ab01.pack",
            // A proxy may rewrite the host; only the path counts.
            "http://internal:8080/my%20backup/packs/ab01.pack",
            "ab01.pack",
            " /my%20backup/packs/ab01.pack\n",
            // Decoded before comparing: the server may encode differently.
            "/my backup/packs/ab01.pack",
            "/my%20backup/packs/ab01%2Epack",
        ] {
            assert_eq!(
                relative_name(&request, &base, href),
                Ok("packs/ab01.pack".into()),
                "{href}"
            );
        }
    }

    #[test]
    fn collections_lose_their_trailing_slash_and_the_base_is_empty() {
        let base_url = url("http://127.0.0.1:8080/dav/");
        let base = BasePath::new(&base_url);
        assert_eq!(
            relative_name(&base_url, &base, "/dav/packs/ab/"),
            Ok("packs/ab".into())
        );
        assert_eq!(relative_name(&base_url, &base, "/dav/"), Ok(String::new()));
        assert_eq!(relative_name(&base_url, &base, "/dav"), Ok(String::new()));
        assert_eq!(
            relative_name(&base_url, &base, "http://127.0.0.1:8080/dav/"),
            Ok(String::new())
        );
    }

    #[test]
    fn hrefs_outside_the_base_are_refused() {
        let base_url = url("http://127.0.0.1:8080/dav/");
        let base = BasePath::new(&base_url);
        for href in ["/", "/other/x", "/davx/y", "/dav/../etc/passwd"] {
            assert_eq!(
                relative_name(&base_url, &base, href),
                Err(HrefError::Outside),
                "{href}"
            );
        }
        assert_eq!(
            relative_name(&base_url, &base, "/dav/%FF"),
            Err(HrefError::NotUtf8)
        );
        assert_eq!(
            relative_name(&base_url, &base, "http://[::1"),
            Err(HrefError::Malformed)
        );
    }

    #[test]
    fn the_root_collection_as_base_holds_every_path() {
        let base_url = url("http://127.0.0.1:8080/");
        let base = BasePath::new(&base_url);
        assert_eq!(
            relative_name(&base_url, &base, "/config"),
            Ok("config".into())
        );
        assert_eq!(relative_name(&base_url, &base, "/"), Ok(String::new()));
    }
}
