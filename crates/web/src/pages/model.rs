//! A forecast model's report as a page: what it was trained on, how it did on data it never
//! saw against the baselines, with its charts. The report is the Markdown the training job
//! wrote (the same file `GET /api/v1/ml/models/{id}/report` serves), rendered with
//! pulldown-cmark; raw HTML in it is shown as text, and its chart files are served by the API.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use pulldown_cmark::{CowStr, Event, Options, Parser, Tag};

use crate::error::{WebError, WebResult};
use crate::session::Visitor;
use crate::view::{self, Layout};
use crate::WebState;

#[derive(Template)]
#[template(path = "model.html")]
struct ModelPage {
    layout: Layout,
    id: i64,
    station: String,
    parameter_key: &'static str,
    parameter: &'static str,
    version: i64,
    status: String,
    created: String,
    report_html: String,
}

/// Markdown to HTML: tables on, raw HTML escaped, relative image and link targets resolved
/// against `base` (the directory the report's files are served from).
pub fn render_markdown(markdown: &str, base: &str) -> String {
    let resolve = |url: CowStr<'static>| -> CowStr<'static> {
        if url.contains("://") || url.starts_with('/') || url.starts_with('#') {
            url
        } else {
            format!("{base}/{url}").into()
        }
    };
    let events = Parser::new_ext(markdown, Options::ENABLE_TABLES)
        .map(|e| e.into_static())
        .map(|event| match event {
            Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) => Event::Start(Tag::Image {
                link_type,
                dest_url: resolve(dest_url),
                title,
                id,
            }),
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) => Event::Start(Tag::Link {
                link_type,
                dest_url: resolve(dest_url),
                title,
                id,
            }),
            other => other,
        });
    let mut html = String::with_capacity(markdown.len() * 2);
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

/// `GET /models/{id}`
pub async fn model(
    State(web): State<WebState>,
    visitor: Visitor,
    Path(id): Path<i64>,
) -> WebResult<Response> {
    let not_found = || WebError::NotFound(format!("There is no model {id}."));
    let record = web.app.store().model(id).await?.ok_or_else(not_found)?;
    let report = match web
        .app
        .forecaster()
        .registry()
        .report_file(&record, ecocityhub_ml::report::MARKDOWN_FILE)
        .await
    {
        Ok(bytes) => render_markdown(
            &String::from_utf8_lossy(&bytes),
            &format!("/api/v1/ml/models/{id}/report"),
        ),
        Err(ecocityhub_ml::registry::RegistryError::MissingReport { .. }) => {
            "<p>This model has no report.</p>".into()
        }
        Err(e) => return Err(WebError::Internal(e.to_string())),
    };
    super::page(ModelPage {
        layout: Layout::new(
            &web,
            &visitor,
            format!(
                "Model {} · {} v{}",
                record.station,
                record.parameter.display_name(),
                record.version
            ),
        ),
        id,
        station: record.station.to_string(),
        parameter_key: record.parameter.as_str(),
        parameter: record.parameter.display_name(),
        version: record.version,
        status: record.status.clone(),
        created: view::fmt_time(record.created_at),
        report_html: report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_render_with_their_charts_and_without_raw_html() {
        let md = "# Report\n\n| h | MAE |\n|---|---|\n| 24 | 6.0 |\n\n![Error by horizon](errors.svg)\n\n<script>alert(1)</script>\n";
        let html = render_markdown(md, "/api/v1/ml/models/7/report");
        assert!(html.contains("<table>") && html.contains("<td>6.0</td>"));
        assert!(html.contains(r#"src="/api/v1/ml/models/7/report/errors.svg""#));
        assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"));
    }
}
