//! Roles a topology file can put on a host by name (`roles = ["discard"]` in a `[[host]]`):
//! roles that need nothing but their well-known port. Registering such a role is one line
//! here.

use crate::role::Role;

/// A constructor of a named role.
pub type MakeRole = fn() -> Box<dyn Role>;

/// Every role a topology can name, with its constructor.
pub const NAMED_ROLES: &[(&str, MakeRole)] =
    &[("discard", || Box::new(crate::discard::Discard::new()))];

/// The role registered under `name`, new.
pub fn named_role(name: &str) -> Option<Box<dyn Role>> {
    NAMED_ROLES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, make)| make())
}

/// The names a topology can use, for error messages.
pub fn role_names() -> Vec<&'static str> {
    NAMED_ROLES.iter().map(|(n, _)| *n).collect()
}
