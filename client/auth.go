package client

import (
	"context"
	"errors"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
)

// Authentication: with Config.Username set, the client logs in (the Auth
// service's Login) before its first call and again before its token
// expires, and sends the token in every call's metadata
// ("authorization: Bearer <token>"). A Batch stream sends the token it
// opened with; the node checks each op against the user's current
// permissions. A refused login is ErrUnauthenticated on the call that
// needed it.

// loggingIn marks the context of a Login, which carries no token.
type loggingIn struct{}

// tokens is the client's credentials.PerRPCCredentials.
type tokens struct {
	c  *Client
	mu sync.Mutex
	// password is Config.Password until UserPasswd changes the client's
	// own user's.
	password string
	token    string
	expiry   time.Time
	issued   time.Time
	// off: until when calls go without a token, the cluster having said
	// that auth is not enabled.
	off time.Time
}

// authOffRecheck is how long calls go without a token after the cluster
// said that auth is not enabled, before the client tries to log in again.
const authOffRecheck = 5 * time.Second

// GetRequestMetadata returns the authorization metadata, logging in first
// when no token is held or the one held is in the last fifth of its life.
func (t *tokens) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	if ctx.Value(loggingIn{}) != nil {
		return nil, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if now.Before(t.off) {
		return nil, nil
	}
	if t.token == "" || now.After(t.expiry.Add(-t.expiry.Sub(t.issued)/5)) {
		err := t.login(ctx, now)
		if errors.Is(err, ErrBadRequest) {
			// Auth is not enabled: the calls need no token.
			t.off = now.Add(authOffRecheck)
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
	}
	return map[string]string{"authorization": "Bearer " + t.token}, nil
}

// login gets a fresh token. Its error is the Login call's status, so that
// the call that needed the token fails with it (ErrUnauthenticated for a
// wrong password), or a connection error that moves the call on.
func (t *tokens) login(ctx context.Context, now time.Time) error {
	ctx = context.WithValue(ctx, loggingIn{}, true)
	var resp *caspaxospb.LoginResponse
	var answer error // the node's refusal, as its status
	err := t.c.call(ctx, true, func(conn *grpc.ClientConn) error {
		var err error
		resp, err = caspaxospb.NewAuthClient(conn).Login(ctx, &caspaxospb.LoginRequest{User: t.c.cfg.Username, Password: t.password})
		if _, answered := fromStatus(err); answered {
			answer = err
		}
		return err
	})
	switch {
	case errors.Is(err, ErrBadRequest):
		return err
	case err != nil && answer != nil:
		return answer // gRPC fails the call with this status, ErrorInfo and all
	case err != nil:
		return err // a connection problem: the call moves on
	}
	t.token, t.issued, t.expiry = resp.GetToken(), now, time.Unix(0, resp.GetExpiresUnixNanos())
	return nil
}

// RequireTransportSecurity is false: a node without TLS takes tokens too.
// With TLS on the client port, tokens travel encrypted.
func (t *tokens) RequireTransportSecurity() bool { return false }

// authRefusal reports whether err is a node's refusal of a Batch stream
// for its credentials: the node took no op of it, so nothing was applied.
func authRefusal(err error) (error, bool) {
	if err == nil {
		return nil, false
	}
	typed, answered := fromStatus(err)
	return typed, answered && (errors.Is(typed, ErrUnauthenticated) || errors.Is(typed, ErrPermissionDenied))
}

// loginRefusal reports whether err is a node's answer that it could not
// log the client in, for want of a quorum to read the auth state from
// (ErrNoQuorum): the call ran nothing, and a node that reaches a quorum
// may log it in.
func loginRefusal(err error) (error, bool) {
	if err == nil {
		return nil, false
	}
	typed, answered := fromStatus(err)
	return typed, answered && errors.Is(typed, ErrNoQuorum)
}

// Grant is a permission of a role: Perm ("read", "write", "readwrite" or
// "admin") on Key, or on every key beginning with Key when Prefix is set.
type Grant struct {
	Perm   string `json:"perm"`
	Key    string `json:"key,omitempty"`
	Prefix bool   `json:"prefix,omitempty"`
}

// User is a user and its roles.
type User struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
}

// Role is a role and its grants.
type Role struct {
	Name   string  `json:"name"`
	Grants []Grant `json:"grants"`
}

// authCall runs one Auth call; management calls are not retried on
// another endpoint once sent.
func (c *Client) authCall(ctx context.Context, idempotent bool, fn func(caspaxospb.AuthClient) error) error {
	return c.call(ctx, idempotent, func(conn *grpc.ClientConn) error { return fn(caspaxospb.NewAuthClient(conn)) })
}

// AuthStatus reports whether auth is enabled.
func (c *Client) AuthStatus(ctx context.Context) (bool, error) {
	var on bool
	err := c.authCall(ctx, true, func(a caspaxospb.AuthClient) error {
		r, err := a.AuthStatus(ctx, &caspaxospb.AuthStatusRequest{})
		on = r.GetEnabled()
		return err
	})
	return on, err
}

// AuthEnable turns auth on; the user root must exist. From then on every
// request needs credentials.
func (c *Client) AuthEnable(ctx context.Context) error {
	return c.authCall(ctx, true, func(a caspaxospb.AuthClient) error {
		_, err := a.AuthEnable(ctx, &caspaxospb.AuthStatusRequest{})
		return err
	})
}

// AuthDisable turns auth off (admin).
func (c *Client) AuthDisable(ctx context.Context) error {
	return c.authCall(ctx, true, func(a caspaxospb.AuthClient) error {
		_, err := a.AuthDisable(ctx, &caspaxospb.AuthStatusRequest{})
		return err
	})
}

// UserAdd adds a user with a password (admin).
func (c *Client) UserAdd(ctx context.Context, name, password string) error {
	return c.authCall(ctx, false, func(a caspaxospb.AuthClient) error {
		_, err := a.UserAdd(ctx, &caspaxospb.UserRequest{Name: name, Password: password})
		return err
	})
}

// UserDelete deletes a user (admin).
func (c *Client) UserDelete(ctx context.Context, name string) error {
	return c.authCall(ctx, false, func(a caspaxospb.AuthClient) error {
		_, err := a.UserDelete(ctx, &caspaxospb.UserRequest{Name: name})
		return err
	})
}

// UserPasswd changes a user's password (admin, or the user itself). It ends
// every token the user holds. For the client's own user (Config.Username)
// it sends the current password, which the node requires, and logs in with
// the new one from then on.
func (c *Client) UserPasswd(ctx context.Context, name, password string) error {
	req := &caspaxospb.UserRequest{Name: name, Password: password}
	own := c.tokens != nil && name == c.cfg.Username
	if own {
		c.tokens.mu.Lock()
		req.CurrentPassword = c.tokens.password
		c.tokens.mu.Unlock()
	}
	// Not sent again once sent when it is one's own: a second try would
	// carry a current password the first may have changed.
	err := c.authCall(ctx, !own, func(a caspaxospb.AuthClient) error {
		_, err := a.UserPasswd(ctx, req)
		return err
	})
	if err == nil && own {
		c.tokens.mu.Lock()
		c.tokens.password, c.tokens.token = password, ""
		c.tokens.mu.Unlock()
	}
	return err
}

// UserGrantRole gives a user a role (admin).
func (c *Client) UserGrantRole(ctx context.Context, user, role string) error {
	return c.authCall(ctx, false, func(a caspaxospb.AuthClient) error {
		_, err := a.UserGrantRole(ctx, &caspaxospb.UserRoleRequest{User: user, Role: role})
		return err
	})
}

// UserRevokeRole takes a role from a user (admin).
func (c *Client) UserRevokeRole(ctx context.Context, user, role string) error {
	return c.authCall(ctx, false, func(a caspaxospb.AuthClient) error {
		_, err := a.UserRevokeRole(ctx, &caspaxospb.UserRoleRequest{User: user, Role: role})
		return err
	})
}

// Users lists the users (admin).
func (c *Client) Users(ctx context.Context) ([]User, error) {
	var out []User
	err := c.authCall(ctx, true, func(a caspaxospb.AuthClient) error {
		r, err := a.UserList(ctx, &caspaxospb.UserListRequest{})
		out = out[:0]
		for _, u := range r.GetUsers() {
			out = append(out, User{Name: u.GetName(), Roles: u.GetRoles()})
		}
		return err
	})
	return out, err
}

// RoleAdd adds an empty role (admin).
func (c *Client) RoleAdd(ctx context.Context, name string) error {
	return c.authCall(ctx, false, func(a caspaxospb.AuthClient) error {
		_, err := a.RoleAdd(ctx, &caspaxospb.RoleRequest{Name: name})
		return err
	})
}

// RoleDelete deletes a role and takes it from every user (admin).
func (c *Client) RoleDelete(ctx context.Context, name string) error {
	return c.authCall(ctx, false, func(a caspaxospb.AuthClient) error {
		_, err := a.RoleDelete(ctx, &caspaxospb.RoleRequest{Name: name})
		return err
	})
}

func grantProto(g Grant) *caspaxospb.Grant {
	return &caspaxospb.Grant{Perm: g.Perm, Key: []byte(g.Key), Prefix: g.Prefix}
}

// RoleGrant adds a grant to a role (admin).
func (c *Client) RoleGrant(ctx context.Context, role string, g Grant) error {
	return c.authCall(ctx, false, func(a caspaxospb.AuthClient) error {
		_, err := a.RoleGrant(ctx, &caspaxospb.RoleGrantRequest{Role: role, Grant: grantProto(g)})
		return err
	})
}

// RoleRevoke removes a grant, exactly as granted, from a role (admin).
func (c *Client) RoleRevoke(ctx context.Context, role string, g Grant) error {
	return c.authCall(ctx, false, func(a caspaxospb.AuthClient) error {
		_, err := a.RoleRevoke(ctx, &caspaxospb.RoleGrantRequest{Role: role, Grant: grantProto(g)})
		return err
	})
}

// Roles lists the roles (admin).
func (c *Client) Roles(ctx context.Context) ([]Role, error) {
	var out []Role
	err := c.authCall(ctx, true, func(a caspaxospb.AuthClient) error {
		r, err := a.RoleList(ctx, &caspaxospb.RoleListRequest{})
		out = out[:0]
		for _, pr := range r.GetRoles() {
			role := Role{Name: pr.GetName(), Grants: []Grant{}}
			for _, g := range pr.GetGrants() {
				role.Grants = append(role.Grants, Grant{Perm: g.GetPerm(), Key: string(g.GetKey()), Prefix: g.GetPrefix()})
			}
			out = append(out, role)
		}
		return err
	})
	return out, err
}
