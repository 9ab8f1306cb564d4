use std::collections::HashSet;

use imprint_api::{Access, ErrorCode, Op, Role};

#[test]
fn every_operation_has_one_route_and_no_two_share_one() {
    let mut seen = HashSet::new();
    for op in Op::ALL {
        let r = op.route();
        assert!(r.path.starts_with('/'), "{op:?}");
        assert!(seen.insert((r.method, r.path)), "{op:?} repeats a route");
    }
    let ops: HashSet<Op> = Op::ALL.into_iter().collect();
    assert_eq!(ops.len(), Op::ALL.len(), "Op::ALL lists an operation twice");
}

#[test]
fn roles_are_as_documented_in_docs_server_md() {
    // The roles table of docs/server.md, by operation.
    const ADMIN: [Role; 1] = [Role::Admin];
    for op in [
        Op::ListKeys,
        Op::AddKey,
        Op::MapProduct,
        Op::Generate,
        Op::Import,
        Op::AddFactory,
        Op::SetQuota,
        Op::AddUser,
        Op::Revoke,
    ] {
        assert_eq!(op.route().access, Access::Roles(&ADMIN), "{op:?}");
    }
    for op in [Op::Issue, Op::Lease, Op::Records, Op::Report, Op::Release] {
        assert_eq!(
            op.route().access,
            Access::Roles(&[Role::Technician]),
            "{op:?}"
        );
    }
    // Technicians read the products too: a station learns at sign-in whether its product is
    // chip-bound.
    assert_eq!(
        Op::ListProducts.route().access,
        Access::Roles(&[Role::Admin, Role::Technician, Role::Auditor])
    );
    for op in [Op::ExportInstalled, Op::ReadAudit, Op::VerifyAudit] {
        assert_eq!(
            op.route().access,
            Access::Roles(&[Role::Admin, Role::Auditor]),
            "{op:?}"
        );
    }
    for op in [
        Op::Login,
        Op::LeaseKey,
        Op::Challenge,
        Op::Verify,
        Op::OpenApi,
    ] {
        assert_eq!(op.route().access, Access::Public, "{op:?}");
    }
}

#[test]
fn error_codes_serialise_as_their_names_and_statuses_are_http_errors() {
    let mut names = HashSet::new();
    for c in ErrorCode::ALL {
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, format!("\"{}\"", c.as_str()));
        let back: ErrorCode = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        assert!((400..600).contains(&c.status()), "{c}");
        assert!(names.insert(c.as_str()));
    }
    assert!(serde_json::from_str::<ErrorCode>("\"no_such_code\"").is_err());
}
