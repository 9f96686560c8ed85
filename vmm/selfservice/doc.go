// Package selfservice is the self-service web portal: end users sign in,
// create VMs from the templates their role allows, within a quota, on the
// host group the role points at, and start, stop, pause, reboot, checkpoint
// and remove their own VMs and see their consoles' addresses, as far as
// their role allows, watching each job's progress until the VM runs. A
// Handler is an http.Handler a product mounts; examples/selfservice runs
// one.
//
// Users sign in with their Active Directory account through Directory, a
// bind as the user over a discovery.Client's secured connection; roles name
// AD groups, nested membership included:
//
//	dir, err := discovery.Dial(ctx, discovery.Config{
//		URLs: []string{"ldaps://dc1.example.com"},
//		Bind: discovery.KerberosBind{Username: "svc-vmm", KeytabFile: "/etc/vmm/svc-vmm.keytab"},
//	})
//	h, err := selfservice.New(selfservice.Config{
//		Manager: mgr,
//		Auth:    selfservice.Directory{Client: dir}, // DevUsers for development
//		Roles: []selfservice.Role{{
//			Name: "developers", Groups: []string{"Dev Team"}, HostGroup: groupID,
//			Templates: []string{"web-small", "db-large"}, Points: map[string]int{"db-large": 4},
//			Quota: 8, Actions: []string{"create", "start", "stop", "remove"},
//		}},
//	})
//	http.Handle("/", h)
//
// Every request is checked on the server against the signed-in user's
// roles: an ID in a URL is no authority, and a VM that is not the user's
// (or their shared role's) is answered as if it did not exist. Forms carry
// a per-session CSRF token; pages are server-rendered html/template with a
// strict Content-Security-Policy and one small script of the portal's own
// (live job progress through server-sent events). The session cookie is
// HttpOnly, SameSite=Strict, and Secure under TLS. Sign-ins are limited per
// user name and per address, and a wrong password reads the same as an
// unknown user. The quota is enforced by the store in the same transaction
// as the VM's record (vmm.VMSpec.QuotaLimit), so concurrent requests never
// exceed it.
//
// Sessions live in the Handler's memory, where a restart signs users out
// and several portal processes need sticky sessions, or with
// Config.SharedSessions in the manager's store, shared by every portal on
// the database. A session keeps the
// groups its user had when signing in: taking a user out of a group, or
// disabling the account, takes effect at the next sign-in, so
// Config.SessionTTL bounds how long it may lag. VMs belong to the account's
// name (sAMAccountName with Directory): a renamed account leaves its VMs
// behind, and a new account given an old name finds them.
package selfservice
