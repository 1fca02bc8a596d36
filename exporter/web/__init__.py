"""HTTP plumbing shared by every feature: state, errors, auth, bodies, pagination, access log."""
