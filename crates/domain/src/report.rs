//! Citizens' reports of environmental problems, as FixMyStreet shapes them: a category from a
//! configurable list, a place, a title and description, photos; a life through the states
//! below, where every change is kept as history; public updates for everyone and internal notes
//! for operators. What a valid report and a valid change are is decided here, without I/O.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::station::GeoPoint;

/// Reports within this distance and of the same category are offered as possible duplicates.
pub const DUPLICATE_RADIUS_M: f64 = 50.0;
/// The most photos a report carries.
pub const MAX_PHOTOS: usize = 5;
/// Title length in characters.
pub const TITLE_CHARS: std::ops::RangeInclusive<usize> = 3..=120;
/// The longest description, public update or note, in characters.
pub const MAX_TEXT_CHARS: usize = 5_000;

/// Where a report is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReportState {
    Submitted,
    Confirmed,
    Investigating,
    ActionScheduled,
    Fixed,
    Closed,
    NotResponsible,
    Duplicate,
}

impl ReportState {
    pub const ALL: [ReportState; 8] = [
        ReportState::Submitted,
        ReportState::Confirmed,
        ReportState::Investigating,
        ReportState::ActionScheduled,
        ReportState::Fixed,
        ReportState::Closed,
        ReportState::NotResponsible,
        ReportState::Duplicate,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ReportState::Submitted => "submitted",
            ReportState::Confirmed => "confirmed",
            ReportState::Investigating => "investigating",
            ReportState::ActionScheduled => "action_scheduled",
            ReportState::Fixed => "fixed",
            ReportState::Closed => "closed",
            ReportState::NotResponsible => "not_responsible",
            ReportState::Duplicate => "duplicate",
        }
    }

    /// How a person reads it.
    pub const fn label(self) -> &'static str {
        match self {
            ReportState::Submitted => "Submitted",
            ReportState::Confirmed => "Confirmed",
            ReportState::Investigating => "Investigating",
            ReportState::ActionScheduled => "Action scheduled",
            ReportState::Fixed => "Fixed",
            ReportState::Closed => "Closed",
            ReportState::NotResponsible => "Not our responsibility",
            ReportState::Duplicate => "Duplicate",
        }
    }

    /// Still being worked on (shown as open on the map and in the queue by default).
    pub const fn is_open(self) -> bool {
        matches!(
            self,
            ReportState::Submitted
                | ReportState::Confirmed
                | ReportState::Investigating
                | ReportState::ActionScheduled
        )
    }

    /// The states an operator may move a report in this state to. A report never goes back to
    /// `submitted` (that is how it was filed); a closed one may be reopened.
    pub fn next_states(self) -> impl Iterator<Item = ReportState> {
        ReportState::ALL
            .into_iter()
            .filter(move |s| *s != self && *s != ReportState::Submitted)
    }
}

impl fmt::Display for ReportState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReportState {
    type Err = ReportError;
    fn from_str(s: &str) -> Result<Self, ReportError> {
        ReportState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| ReportError::State(s.chars().take(40).collect()))
    }
}

/// One category citizens may choose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Category {
    /// The stable key (`illegal_dumping`).
    pub key: String,
    /// What a person reads ("Illegal dumping").
    pub label: String,
}

/// The configurable list of categories; [`Categories::default`] is the built-in set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Categories(pub Vec<Category>);

impl Default for Categories {
    fn default() -> Self {
        let set = [
            ("illegal_dumping", "Illegal dumping or fly-tipping"),
            ("smoke_or_smell", "Smoke, dust or a smell"),
            ("water_pollution", "Water pollution (oil, foam, dead fish)"),
            ("noise", "Noise"),
            ("burning", "Open burning of waste or leaves"),
            ("broken_sensor", "A broken or vandalised sensor station"),
            ("other", "Something else"),
        ];
        Categories(
            set.into_iter()
                .map(|(key, label)| Category {
                    key: key.into(),
                    label: label.into(),
                })
                .collect(),
        )
    }
}

impl Categories {
    pub fn get(&self, key: &str) -> Option<&Category> {
        self.0.iter().find(|c| c.key == key)
    }

    /// The label of a key, or the key itself for a category since removed from the list.
    pub fn label<'a>(&'a self, key: &'a str) -> &'a str {
        self.get(key).map_or(key, |c| c.label.as_str())
    }

    /// The list is usable: not empty, keys short lowercase words, no key twice.
    pub fn check(&self) -> Result<(), String> {
        if self.0.is_empty() {
            return Err("the list of report categories is empty".into());
        }
        for (i, c) in self.0.iter().enumerate() {
            let fine = !c.key.is_empty()
                && c.key.len() <= 40
                && c.key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !fine {
                return Err(format!(
                    "report category key {:?} must be 1-40 characters of a-z, 0-9 and _",
                    c.key
                ));
            }
            if c.label.trim().is_empty() {
                return Err(format!("report category {:?} has no label", c.key));
            }
            if self.0[..i].iter().any(|d| d.key == c.key) {
                return Err(format!("report category {:?} is listed twice", c.key));
            }
        }
        Ok(())
    }
}

/// What is wrong with a report or a change to one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportError {
    #[error("the category {0:?} is not one of the report categories")]
    Category(String),
    #[error("the title must be {min} to {max} characters (it has {0})", min = TITLE_CHARS.start(), max = TITLE_CHARS.end())]
    TitleLength(usize),
    #[error("the {field} is longer than {MAX_TEXT_CHARS} characters")]
    TooLong { field: &'static str },
    #[error("the {field} contains control characters")]
    ControlCharacters { field: &'static str },
    #[error("{0}")]
    Location(String),
    #[error("a report carries at most {MAX_PHOTOS} photos ({0} were given)")]
    TooManyPhotos(usize),
    #[error("{0:?} is not a report state (submitted, confirmed, investigating, action_scheduled, fixed, closed, not_responsible, duplicate)")]
    State(String),
    #[error("a report cannot be moved from {from} to {to}")]
    Transition { from: ReportState, to: ReportState },
    #[error("a report marked duplicate names the report it duplicates (duplicate_of)")]
    DuplicateOfMissing,
    #[error("a report cannot be a duplicate of itself")]
    DuplicateOfItself,
    #[error("only a report marked duplicate names a duplicate_of")]
    DuplicateOfUnexpected,
    #[error("the {field} is empty")]
    Empty { field: &'static str },
}

impl ReportError {
    /// A stable code for problem+json answers.
    pub const fn code(&self) -> &'static str {
        match self {
            ReportError::Category(_) => "unknown_category",
            ReportError::TitleLength(_) => "title_length",
            ReportError::TooLong { .. } => "text_too_long",
            ReportError::ControlCharacters { .. } => "control_characters",
            ReportError::Location(_) => "bad_location",
            ReportError::TooManyPhotos(_) => "too_many_photos",
            ReportError::State(_) => "unknown_state",
            ReportError::Transition { .. } => "bad_transition",
            ReportError::DuplicateOfMissing
            | ReportError::DuplicateOfItself
            | ReportError::DuplicateOfUnexpected => "bad_duplicate_of",
            ReportError::Empty { .. } => "empty_text",
        }
    }
}

/// A report as a citizen files it, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportDraft {
    pub category: String,
    pub title: String,
    pub description: String,
    pub location: GeoPoint,
}

impl ReportDraft {
    /// Checks the fields; `photos` is how many photos come with it.
    pub fn new(
        categories: &Categories,
        category: &str,
        title: &str,
        description: &str,
        (lat, lon): (f64, f64),
        photos: usize,
    ) -> Result<ReportDraft, ReportError> {
        if categories.get(category).is_none() {
            return Err(ReportError::Category(category.chars().take(40).collect()));
        }
        let title = check_title(title)?;
        let description = check_text("description", description, true)?;
        let location = GeoPoint::new(lat, lon).map_err(|e| ReportError::Location(e.to_string()))?;
        if photos > MAX_PHOTOS {
            return Err(ReportError::TooManyPhotos(photos));
        }
        Ok(ReportDraft {
            category: category.into(),
            title,
            description,
            location,
        })
    }
}

/// A title, trimmed, of [`TITLE_CHARS`] characters without control characters.
pub fn check_title(title: &str) -> Result<String, ReportError> {
    let title = title.trim();
    if title.chars().any(char::is_control) {
        return Err(ReportError::ControlCharacters { field: "title" });
    }
    let n = title.chars().count();
    if !TITLE_CHARS.contains(&n) {
        return Err(ReportError::TitleLength(n));
    }
    Ok(title.to_string())
}

/// A free text (description, update, note), trimmed; line breaks and tabs are its only control
/// characters; `may_be_empty` for a description.
pub fn check_text(
    field: &'static str,
    text: &str,
    may_be_empty: bool,
) -> Result<String, ReportError> {
    let text = text.trim();
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ReportError::ControlCharacters { field });
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(ReportError::TooLong { field });
    }
    if text.is_empty() && !may_be_empty {
        return Err(ReportError::Empty { field });
    }
    Ok(text.to_string())
}

/// Checks an operator's move of report `id` from `from` to `to`, with the report it
/// duplicates when `to` is [`ReportState::Duplicate`].
pub fn check_transition(
    id: &str,
    from: ReportState,
    to: ReportState,
    duplicate_of: Option<&str>,
) -> Result<(), ReportError> {
    if !from.next_states().any(|s| s == to) {
        return Err(ReportError::Transition { from, to });
    }
    match (to, duplicate_of) {
        (ReportState::Duplicate, None) => Err(ReportError::DuplicateOfMissing),
        (ReportState::Duplicate, Some(d)) if d == id => Err(ReportError::DuplicateOfItself),
        (ReportState::Duplicate, Some(_)) => Ok(()),
        (_, Some(_)) => Err(ReportError::DuplicateOfUnexpected),
        (_, None) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(
        category: &str,
        title: &str,
        at: (f64, f64),
        photos: usize,
    ) -> Result<ReportDraft, ReportError> {
        ReportDraft::new(
            &Categories::default(),
            category,
            title,
            "  by the bridge \n",
            at,
            photos,
        )
    }

    #[test]
    fn a_good_report_is_trimmed_and_a_bad_one_says_why() {
        let d = draft(
            "illegal_dumping",
            "  Fridges in the canal ",
            (51.52, -0.15),
            2,
        )
        .unwrap();
        assert_eq!(d.title, "Fridges in the canal");
        assert_eq!(d.description, "by the bridge");
        assert_eq!(
            draft("litter", "Fridges", (51.5, 0.0), 0),
            Err(ReportError::Category("litter".into()))
        );
        assert_eq!(
            draft("noise", "ab", (51.5, 0.0), 0),
            Err(ReportError::TitleLength(2))
        );
        assert_eq!(
            draft("noise", "Drums\u{7}", (51.5, 0.0), 0),
            Err(ReportError::ControlCharacters { field: "title" })
        );
        assert!(matches!(
            draft("noise", "Drums", (91.0, 0.0), 0),
            Err(ReportError::Location(_))
        ));
        assert_eq!(
            draft("noise", "Drums", (51.5, 0.0), 6),
            Err(ReportError::TooManyPhotos(6))
        );
        let long = "x".repeat(MAX_TEXT_CHARS + 1);
        assert_eq!(
            check_text("description", &long, true),
            Err(ReportError::TooLong {
                field: "description"
            })
        );
        assert_eq!(
            check_text("update", "  ", false),
            Err(ReportError::Empty { field: "update" })
        );
    }

    #[test]
    fn states_move_anywhere_but_back_to_submitted_and_duplicates_name_their_original() {
        use ReportState::*;
        assert!(check_transition("r1", Submitted, Investigating, None).is_ok());
        assert!(
            check_transition("r1", Fixed, Investigating, None).is_ok(),
            "reopened"
        );
        assert_eq!(
            check_transition("r1", Investigating, Submitted, None),
            Err(ReportError::Transition {
                from: Investigating,
                to: Submitted
            })
        );
        assert_eq!(
            check_transition("r1", Fixed, Fixed, None),
            Err(ReportError::Transition {
                from: Fixed,
                to: Fixed
            })
        );
        assert_eq!(
            check_transition("r1", Submitted, Duplicate, None),
            Err(ReportError::DuplicateOfMissing)
        );
        assert_eq!(
            check_transition("r1", Submitted, Duplicate, Some("r1")),
            Err(ReportError::DuplicateOfItself)
        );
        assert!(check_transition("r1", Submitted, Duplicate, Some("r0")).is_ok());
        assert_eq!(
            check_transition("r1", Submitted, Fixed, Some("r0")),
            Err(ReportError::DuplicateOfUnexpected)
        );
        for s in ReportState::ALL {
            assert_eq!(s.as_str().parse::<ReportState>(), Ok(s));
        }
        assert!("open".parse::<ReportState>().is_err());
        assert!(Investigating.is_open() && !Duplicate.is_open());
    }

    #[test]
    fn category_lists_are_checked() {
        assert!(Categories::default().check().is_ok());
        let twice = Categories(vec![
            Category {
                key: "noise".into(),
                label: "Noise".into(),
            },
            Category {
                key: "noise".into(),
                label: "Loud".into(),
            },
        ]);
        assert!(twice.check().unwrap_err().contains("twice"));
        let bad = Categories(vec![Category {
            key: "No Ise".into(),
            label: "Noise".into(),
        }]);
        assert!(bad.check().is_err());
        assert!(Categories(vec![]).check().is_err());
        assert_eq!(Categories::default().label("gone"), "gone");
    }
}
