//! How the log names a call made with an API token: the one `CommandRequested` shape both
//! listeners record.
//!
//! **Invariant:** the actor is the token's owner (a token acts for its owner, within its
//! scopes), the method is `token` and the credential is the token's public id, never its secret.

use std::net::IpAddr;

use events::event::{AuthMethod, CommandRequested, Decision, Event, Permission, RequestId};
use projections::tokens::Token;

/// Who made one call, from where, with which token.
pub struct TokenCall<'a> {
    pub request_id: &'a str,
    pub token: &'a Token,
    pub ip: IpAddr,
    pub user_agent: &'a str,
}

impl TokenCall<'_> {
    /// The call's `CommandRequested`: what was asked (`method`, `path` without a token's
    /// secret in it, redacted `params`), the permission it needs, and the decision with its
    /// reason (empty when allowed).
    pub fn requested(
        &self,
        method: &str,
        path: &str,
        permission: Option<Permission>,
        decision: Decision,
        reason: &str,
        params: Vec<(String, String)>,
    ) -> Event {
        Event::CommandRequested(Box::new(CommandRequested {
            request: RequestId(self.request_id.to_owned()),
            actor: self.token.owner.clone(),
            auth: AuthMethod::Token,
            credential: Some(self.token.id.to_hex()),
            client_ip: self.ip.to_string(),
            user_agent: self.user_agent.to_owned(),
            // The HTTP parser takes a method of any length; a record stays small.
            method: crate::proxy::redact::cut(method, crate::proxy::redact::MAX_RECORDED_METHOD)
                .into_owned(),
            path: crate::proxy::redact::gateway_tokens(path).into_owned(),
            permission,
            decision,
            reason: reason.to_owned(),
            params,
        }))
    }
}

#[cfg(test)]
mod tests {
    use events::event::{Principal, TokenId};
    use events::hash::Hash;
    use events::time::Timestamp;

    use super::*;

    #[test]
    fn a_token_call_is_recorded_as_its_owner_with_the_public_id_only() {
        let token = Token {
            id: TokenId([0xab; 16]),
            name: "ci".into(),
            owner: Principal("dev@example.com".into()),
            scopes: vec![],
            secret_sha256: Hash([0xcd; 32]),
            created: Timestamp(1),
            expires: None,
            dev_only: false,
            revoked: None,
            last_used: None,
            created_by: Principal("admin@example.com".into()),
            created_with: None,
        };
        let call = TokenCall {
            request_id: "req-1",
            token: &token,
            ip: "192.0.2.7".parse().unwrap(),
            user_agent: "convox/3.19.7",
        };
        let Event::CommandRequested(r) = call.requested(
            "GET",
            "/apps",
            Some(Permission("convox:app:list".into())),
            Decision::Allow,
            "",
            vec![],
        ) else {
            panic!("not a CommandRequested");
        };
        assert_eq!(r.actor, token.owner);
        assert_eq!(r.auth, AuthMethod::Token);
        assert_eq!(r.credential.as_deref(), Some("ab".repeat(16).as_str()));
        assert_eq!(
            (
                r.request.0.as_str(),
                r.client_ip.as_str(),
                r.user_agent.as_str()
            ),
            ("req-1", "192.0.2.7", "convox/3.19.7")
        );
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/apps"));
    }
}
