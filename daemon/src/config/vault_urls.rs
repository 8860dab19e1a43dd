//! `[vault] url` or `urls`: the vault's one address, or its instances in the order the client
//! tries them (docs/vault.md §10).

/// The instances' URLs from `url` or `urls` (exactly one of them, every URL https).
pub(super) fn check(url: Option<String>, urls: Option<Vec<String>>) -> Result<Vec<String>, String> {
    let urls = match (url, urls) {
        (Some(url), None) => vec![url],
        (None, Some(urls)) if !urls.is_empty() => urls,
        _ => {
            return Err(
                "give the vault's address as exactly one of `url = \"https://...\"` \
                 and `urls = [\"https://...\", ...]` (one URL per instance)"
                    .into(),
            );
        }
    };
    if let Some(url) = urls.iter().find(|url| !url.starts_with("https://")) {
        return Err(format!("{url:?} must be an https:// URL"));
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(urls: &[&str]) -> Vec<String> {
        urls.iter().map(|url| url.to_string()).collect()
    }

    #[test]
    fn one_url_or_a_list_of_instances() {
        assert_eq!(
            check(Some("https://v1".into()), None),
            Ok(strings(&["https://v1"]))
        );
        let two = strings(&["https://v1", "https://v2"]);
        assert_eq!(check(None, Some(two.clone())), Ok(two));
        for (url, urls) in [
            (
                Some("https://v1".to_string()),
                Some(strings(&["https://v2"])),
            ),
            (None, Some(Vec::new())),
            (None, None),
        ] {
            let err = check(url, urls).expect_err("refused");
            assert!(err.contains("exactly one of `url = "), "{err}");
        }
        let err = check(None, Some(strings(&["https://v1", "http://v2"]))).expect_err("http");
        assert!(
            err.contains("\"http://v2\" must be an https:// URL"),
            "{err}"
        );
    }
}
