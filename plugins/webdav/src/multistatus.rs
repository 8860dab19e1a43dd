//! The answer to a PROPFIND: a `207 Multi-Status` XML document (RFC 4918 §14.16) with one
//! `<D:response>` per resource, of which this reads the href, whether it is a collection
//! (`<D:resourcetype><D:collection/>`) and its size (`<D:getcontentlength>`).
//!
//! Elements are matched by namespace (`DAV:`) and local name, never by prefix: Apache writes
//! `<lp1:resourcetype>` with `lp1` bound to `DAV:`, rclone `<D:resourcetype>`, others a
//! default namespace. Properties count only inside a `<D:propstat>` whose status is 2xx
//! (Apache reports the `getcontentlength` of a collection in a separate `404` propstat).

use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};

const DAV: Namespace<'static> = Namespace("DAV:");

/// One `<D:response>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Entry {
    /// The href as written (XML entities resolved, percent-encoding kept).
    pub(crate) href: String,
    pub(crate) collection: bool,
    /// `getcontentlength`, when a successful propstat reported it.
    pub(crate) size: Option<u64>,
    /// The status of the response itself (`<D:response><D:href/><D:status/>`), or of its
    /// propstats when none succeeded; `None` when some propstat succeeded.
    pub(crate) failed_status: Option<String>,
}

/// Where the reader is: the DAV elements that matter, outermost first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Element {
    Response,
    Href,
    Propstat,
    Prop,
    ResourceType,
    ContentLength,
    Status,
    /// Anything else (other namespaces, other properties).
    Other,
}

/// The properties of one propstat, kept until its status says whether they count.
#[derive(Debug, Default)]
struct Propstat {
    collection: bool,
    size_text: Option<String>,
    status: String,
}

/// Parses a multistatus body; the error says what is wrong with it.
pub(crate) fn parse(xml: &str) -> Result<Vec<Entry>, String> {
    let mut reader = NsReader::from_str(xml);
    reader.config_mut().expand_empty_elements = true;
    reader.config_mut().trim_text(true);

    let mut entries = Vec::new();
    let mut stack: Vec<Element> = Vec::new();
    let mut entry = Entry::default();
    let mut propstat = Propstat::default();
    let mut succeeded = false;
    let mut response_status: Option<String> = None;
    let mut propstat_statuses: Vec<String> = Vec::new();
    let mut saw_multistatus = false;
    let mut closed_multistatus = false;

    loop {
        let (namespace, event) = reader
            .read_resolved_event()
            .map_err(|err| format!("not well-formed XML: {err}"))?;
        let in_dav = matches!(namespace, ResolveResult::Bound(ns) if ns == DAV);
        match event {
            Event::Start(start) => {
                let local = start.local_name();
                let name: &str = if in_dav { local.as_ref() } else { "" };
                let parent = stack.last().copied();
                let element = match (parent, name) {
                    (None, "multistatus") => {
                        saw_multistatus = true;
                        None
                    }
                    (None, "response") => Some(Element::Response),
                    (Some(Element::Response), "href") => Some(Element::Href),
                    (Some(Element::Response), "propstat") => {
                        propstat = Propstat::default();
                        Some(Element::Propstat)
                    }
                    (Some(Element::Response), "status") => Some(Element::Status),
                    (Some(Element::Propstat), "prop") => Some(Element::Prop),
                    (Some(Element::Propstat), "status") => Some(Element::Status),
                    (Some(Element::Prop), "resourcetype") => Some(Element::ResourceType),
                    (Some(Element::Prop), "getcontentlength") => Some(Element::ContentLength),
                    (Some(Element::ResourceType), "collection") => {
                        propstat.collection = true;
                        Some(Element::Other)
                    }
                    (None, _) if !saw_multistatus => {
                        return Err(format!(
                            "the root element is <{}>, not <D:multistatus>",
                            start.name().as_ref() as &str
                        ));
                    }
                    _ => Some(Element::Other),
                };
                if element == Some(Element::Response) {
                    entry = Entry::default();
                    succeeded = false;
                    response_status = None;
                    propstat_statuses.clear();
                }
                // The multistatus element itself is not on the stack: responses are its
                // children, found with an empty stack.
                if let Some(element) = element {
                    stack.push(element);
                }
            }
            Event::End(_) => {
                // Only the multistatus element itself ends with nothing on the stack.
                let Some(element) = stack.pop() else {
                    closed_multistatus = true;
                    continue;
                };
                match element {
                    Element::Propstat => {
                        if is_success(&propstat.status) {
                            succeeded = true;
                            entry.collection |= propstat.collection;
                            if let Some(text) = propstat.size_text.take() {
                                let size = text.trim().parse().map_err(|_| {
                                    format!(
                                        "the getcontentlength {text:?} of {} is not a size",
                                        entry.href
                                    )
                                })?;
                                entry.size = Some(size);
                            }
                        } else {
                            propstat_statuses.push(propstat.status.clone());
                        }
                    }
                    Element::Response => {
                        if entry.href.is_empty() {
                            return Err("a <D:response> has no <D:href>".into());
                        }
                        entry.failed_status = match response_status.take() {
                            Some(status) if !is_success(&status) => Some(status),
                            _ if succeeded => None,
                            _ => Some(propstat_statuses.join(", ")),
                        };
                        entries.push(std::mem::take(&mut entry));
                    }
                    _ => {}
                }
            }
            Event::Text(text) => append_text(
                &stack,
                &mut entry,
                &mut propstat,
                &mut response_status,
                &text.xml10_content(),
            ),
            Event::CData(data) => {
                append_text(
                    &stack,
                    &mut entry,
                    &mut propstat,
                    &mut response_status,
                    &data,
                );
            }
            Event::GeneralRef(reference) => {
                let raw = format!("&{};", reference.xml10_content());
                let text = quick_xml::escape::unescape(&raw)
                    .map_err(|err| format!("unknown entity {raw}: {err}"))?;
                append_text(
                    &stack,
                    &mut entry,
                    &mut propstat,
                    &mut response_status,
                    &text,
                );
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_multistatus {
        return Err("there is no <D:multistatus> element".into());
    }
    if !stack.is_empty() || !closed_multistatus {
        return Err("not well-formed XML: the document ends inside an element".into());
    }
    Ok(entries)
}

/// Adds text to the element being read, if it is one whose text matters.
fn append_text(
    stack: &[Element],
    entry: &mut Entry,
    propstat: &mut Propstat,
    response_status: &mut Option<String>,
    text: &str,
) {
    match stack {
        [Element::Response, Element::Href] => entry.href.push_str(text),
        [Element::Response, Element::Status] => {
            response_status.get_or_insert_default().push_str(text);
        }
        [Element::Response, Element::Propstat, Element::Status] => propstat.status.push_str(text),
        [
            Element::Response,
            Element::Propstat,
            Element::Prop,
            Element::ContentLength,
        ] => {
            propstat.size_text.get_or_insert_default().push_str(text);
        }
        _ => {}
    }
}

/// Whether a status line (`HTTP/1.1 200 OK`) reports success.
fn is_success(status_line: &str) -> bool {
    status_line
        .split_whitespace()
        .nth(1)
        .is_some_and(|code| code.len() == 3 && code.starts_with('2'))
}

#[cfg(test)]
mod tests;
