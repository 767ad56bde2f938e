//! What each role may do: the one table, [`Identity::may`].

use crate::{Identity, Role};

/// What a read is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    /// One office, with the province it belongs to.
    Office { province: &'a str, office: &'a str },
    /// Every office of a province.
    Province(&'a str),
}

/// What a call would do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// A desk command on a dossier of this office: the office the log
    /// records for the dossier (its receipt's), not one a request names.
    Desk { province: &'a str, office: &'a str },
    /// Reports, lists, the late feed or a dossier's history within a scope.
    Read(Scope<'a>),
    /// Rebuild, republish, parked events or import, within a province.
    Operate { province: &'a str },
}

impl Identity {
    /// Whether this identity may do `action`.
    pub fn may(&self, action: Action<'_>) -> bool {
        let own_province = |province: &str| province == self.province;
        let own_office = |province: &str, office: &str| {
            own_province(province) && self.office.as_deref() == Some(office)
        };
        match (self.role, action) {
            (Role::Clerk, Action::Desk { province, office }) => own_office(province, office),
            (
                Role::Clerk | Role::OfficeManager,
                Action::Read(Scope::Office { province, office }),
            ) => own_office(province, office),
            (Role::ProvinceReader, Action::Read(Scope::Office { province, .. })) => {
                own_province(province)
            }
            (Role::ProvinceReader, Action::Read(Scope::Province(province))) => {
                own_province(province)
            }
            (Role::Operator, Action::Operate { province }) => own_province(province),
            (
                Role::Clerk | Role::OfficeManager,
                Action::Read(Scope::Province(_)) | Action::Operate { .. },
            )
            | (Role::OfficeManager | Role::ProvinceReader | Role::Operator, Action::Desk { .. })
            | (Role::ProvinceReader, Action::Operate { .. })
            | (Role::Operator, Action::Read(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn who(role: Role, province: &str, office: Option<&str>) -> Identity {
        Identity::new(
            format!("{}-1", role.as_str()),
            role,
            province.into(),
            office.map(Into::into),
            None,
        )
        .expect("a valid identity")
    }

    const X: Action<'static> = Action::Desk {
        province: "60",
        office: "X",
    };
    const Y: Action<'static> = Action::Desk {
        province: "60",
        office: "Y",
    };
    const READ_X: Action<'static> = Action::Read(Scope::Office {
        province: "60",
        office: "X",
    });
    const READ_Y: Action<'static> = Action::Read(Scope::Office {
        province: "60",
        office: "Y",
    });
    const READ_OTHER: Action<'static> = Action::Read(Scope::Office {
        province: "01",
        office: "Z",
    });
    const READ_P: Action<'static> = Action::Read(Scope::Province("60"));
    const READ_Q: Action<'static> = Action::Read(Scope::Province("01"));
    const OPERATE_P: Action<'static> = Action::Operate { province: "60" };
    const OPERATE_Q: Action<'static> = Action::Operate { province: "01" };

    /// Given each role scoped to office X of province 60 (or to province
    /// 60), when it asks for each action, then it may exactly what the
    /// issue's table says.
    #[test]
    fn the_table_of_roles_and_actions() {
        let actions = [
            X, Y, READ_X, READ_Y, READ_OTHER, READ_P, READ_Q, OPERATE_P, OPERATE_Q,
        ];
        #[rustfmt::skip]
        let table: [(Identity, [bool; 9]); 4] = [
            //                                            X      Y      rX     rY     rZ     rP     rQ     oP     oQ
            (who(Role::Clerk, "60", Some("X")),         [true,  false, true,  false, false, false, false, false, false]),
            (who(Role::OfficeManager, "60", Some("X")), [false, false, true,  false, false, false, false, false, false]),
            (who(Role::ProvinceReader, "60", None),     [false, false, true,  true,  false, true,  false, false, false]),
            (who(Role::Operator, "60", None),           [false, false, false, false, false, false, false, true,  false]),
        ];
        for (identity, expected) in table {
            for (action, may) in actions.iter().zip(expected) {
                assert_eq!(identity.may(*action), may, "{:?} {action:?}", identity.role);
            }
        }
    }

    #[test]
    fn an_identity_needs_the_scope_its_role_names() {
        let clerk_without_office = Identity::new("a".into(), Role::Clerk, "60".into(), None, None);
        assert!(matches!(
            clerk_without_office,
            Err(crate::AuthError::BadClaims(_))
        ));
        let reader_with_office = Identity::new(
            "b".into(),
            Role::ProvinceReader,
            "60".into(),
            Some("X".into()),
            None,
        );
        assert!(reader_with_office.is_err());
        let no_province = Identity::new("c".into(), Role::Operator, String::new(), None, None);
        assert!(no_province.is_err());
    }

    fn role() -> impl Strategy<Value = Role> {
        prop_oneof![
            Just(Role::Clerk),
            Just(Role::OfficeManager),
            Just(Role::ProvinceReader),
            Just(Role::Operator),
        ]
    }

    proptest! {
        /// Whatever the role, nothing outside its own province is allowed.
        #[test]
        fn nothing_outside_the_own_province(
            role in role(),
            own in "[0-9]{2}",
            other in "[0-9]{2}",
            office in "[A-Z]{1,3}",
        ) {
            prop_assume!(own != other);
            let office_of_role = role.has_office().then(|| office.clone());
            let identity = Identity::new("s".into(), role, own, office_of_role, None).expect("valid");
            for action in [
                Action::Desk { province: &other, office: &office },
                Action::Read(Scope::Office { province: &other, office: &office }),
                Action::Read(Scope::Province(&other)),
                Action::Operate { province: &other },
            ] {
                prop_assert!(!identity.may(action), "{:?} {:?}", role, action);
            }
        }

        /// Only a clerk, and only of that office, issues desk commands.
        #[test]
        fn desk_commands_are_a_clerks_of_that_office(
            role in role(),
            office in "[A-Z]{1,3}",
            target in "[A-Z]{1,3}",
        ) {
            let office_of_role = role.has_office().then(|| office.clone());
            let identity = Identity::new("s".into(), role, "60".into(), office_of_role, None).expect("valid");
            let may = identity.may(Action::Desk { province: "60", office: &target });
            prop_assert_eq!(may, role == Role::Clerk && office == target);
        }
    }
}
