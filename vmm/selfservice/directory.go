package selfservice

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/vmmkit/vmmkit/discovery"
)

// Directory is the Authenticator of Active Directory accounts: it checks a
// password with a bind as the user through a discovery.Client (TLS always,
// with the Client's servers, failover and timeouts) and gives the user's
// groups, nested ones and the primary group included, for Role.Groups.
//
// The Identity's User is the account's sAMAccountName in lower case, so
// that "alice", "LAB\alice" and "alice@lab.example.com" are one user and
// own the same VMs. A wrong password, an unknown user and an account that
// may not sign in (disabled, expired, locked out) are all ErrBadCredentials
// to the person signing in; the reason is in the error, which the portal
// logs.
type Directory struct {
	Client *discovery.Client
}

// Authenticate implements Authenticator.
func (d Directory) Authenticate(ctx context.Context, user, password string) (Identity, error) {
	if d.Client == nil {
		return Identity{}, errors.New("selfservice: Directory has no Client")
	}
	a, err := d.Client.Authenticate(ctx, user, password)
	if errors.Is(err, discovery.ErrInvalidCredentials) || errors.Is(err, discovery.ErrAccountRestricted) {
		if a.SAMAccountName != "" {
			return Identity{}, &BadCredentialsError{User: strings.ToLower(a.SAMAccountName), Err: err}
		}
		return Identity{}, fmt.Errorf("%w: %w", ErrBadCredentials, err)
	}
	if err != nil {
		return Identity{}, err
	}
	return Identity{User: strings.ToLower(a.SAMAccountName), Groups: a.Groups}, nil
}
