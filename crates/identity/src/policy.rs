//! Permissions as Cedar policies (`policies/ecocityhub.cedar`, compiled into the binary and
//! replaceable at start): [`Authorizer::is_allowed`] is the one question every handler asks.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use cedar_policy::{
    Context, Decision, Entities, EntityId, EntityTypeName, EntityUid, PolicySet, Request,
};
use serde_json::{json, Value};

/// The policies shipped with EcoCityHub.
pub const BUILTIN_POLICIES: &str = include_str!("../policies/ecocityhub.cedar");

/// A user's role, kept as a group (Cognito's `cognito:groups`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Citizen,
    Operator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Citizen, Role::Operator, Role::Admin];

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Citizen => "citizen",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// Roles as the store and the CLI write them: `citizen,operator`.
pub fn roles_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("role {s:?} is not one of citizen, operator, admin"))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    User {
        id: String,
        roles: Vec<Role>,
    },
    /// A device key (by its public prefix) and the station it belongs to.
    Device {
        key: String,
        station: String,
    },
}

/// What is acted on.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    User(String),
    Station(String),
    /// A citizen's report: who filed it and whether moderators hid it.
    Report {
        id: String,
        reporter: String,
        hidden: bool,
    },
    /// The platform as a whole (user lists, keys).
    System,
}

/// What is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ReadAccount,
    UpdateAccount,
    DeleteAccount,
    ListUsers,
    UpdateUser,
    ManageDevices,
    ManageKeys,
    WriteReadings,
    TriageReports,
    /// Train, promote and roll back forecast models; see training jobs.
    ManageModels,
    /// Edit stations (name, area, position, active).
    ManageStations,
    /// See deliveries of notifications to anyone and re-drive dead letters.
    ManageNotifications,
    /// Read and search the audit trail.
    ReadAuditTrail,
    /// File a report (on [`Resource::System`]).
    FileReport,
    /// See a report, its photos and public updates, and follow it.
    ViewReport,
    /// Change a report's title, description and place.
    EditReport,
    /// Hide or show a report or one of its photos.
    ModerateReports,
}

impl Action {
    const fn cedar_id(self) -> &'static str {
        match self {
            Action::ReadAccount => "readAccount",
            Action::UpdateAccount => "updateAccount",
            Action::DeleteAccount => "deleteAccount",
            Action::ListUsers => "listUsers",
            Action::UpdateUser => "updateUser",
            Action::ManageDevices => "manageDevices",
            Action::ManageKeys => "manageKeys",
            Action::WriteReadings => "writeReadings",
            Action::TriageReports => "triageReports",
            Action::ManageModels => "manageModels",
            Action::ManageStations => "manageStations",
            Action::ManageNotifications => "manageNotifications",
            Action::ReadAuditTrail => "readAuditTrail",
            Action::FileReport => "fileReport",
            Action::ViewReport => "viewReport",
            Action::EditReport => "editReport",
            Action::ModerateReports => "moderateReports",
        }
    }
}

/// Policies that do not parse.
#[derive(Debug, thiserror::Error)]
#[error("the Cedar policies do not parse: {0}")]
pub struct PolicyError(String);

/// Decides requests with a set of Cedar policies.
pub struct Authorizer {
    policies: PolicySet,
    engine: cedar_policy::Authorizer,
}

fn uid(kind: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(
        EntityTypeName::from_str(kind).expect("valid type name"),
        EntityId::new(id),
    )
}

fn uid_json(kind: &str, id: &str) -> Value {
    json!({"type": kind, "id": id})
}

impl Authorizer {
    /// The shipped policies.
    pub fn builtin() -> Authorizer {
        Authorizer::from_cedar(BUILTIN_POLICIES).expect("the shipped policies parse")
    }

    pub fn from_cedar(text: &str) -> Result<Authorizer, PolicyError> {
        let policies = PolicySet::from_str(text).map_err(|e| PolicyError(e.to_string()))?;
        Ok(Authorizer {
            policies,
            engine: cedar_policy::Authorizer::new(),
        })
    }

    /// May `principal` take `action` on `resource`?
    pub fn is_allowed(&self, principal: &Principal, action: Action, resource: &Resource) -> bool {
        let (p_uid, p_entity) = match principal {
            Principal::User { id, roles } => (
                uid("User", id),
                json!({"uid": uid_json("User", id), "attrs": {},
                       "parents": roles.iter().map(|r| uid_json("Group", r.as_str())).collect::<Vec<_>>()}),
            ),
            Principal::Device { key, station } => (
                uid("Device", key),
                json!({"uid": uid_json("Device", key),
                       "attrs": {"station": {"__entity": uid_json("Station", station)}}, "parents": []}),
            ),
        };
        let plain = |kind: &str, id: &str| {
            let entity = json!({"uid": uid_json(kind, id), "attrs": {}, "parents": []});
            (uid(kind, id), entity)
        };
        let (r_uid, r_entity) = match resource {
            Resource::User(id) => plain("User", id),
            Resource::Station(id) => plain("Station", id),
            Resource::Report {
                id,
                reporter,
                hidden,
            } => (
                uid("Report", id),
                json!({"uid": uid_json("Report", id),
                       "attrs": {"reporter": {"__entity": uid_json("User", reporter)}, "hidden": hidden},
                       "parents": []}),
            ),
            Resource::System => plain("System", "ecocityhub"),
        };
        let mut entities = vec![p_entity];
        if r_uid != p_uid {
            entities.push(r_entity);
        }
        let Ok(entities) = Entities::from_json_value(Value::Array(entities), None) else {
            return false;
        };
        let Ok(request) = Request::new(
            p_uid,
            uid("Action", action.cedar_id()),
            r_uid,
            Context::empty(),
            None,
        ) else {
            return false;
        };
        self.engine
            .is_authorized(&request, &self.policies, &entities)
            .decision()
            == Decision::Allow
    }

    /// The roles in a token's groups (unknown groups are ignored).
    pub fn roles_of(groups: &[String]) -> Vec<Role> {
        let set: HashSet<Role> = groups.iter().filter_map(|g| g.parse().ok()).collect();
        let mut roles: Vec<Role> = set.into_iter().collect();
        roles.sort();
        roles
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, roles: &[Role]) -> Principal {
        Principal::User {
            id: id.into(),
            roles: roles.to_vec(),
        }
    }

    #[test]
    fn citizens_act_on_their_own_account_only() {
        let a = Authorizer::builtin();
        let alice = user("alice", &[Role::Citizen]);
        for action in [
            Action::ReadAccount,
            Action::UpdateAccount,
            Action::DeleteAccount,
        ] {
            assert!(
                a.is_allowed(&alice, action, &Resource::User("alice".into())),
                "{action:?}"
            );
            assert!(
                !a.is_allowed(&alice, action, &Resource::User("bob".into())),
                "{action:?}"
            );
        }
        for action in [
            Action::ListUsers,
            Action::UpdateUser,
            Action::ManageDevices,
            Action::ManageKeys,
            Action::TriageReports,
            Action::ManageModels,
            Action::ManageStations,
            Action::ManageNotifications,
            Action::ReadAuditTrail,
        ] {
            assert!(
                !a.is_allowed(&alice, action, &Resource::System),
                "{action:?}"
            );
        }
    }

    #[test]
    fn only_admins_manage_users_keys_and_models() {
        let a = Authorizer::builtin();
        let admin = user("root", &[Role::Admin]);
        let operator = user("op", &[Role::Operator]);
        for action in [Action::ManageStations, Action::ManageDevices] {
            assert!(
                a.is_allowed(&admin, action, &Resource::System),
                "{action:?}"
            );
            assert!(
                a.is_allowed(&operator, action, &Resource::System),
                "{action:?}"
            );
        }
        for action in [
            Action::ListUsers,
            Action::UpdateUser,
            Action::ManageKeys,
            Action::ManageModels,
            Action::ManageNotifications,
            Action::ReadAuditTrail,
        ] {
            assert!(
                a.is_allowed(&admin, action, &Resource::System),
                "{action:?}"
            );
            assert!(
                !a.is_allowed(&operator, action, &Resource::System),
                "{action:?}"
            );
        }
        assert!(a.is_allowed(&admin, Action::ReadAccount, &Resource::User("alice".into())));
        assert!(!a.is_allowed(
            &admin,
            Action::DeleteAccount,
            &Resource::User("alice".into())
        ));
        assert!(a.is_allowed(&operator, Action::TriageReports, &Resource::System));
    }

    #[test]
    fn citizens_file_and_edit_their_reports_and_operators_triage_and_moderate() {
        let a = Authorizer::builtin();
        let alice = user("alice", &[Role::Citizen]);
        let bob = user("bob", &[Role::Citizen]);
        let operator = user("op", &[Role::Operator]);
        let report = |hidden| Resource::Report {
            id: "rep_1".into(),
            reporter: "alice".into(),
            hidden,
        };
        assert!(a.is_allowed(&bob, Action::FileReport, &Resource::System));
        assert!(a.is_allowed(&bob, Action::ViewReport, &report(false)));
        assert!(!a.is_allowed(&bob, Action::ViewReport, &report(true)));
        assert!(a.is_allowed(&alice, Action::ViewReport, &report(true)));
        assert!(a.is_allowed(&alice, Action::EditReport, &report(false)));
        assert!(!a.is_allowed(&bob, Action::EditReport, &report(false)));
        for action in [Action::TriageReports, Action::ModerateReports] {
            assert!(!a.is_allowed(&alice, action, &report(false)), "{action:?}");
            assert!(a.is_allowed(&operator, action, &report(true)), "{action:?}");
        }
        assert!(a.is_allowed(&operator, Action::ViewReport, &report(true)));
        let device = Principal::Device {
            key: "abc".into(),
            station: "s1".into(),
        };
        assert!(!a.is_allowed(&device, Action::FileReport, &Resource::System));
    }

    #[test]
    fn a_device_writes_its_own_station_only() {
        let a = Authorizer::builtin();
        let device = Principal::Device {
            key: "abc".into(),
            station: "s1".into(),
        };
        assert!(a.is_allowed(
            &device,
            Action::WriteReadings,
            &Resource::Station("s1".into())
        ));
        assert!(!a.is_allowed(
            &device,
            Action::WriteReadings,
            &Resource::Station("s2".into())
        ));
        assert!(!a.is_allowed(&device, Action::ListUsers, &Resource::System));
        assert!(!a.is_allowed(&device, Action::ReadAccount, &Resource::User("abc".into())));
        // Users never write readings; that is a device's key's job.
        assert!(!a.is_allowed(
            &user("root", &[Role::Admin]),
            Action::WriteReadings,
            &Resource::Station("s1".into())
        ));
    }

    #[test]
    fn roles_come_from_groups_and_bad_policies_are_refused() {
        assert_eq!(
            Authorizer::roles_of(&["admin".into(), "x".into(), "citizen".into()]),
            vec![Role::Citizen, Role::Admin]
        );
        assert!(Authorizer::from_cedar("permit(principal, action, resource").is_err());
        assert_eq!("operator".parse::<Role>(), Ok(Role::Operator));
        assert!("root".parse::<Role>().is_err());
    }

    /// Every action there is (the match makes a new action fail to compile until it is added).
    fn every_action() -> Vec<Action> {
        let all = [
            Action::ReadAccount,
            Action::UpdateAccount,
            Action::DeleteAccount,
            Action::ListUsers,
            Action::UpdateUser,
            Action::ManageDevices,
            Action::ManageKeys,
            Action::WriteReadings,
            Action::TriageReports,
            Action::ManageModels,
            Action::ManageStations,
            Action::ManageNotifications,
            Action::ReadAuditTrail,
            Action::FileReport,
            Action::ViewReport,
            Action::EditReport,
            Action::ModerateReports,
        ];
        for a in all {
            match a {
                Action::ReadAccount
                | Action::UpdateAccount
                | Action::DeleteAccount
                | Action::ListUsers
                | Action::UpdateUser
                | Action::ManageDevices
                | Action::ManageKeys
                | Action::WriteReadings
                | Action::TriageReports
                | Action::ManageModels
                | Action::ManageStations
                | Action::ManageNotifications
                | Action::ReadAuditTrail
                | Action::FileReport
                | Action::ViewReport
                | Action::EditReport
                | Action::ModerateReports => {}
            }
        }
        all.to_vec()
    }

    /// The shipped policies with a permit for everything added, as a careless extra policy
    /// file would: only `forbid` rules still deny anything.
    fn permissive() -> Authorizer {
        Authorizer::from_cedar(&format!(
            "{BUILTIN_POLICIES}\npermit (principal, action, resource);\n"
        ))
        .expect("the permissive set parses")
    }

    /// The device `forbid` holds whatever else is permitted: a device key writes its own
    /// station's readings and does nothing else, on any resource.
    #[test]
    fn the_device_forbid_holds_under_a_permit_for_everything() {
        let a = permissive();
        let device = Principal::Device {
            key: "abc".into(),
            station: "s1".into(),
        };
        let user = user("alice", &[Role::Citizen]);
        // The added permit does apply: a citizen may now do anything.
        assert!(a.is_allowed(&user, Action::ManageKeys, &Resource::System));
        assert!(a.is_allowed(
            &user,
            Action::WriteReadings,
            &Resource::Station("s2".into())
        ));

        assert!(a.is_allowed(
            &device,
            Action::WriteReadings,
            &Resource::Station("s1".into())
        ));
        // Another station's readings, and readings "written" to what is not a station.
        for resource in [
            Resource::Station("s2".into()),
            Resource::Station("S1".into()),
            Resource::User("s1".into()),
            Resource::System,
        ] {
            assert!(
                !a.is_allowed(&device, Action::WriteReadings, &resource),
                "{resource:?}"
            );
        }
        for action in every_action() {
            if action == Action::WriteReadings {
                continue;
            }
            for resource in [
                Resource::System,
                Resource::Station("s1".into()),
                Resource::User("abc".into()),
                Resource::User("alice".into()),
            ] {
                assert!(
                    !a.is_allowed(&device, action, &resource),
                    "{action:?} on {resource:?}"
                );
            }
        }
    }
}
