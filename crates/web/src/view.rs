//! What every page template shares ([`Layout`]: title, header navigation, the signed-in user,
//! the CSRF token for its forms, asset URLs) and small formatting helpers.

use ecocityhub_api::ApiError;
use ecocityhub_domain::aqi::us_epa::Category;

use crate::assets;
use crate::session::Visitor;
use crate::WebState;

/// The signed-in user as the header shows them.
#[derive(Debug, Clone)]
pub struct NavUser {
    pub email: String,
    pub is_operator: bool,
    pub is_admin: bool,
}

/// A one-line message at the top of a page.
#[derive(Debug, Clone)]
pub struct Flash {
    pub error: bool,
    pub text: String,
}

/// The frame of every page.
#[derive(Debug, Clone)]
pub struct Layout {
    pub site_name: String,
    pub title: String,
    pub css: &'static str,
    pub js: &'static str,
    pub icon: &'static str,
    pub user: Option<NavUser>,
    pub csrf: String,
    /// Which header link is the current page: "map", "account", "admin".
    pub section: &'static str,
    pub flash: Option<Flash>,
    /// The page listens for the user's live alerts (`/account/events`): signed in, on a
    /// server with a notification layer.
    pub live_events: bool,
    /// The page's own scripts (static files) besides `app.js`.
    pub scripts: Vec<&'static str>,
    /// "Replay: …" when the page shows historical data replayed on today's calendar.
    pub replay: Option<String>,
}

impl Layout {
    pub fn new(web: &WebState, visitor: &Visitor, title: impl Into<String>) -> Layout {
        Layout {
            site_name: web.config.site_name.clone(),
            title: title.into(),
            css: assets::url("app.css"),
            js: assets::url("app.js"),
            icon: assets::url("favicon.svg"),
            user: visitor.user.as_ref().map(|u| NavUser {
                email: u.email.clone(),
                is_operator: u.is_operator(),
                is_admin: u.is_admin(),
            }),
            csrf: visitor.csrf.clone(),
            section: "",
            flash: None,
            live_events: visitor.user.is_some() && web.app.notifier().is_some(),
            scripts: Vec::new(),
            replay: web.replay.banner(),
        }
    }

    /// For pages drawn without a session (error pages).
    pub fn anonymous(web: &WebState, title: &str) -> Layout {
        Layout {
            site_name: web.config.site_name.clone(),
            title: title.into(),
            css: assets::url("app.css"),
            js: assets::url("app.js"),
            icon: assets::url("favicon.svg"),
            user: None,
            csrf: String::new(),
            section: "",
            flash: None,
            live_events: false,
            scripts: Vec::new(),
            replay: web.replay.banner(),
        }
    }

    pub fn section(mut self, section: &'static str) -> Layout {
        self.section = section;
        self
    }

    /// Loads the static script `name` (deferred) on this page too.
    pub fn script(mut self, name: &str) -> Layout {
        self.scripts.push(assets::url(name));
        self
    }

    /// The replay banner of a page about particular stations (theirs, not the site's).
    pub fn replay(mut self, banner: Option<String>) -> Layout {
        self.replay = banner;
        self
    }

    pub fn flash(mut self, text: impl Into<String>) -> Layout {
        self.flash = Some(Flash {
            error: false,
            text: text.into(),
        });
        self
    }

    pub fn error(mut self, text: impl Into<String>) -> Layout {
        self.flash = Some(Flash {
            error: true,
            text: text.into(),
        });
        self
    }

    /// `aria-current="page"` for the header link of this section.
    pub fn current(&self, section: &str) -> &'static str {
        if self.section == section {
            "page"
        } else {
            "false"
        }
    }
}

/// The CSS class suffix of an AQI category (`aqi-good`, …); `none` without one.
pub fn category_class(category: Option<Category>) -> &'static str {
    match category {
        Some(Category::Good) => "good",
        Some(Category::Moderate) => "moderate",
        Some(Category::UnhealthyForSensitiveGroups) => "unhealthy_for_sensitive_groups",
        Some(Category::Unhealthy) => "unhealthy",
        Some(Category::VeryUnhealthy) => "very_unhealthy",
        Some(Category::Hazardous) => "hazardous",
        None => "none",
    }
}

/// An API error said as a sentence on a page.
pub fn say(e: &ApiError) -> String {
    let text = match e {
        ApiError::Internal(_) | ApiError::Unavailable(_) => {
            return "Something went wrong on our side; please try again.".into()
        }
        other => other.to_string(),
    };
    let mut chars = text.chars();
    let mut s: String = match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

/// Percent-encodes a query-string value.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A time as the pages show it: `2026-11-26 14:00 UTC`.
pub fn fmt_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// "3 minutes ago", "5 hours ago", "2 days ago".
pub fn ago(t: chrono::DateTime<chrono::Utc>, now: chrono::DateTime<chrono::Utc>) -> String {
    let s = (now - t).num_seconds();
    match s {
        i64::MIN..=59 => "just now".into(),
        60..=3_599 => plural(s / 60, "minute"),
        3_600..=172_799 => plural(s / 3_600, "hour"),
        172_800..=5_183_999 => plural(s / 86_400, "day"),
        _ => format!("on {}", t.format("%Y-%m-%d")),
    }
}

fn plural(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit} ago")
    } else {
        format!("{n} {unit}s ago")
    }
}

/// A value with a sensible number of decimals for its size.
pub fn fmt_value(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// How old the newest reading may be for a page to call it "now" (older readings are shown
/// as the latest readings of their date, never as current).
pub const RECENT_SECONDS: i64 = 3 * 3_600;

/// Whether a reading at `t` is recent at `now` (see [`RECENT_SECONDS`]).
pub fn is_recent(t: chrono::DateTime<chrono::Utc>, now: chrono::DateTime<chrono::Utc>) -> bool {
    (now - t).num_seconds() <= RECENT_SECONDS
}

/// A date as the pages say it: `31 Dec 2008`.
pub fn fmt_date(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%-d %b %Y").to_string()
}

/// The 16 points of the compass, clockwise from north.
const COMPASS: [&str; 16] = [
    "N", "NNE", "NE", "ENE", "E", "ESE", "SE", "SSE", "S", "SSW", "SW", "WSW", "W", "WNW", "NW",
    "NNW",
];

/// The compass point of a direction in degrees: `NNW` for 340.
pub fn compass_point(degrees: f64) -> &'static str {
    let sector = (degrees.rem_euclid(360.0) / 22.5).round() as usize % 16;
    COMPASS[sector]
}

/// A wind direction as people read it: `NNW 340°`.
pub fn compass(degrees: f64) -> String {
    format!(
        "{} {:.0}°",
        compass_point(degrees),
        degrees.rem_euclid(360.0)
    )
}

/// A parameter's value with its unit, as the pages show it (a wind direction as a compass
/// point).
pub fn fmt_with_unit(parameter: ecocityhub_domain::Parameter, value: f64) -> String {
    if parameter == ecocityhub_domain::Parameter::WindDirection {
        compass(value)
    } else {
        format!(
            "{} {}",
            fmt_value(value),
            parameter.canonical_unit().symbol()
        )
    }
}

/// The unit the pages write after a parameter's values: `°` for degrees, else the symbol.
pub fn unit_of(parameter: ecocityhub_domain::Parameter) -> &'static str {
    match parameter.canonical_unit().symbol() {
        "deg" => "°",
        symbol => symbol,
    }
}

/// Only a local path may be a place to go back to after signing in (no open redirect).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if is_clean_local_path(n) => n.into(),
        _ => "/account".into(),
    }
}

/// A path on this site and nothing else: starts with one `/`, and holds only visible ASCII
/// without backslashes (a tab, newline or other control character could make a browser read
/// `/\t/evil.example` as another host; they also cannot go into a `Location` header).
fn is_clean_local_path(n: &str) -> bool {
    n.starts_with('/')
        && !n.starts_with("//")
        && n.len() <= 2048
        && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_only_a_local_path() {
        assert_eq!(safe_next(Some("/admin/models")), "/admin/models");
        assert_eq!(safe_next(Some("//evil.example")), "/account");
        assert_eq!(safe_next(Some("https://evil.example")), "/account");
        assert_eq!(safe_next(Some("/\\evil.example")), "/account");
        for control in [
            "/\t/evil.example",
            "/\n/x",
            "/\r/x",
            "/\x0b/x",
            "/\x0c/x",
            "/\x1f/x",
            "/ /x",
            "/\x7f",
        ] {
            assert_eq!(safe_next(Some(control)), "/account", "{control:?}");
        }
        assert_eq!(
            safe_next(Some("/stations/a?range=week")),
            "/stations/a?range=week"
        );
        assert_eq!(safe_next(None), "/account");
    }

    #[test]
    fn times_read_as_people_say_them() {
        let now = chrono::Utc::now();
        assert_eq!(ago(now - chrono::Duration::seconds(5), now), "just now");
        assert_eq!(ago(now - chrono::Duration::minutes(1), now), "1 minute ago");
        assert_eq!(ago(now - chrono::Duration::hours(5), now), "5 hours ago");
        assert_eq!(ago(now - chrono::Duration::days(40), now), "40 days ago");
        let old = chrono::DateTime::parse_from_rfc3339("2004-12-31T23:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(ago(old, now), "on 2004-12-31");
        assert!(!is_recent(old, now));
        assert!(is_recent(now - chrono::Duration::hours(3), now));
        assert!(!is_recent(now - chrono::Duration::minutes(181), now));
        assert_eq!(fmt_date(old), "31 Dec 2004");
        assert_eq!(
            url_encode("/stations/a b?x=1&y"),
            "/stations/a%20b%3Fx%3D1%26y"
        );
    }

    #[test]
    fn wind_directions_read_as_compass_points() {
        assert_eq!(compass(340.0), "NNW 340°");
        assert_eq!(compass(0.0), "N 0°");
        assert_eq!(compass(359.0), "N 359°");
        assert_eq!(compass(90.0), "E 90°");
        assert_eq!(compass(202.0), "SSW 202°");
        assert_eq!(compass(360.0), "N 0°");
        let wind = ecocityhub_domain::Parameter::WindDirection;
        assert_eq!(fmt_with_unit(wind, 340.0), "NNW 340°");
        assert_eq!(unit_of(wind), "°");
        assert_eq!(
            fmt_with_unit(ecocityhub_domain::Parameter::Pm25, 12.34),
            "12.3 µg/m³"
        );
    }
}
