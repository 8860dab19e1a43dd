//! The fixtures are answers captured from the real servers the end-to-end tests run (Apache
//! 2.4 mod_dav_fs and `rclone serve webdav` 1.60), to a PROPFIND with Depth 1 on a collection
//! named `my backup` holding `config` (5 bytes), `empty`, a leftover temporary file and the
//! collection `packs/`, in which `packs/ab/` holds `ab01.pack` (1234 bytes).

use super::*;

fn entry(href: &str, collection: bool, size: Option<u64>) -> Entry {
    Entry {
        href: href.into(),
        collection,
        size,
        failed_status: None,
    }
}

fn sorted(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_by(|a, b| a.href.cmp(&b.href));
    entries
}

#[test]
fn apache_and_rclone_listings_read_the_same() {
    let expected = vec![
        entry("/my%20backup/", true, None),
        entry("/my%20backup/.config.tmp-0123456789abcdef", false, Some(1)),
        entry("/my%20backup/config", false, Some(5)),
        entry("/my%20backup/empty", false, Some(0)),
        entry("/my%20backup/packs/", true, None),
    ];
    for xml in [
        include_str!("../../fixtures/apache-depth1.xml"),
        include_str!("../../fixtures/rclone-depth1.xml"),
    ] {
        let entries = parse(xml).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(sorted(entries), expected);
    }
}

#[test]
fn nested_listings_read_the_same() {
    let expected = vec![
        entry("/my%20backup/packs/ab/", true, None),
        entry("/my%20backup/packs/ab/ab01.pack", false, Some(1234)),
    ];
    for xml in [
        include_str!("../../fixtures/apache-depth1-nested.xml"),
        include_str!("../../fixtures/rclone-depth1-nested.xml"),
    ] {
        assert_eq!(sorted(parse(xml).expect("parse")), expected);
    }
}

#[test]
fn a_default_namespace_absolute_hrefs_and_entities_are_understood() {
    // Written by hand in the style of servers that use a default namespace and full URLs.
    let xml = r#"<?xml version="1.0"?>
        <multistatus xmlns="DAV:" xmlns:x="urn:other">
          <response>
            <href>https://dav.example/a%20b/x&amp;y</href>
            <propstat>
              <prop><resourcetype/><getcontentlength> 42 </getcontentlength><x:href>no</x:href></prop>
              <status>HTTP/1.1 200 OK</status>
            </propstat>
          </response>
          <response>
            <href><![CDATA[https://dav.example/a%20b/sub/]]></href>
            <propstat>
              <prop><resourcetype><collection/></resourcetype></prop>
              <status>HTTP/1.1 200 OK</status>
            </propstat>
          </response>
        </multistatus>"#;
    assert_eq!(
        parse(xml).expect("parse"),
        vec![
            entry("https://dav.example/a%20b/x&y", false, Some(42)),
            entry("https://dav.example/a%20b/sub/", true, None),
        ]
    );
}

#[test]
fn elements_of_other_namespaces_do_not_count() {
    let xml = r#"<D:multistatus xmlns:D="DAV:" xmlns:E="urn:e">
        <D:response><D:href>/a</D:href>
          <D:propstat><D:prop>
            <D:resourcetype><E:collection/></D:resourcetype>
            <E:getcontentlength>9</E:getcontentlength>
            <D:getcontentlength>3</D:getcontentlength>
          </D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>
        </D:response></D:multistatus>"#;
    assert_eq!(
        parse(xml).expect("parse"),
        vec![entry("/a", false, Some(3))]
    );
}

#[test]
fn failed_responses_and_propstats_are_reported() {
    let xml = r#"<D:multistatus xmlns:D="DAV:">
        <D:response><D:href>/locked</D:href><D:status>HTTP/1.1 423 Locked</D:status></D:response>
        <D:response><D:href>/hidden</D:href>
          <D:propstat><D:prop><D:resourcetype/></D:prop><D:status>HTTP/1.1 403 Forbidden</D:status></D:propstat>
        </D:response></D:multistatus>"#;
    let entries = parse(xml).expect("parse");
    assert_eq!(
        entries[0].failed_status.as_deref(),
        Some("HTTP/1.1 423 Locked")
    );
    assert_eq!(
        entries[1].failed_status.as_deref(),
        Some("HTTP/1.1 403 Forbidden")
    );
}

#[test]
fn what_is_not_a_multistatus_is_refused() {
    for (body, problem) in [
        ("<html><body>Login</body></html>", "root element is <html>"),
        ("", "no <D:multistatus>"),
        (
            "<D:multistatus xmlns:D=\"DAV:\"><D:response>",
            "not well-formed",
        ),
        (
            "<D:multistatus xmlns:D=\"DAV:\"><D:response></D:response></D:multistatus>",
            "no <D:href>",
        ),
        (
            "<D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>/a</D:href><D:propstat><D:prop>\
             <D:getcontentlength>-1</D:getcontentlength></D:prop><D:status>HTTP/1.1 200 OK\
             </D:status></D:propstat></D:response></D:multistatus>",
            "is not a size",
        ),
    ] {
        let err = parse(body).expect_err(body);
        assert!(err.contains(problem), "{body}: {err}");
    }
}

#[test]
fn a_listing_cut_short_is_refused_not_read_as_fewer_entries() {
    let xml = include_str!("../../fixtures/apache-depth1.xml");
    let end = xml
        .rfind("</D:multistatus>")
        .expect("the fixture ends its multistatus");
    let after_a_response = xml[..end].rfind("</D:response>").expect("a response") + 13;
    for cut in [&xml[..end], &xml[..after_a_response]] {
        let err = parse(cut).expect_err("a cut answer");
        assert!(err.contains("ends inside an element"), "{err}");
    }
}
