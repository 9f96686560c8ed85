// Package discovery finds virtualization hosts in Active Directory: the
// computer accounts below an organizational unit, read over LDAP with TLS,
// page by page, and kept current by polling for changes.
//
// A [Client] is made by [Dial] from a [Config]: one or more server URLs
// (ldaps://, or ldap:// on which StartTLS is always required), the TLS trust
// (system roots, a CA file or a pool), and a [Bind]: a [SimpleBind] with a DN
// or user principal name and a password, or a [KerberosBind] (GSSAPI, from a
// password or a keytab, with a krb5.conf). Servers are tried in the order
// given; transient failures are retried with exponential backoff bound to the
// caller's context; bad credentials are never retried.
//
// [Client.Hosts] yields every computer account below a [Query]'s OU as a
// [Host]: names, operating system, SPNs, objectGUID as a UUID string, enabled
// or disabled, a derived [Role] (Hyper-V, Virtual Server, other), and the path
// of nested OUs below the query's OU as its host group. [Client.Changes]
// returns what was added, changed, moved out or deleted since a [Cursor], by
// the domain controller's uSNChanged counter and invocationId.
//
// [Client.Authenticate] checks a user's password for an application that
// signs people in (the self-service portal): the account is looked up with
// the Client's bind, the password checked by a bind as the account on a
// connection of its own, and the [Account] comes back with every group the
// user is in, nested ones included (tokenGroups). An empty password is
// refused before anything is sent, since servers take it as an anonymous
// bind.
//
// # Limits
//
//   - Page size is 500 by default and never above 1 000, Active Directory's
//     MaxPageSize. Servers may return fewer entries a page; paging goes on.
//   - Multi-valued attributes cut by range retrieval (AD sends at most 1 500
//     values at a time) are fetched in full.
//   - Referrals are never chased: a search answered with a referral fails
//     with [ErrReferral], so hosts never come from another place than asked.
//   - A connection lost in the middle of a paged search ends the iteration
//     with an error; hosts already yielded stand, none are repeated.
//   - Tombstones (deleted hosts) are read with the Show Deleted control when
//     the account may use it; otherwise deletions are found by comparing the
//     OU's membership, which costs one small search of the OU.
//
// # Errors
//
// Every error from the network is an [*OpError] that names the operation and
// server. errors.Is tells the kind ([ErrInvalidCredentials], [ErrTLS], ...)
// and errors.As still reaches the dependency's error, such as [*ldap.Error]
// or [*tls.CertificateVerificationError]. No error or log message carries a
// password.
//
// The protocol references:
//
//   - [RFC 4511]: LDAP; [RFC 4513]: StartTLS and binds; [RFC 2696]: paging.
//   - [MS-ADTS]: Active Directory, including range retrieval, the Show
//     Deleted control, uSNChanged and userAccountControl.
//
// [RFC 4511]: https://www.rfc-editor.org/rfc/rfc4511
// [RFC 4513]: https://www.rfc-editor.org/rfc/rfc4513
// [RFC 2696]: https://www.rfc-editor.org/rfc/rfc2696
// [MS-ADTS]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-adts/
// [*ldap.Error]: https://pkg.go.dev/github.com/go-ldap/ldap/v3#Error
package discovery
