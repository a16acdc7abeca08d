package clientapi

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/auth"
)

// Authorization (package auth; docs/security.md). With no Guard
// configured every request is open, as before auth existed. With one, each
// request is authenticated (a bearer token, or the common name of a client
// certificate the transport verified) and then authorized for what it
// needs:
//
//	get                                  read on the key
//	put, create, cas, delete, incr       write on the key
//	Batch                                each op as its unary call
//	members add/remove/release           admin
//	restore (POST /v1/restore)           admin
//	user and role management, disable    admin (a user may change its own
//	                                     password, giving the current one)
//	health, metrics, members list,
//	auth status, login                   open
//
// While auth is disabled the Guard answers every request as open, so
// nothing changes until `caspaxos auth enable`.

// errCrossOrigin: a state-changing HTTP request sent by a web page of
// another origin (CSRF), or an admin request in a form a web page can send
// without a CORS preflight.
var errCrossOrigin = fmt.Errorf("%w: cross-origin request refused", kv.ErrPermissionDenied)

// simpleContentTypes are those a web page may POST to any origin without a
// CORS preflight.
var simpleContentTypes = []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"}

// checkOrigin enforces the CSRF rule on every request that is not GET or
// HEAD: a browser marks a cross-origin request with Origin (and, in every
// current browser, Sec-Fetch-Site), which curl and the Go client never
// send, so such a request is refused. Admin requests (admin true) must
// also carry a Content-Type that is not one of simpleContentTypes, nor none:
// a page cannot send that without a preflight, which this server never
// answers, even from a browser that sends no Origin. A DNS rebinding page
// makes Origin and Host agree; the host guard (checkHost), run first on
// every request, refuses it.
func checkOrigin(r *http.Request, admin bool) error {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return nil
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || o == "null" || !strings.EqualFold(u.Host, r.Host) {
			return fmt.Errorf("%w: Origin %q is not this node (%s)", errCrossOrigin, o, r.Host)
		}
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return fmt.Errorf("%w: Sec-Fetch-Site %q", errCrossOrigin, r.Header.Get("Sec-Fetch-Site"))
	}
	if admin && r.Method == http.MethodPost {
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if ct == "" || strings.HasPrefix(ct, "text/plain") || ct == simpleContentTypes[1] || ct == simpleContentTypes[2] {
			return fmt.Errorf("%w: an admin POST needs a Content-Type other than %s or none (application/json, or application/octet-stream for NAME=PEER_ADDR)",
				errCrossOrigin, strings.Join(simpleContentTypes, ", "))
		}
	}
	return nil
}

// bearer returns the token of an "Authorization: Bearer <token>" value.
func bearer(v string) string {
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:])
	}
	return ""
}

// commonNames returns the subject common names of the leaves of the
// verified certificate chains.
func commonNames(chains [][]*x509.Certificate) []string {
	var out []string
	for _, c := range chains {
		if len(c) > 0 {
			out = append(out, c[0].Subject.CommonName)
		}
	}
	return out
}

// HTTPCredentials reads an HTTP request's credentials: a bearer
// Authorization header's token and the verified client certificates'
// common names. The Consul front end adds Consul's token headers to it.
func HTTPCredentials(r *http.Request) auth.Credentials {
	c := auth.Credentials{Token: bearer(r.Header.Get("Authorization"))}
	if r.TLS != nil {
		c.CommonNames = commonNames(r.TLS.VerifiedChains)
	}
	return c
}

// GRPCCredentials reads a gRPC call's credentials: a bearer
// "authorization" metadata token and the verified client certificates'
// common names. The etcd front end adds etcd's "token" metadata to it.
func GRPCCredentials(ctx context.Context) auth.Credentials {
	var c auth.Credentials
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		for _, v := range md.Get("authorization") {
			if t := bearer(v); t != "" {
				c.Token = t
			}
		}
	}
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			c.CommonNames = commonNames(ti.State.VerifiedChains)
		}
	}
	return c
}

// authenticate finds who a request acts as; with no guard, everyone is open.
func authenticate(ctx context.Context, g *auth.Guard, c auth.Credentials) (auth.Principal, error) {
	if g == nil {
		return auth.Principal{Open: true}, nil
	}
	return g.Authenticate(ctx, c)
}

// authorize checks that p may do a.
func authorize(ctx context.Context, g *auth.Guard, p auth.Principal, a auth.Access) error {
	if g == nil {
		return nil
	}
	return g.Authorize(ctx, p, a)
}

// access is what op needs.
func access(op kv.Op) auth.Access {
	if op.Kind == kv.OpGet {
		return auth.Access{Perm: auth.PermRead, Key: op.Key}
	}
	return auth.Access{Perm: auth.PermWrite, Key: op.Key}
}

var adminAccess = auth.Access{Perm: auth.PermAdmin}

// checkClientOp refuses what no client may do whoever it is: an op on a
// reserved key.
func checkClientOp(op kv.Op, l kv.Limits) error {
	if err := op.Validate(l); err != nil {
		return err
	}
	return kv.CheckClientKey(op.Key)
}

// authKind names a request of the auth service.
type authKind int

const (
	authLogin authKind = iota
	authStatus
	authEnable
	authDisable
	userAdd
	userDelete
	userPasswd
	userGrantRole
	userRevokeRole
	userList
	roleAdd
	roleDelete
	roleGrant
	roleRevoke
	roleList
)

// authRequest is one request of the auth service, for both protocols.
type authRequest struct {
	kind                 authKind
	name, password, role string
	current              string // userPasswd of one's own user: the current password
	grant                auth.Grant
}

// authResult is what an auth request answers.
type authResult struct {
	Token     string          `json:"token,omitempty"`
	ExpiresAt *time.Time      `json:"expires_at,omitempty"`
	Enabled   *bool           `json:"enabled,omitempty"`
	Users     []auth.UserInfo `json:"users,omitempty"`
	Roles     []auth.RoleInfo `json:"roles,omitempty"`
}

// errNoAuth: the node has no Guard (an embedded store).
var errNoAuth = fmt.Errorf("%w: this node has no auth", errBadRequest)

// doAuth authenticates and runs one auth request for both protocols.
func doAuth(ctx context.Context, g *auth.Guard, c auth.Credentials, req authRequest) (authResult, error) {
	if g == nil {
		return authResult{}, errNoAuth
	}
	switch req.kind {
	case authLogin:
		tok, exp, err := g.Login(ctx, req.name, req.password)
		return authResult{Token: tok, ExpiresAt: &exp}, err
	case authStatus:
		on, err := g.Enabled(ctx)
		return authResult{Enabled: &on}, err
	}
	p, err := g.Authenticate(ctx, c)
	if err != nil {
		return authResult{}, err
	}
	if req.kind == userPasswd && !p.Open && p.User == req.name {
		// One's own password, admin or not: the current one is needed,
		// so that a stolen token cannot take the account over.
		return authResult{}, g.ChangeOwnPassword(ctx, req.name, req.current, req.password)
	}
	if err := authorize(ctx, g, p, adminAccess); err != nil {
		return authResult{}, err
	}
	return manage(ctx, g, req)
}

// manage runs an authorized management request.
func manage(ctx context.Context, g *auth.Guard, req authRequest) (authResult, error) {
	var r authResult
	var err error
	switch req.kind {
	case authEnable, authDisable:
		if req.kind == authEnable {
			err = g.Enable(ctx)
		} else {
			err = g.Disable(ctx)
		}
		on := req.kind == authEnable && err == nil
		r.Enabled = &on
	case userAdd:
		err = g.AddUser(ctx, req.name, req.password)
	case userDelete:
		err = g.DeleteUser(ctx, req.name)
	case userPasswd:
		err = g.SetPassword(ctx, req.name, req.password)
	case userGrantRole:
		err = g.GrantRole(ctx, req.name, req.role)
	case userRevokeRole:
		err = g.RevokeRole(ctx, req.name, req.role)
	case userList:
		r.Users, err = g.Users(ctx)
		if r.Users == nil {
			r.Users = []auth.UserInfo{}
		}
	case roleAdd:
		err = g.AddRole(ctx, req.name)
	case roleDelete:
		err = g.DeleteRole(ctx, req.name)
	case roleGrant:
		err = g.GrantPerm(ctx, req.role, req.grant)
	case roleRevoke:
		err = g.RevokePerm(ctx, req.role, req.grant)
	case roleList:
		r.Roles, err = g.Roles(ctx)
		if r.Roles == nil {
			r.Roles = []auth.RoleInfo{}
		}
	default:
		err = fmt.Errorf("%w: unknown auth request %d", errBadRequest, req.kind)
	}
	return r, err
}

// authBody is the JSON body of the auth service's HTTP requests.
type authBody struct {
	User     string `json:"user"`
	Name     string `json:"name"`
	Password string `json:"password"`
	// CurrentPassword: a user changing its own password gives it.
	CurrentPassword string `json:"current_password"`
	Role            string `json:"role"`
	Perm            string `json:"perm"`
	Key             string `json:"key"`
	// KeyBase64: a grant's key that is not UTF-8, base64 (standard).
	KeyBase64 []byte `json:"key_b64"`
	Prefix    bool   `json:"prefix"`
}

// authRoutes registers the auth service's HTTP routes.
func (h *httpAPI) authRoutes(mux *http.ServeMux) {
	route := func(pattern string, kind authKind) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) { h.authHandler(w, r, kind) })
	}
	route("POST /v1/auth/login", authLogin)
	route("GET /v1/auth/status", authStatus)
	route("POST /v1/auth/enable", authEnable)
	route("POST /v1/auth/disable", authDisable)
	route("GET /v1/auth/users", userList)
	route("POST /v1/auth/users", userAdd)
	route("DELETE /v1/auth/users/{name}", userDelete)
	route("POST /v1/auth/users/{name}/password", userPasswd)
	route("POST /v1/auth/users/{name}/roles", userGrantRole)
	route("DELETE /v1/auth/users/{name}/roles/{role}", userRevokeRole)
	route("GET /v1/auth/roles", roleList)
	route("POST /v1/auth/roles", roleAdd)
	route("DELETE /v1/auth/roles/{name}", roleDelete)
	route("POST /v1/auth/roles/{name}/grant", roleGrant)
	route("POST /v1/auth/roles/{name}/revoke", roleRevoke)
}

// maxAuthBodyBytes bounds an auth request's JSON body.
const maxAuthBodyBytes = 64 << 10

func (h *httpAPI) authHandler(w http.ResponseWriter, r *http.Request, kind authKind) {
	err := checkOrigin(r, true)
	var req authRequest
	if err == nil {
		req, err = authHTTPRequest(r, kind)
	}
	var res authResult
	if err == nil {
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
		defer cancel()
		res, err = doAuth(ctx, h.cfg.Guard, HTTPCredentials(r), req)
	}
	if err != nil {
		writeError(w, err, 0)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// authHTTPRequest reads an auth request from its path and JSON body.
func authHTTPRequest(r *http.Request, kind authKind) (authRequest, error) {
	if err := onlyQuery(r); err != nil {
		return authRequest{}, err
	}
	var b authBody
	if r.Method == http.MethodPost && kind != authEnable && kind != authDisable {
		dec := json.NewDecoder(io.LimitReader(r.Body, maxAuthBodyBytes))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&b); err != nil {
			return authRequest{}, fmt.Errorf("%w: a JSON body is needed: %v", errBadRequest, err)
		}
	}
	req := authRequest{kind: kind, name: b.Name, password: b.Password, role: b.Role, current: b.CurrentPassword}
	switch kind {
	case authLogin:
		req.name = b.User
	case userDelete, userPasswd, userGrantRole, userRevokeRole:
		req.name = r.PathValue("name")
		if kind == userRevokeRole {
			req.role = r.PathValue("role")
		}
	case roleDelete:
		req.name = r.PathValue("name")
	case roleGrant, roleRevoke:
		req.role = r.PathValue("name")
		perm, err := auth.ParsePerm(b.Perm)
		if err != nil {
			return req, fmt.Errorf("%w: %v", errBadRequest, err)
		}
		if b.Key != "" && b.KeyBase64 != nil {
			return req, fmt.Errorf("%w: give key or key_b64, not both", errBadRequest)
		}
		req.grant = auth.Grant{Perm: perm, Key: b.Key, Prefix: b.Prefix}
		if b.KeyBase64 != nil {
			req.grant.Key = string(b.KeyBase64)
		}
	}
	return req, nil
}

// The gRPC Auth service.

type grpcAuth struct {
	caspaxospb.UnimplementedAuthServer
	g *grpcAPI
}

func (a *grpcAuth) do(ctx context.Context, req authRequest) (authResult, error) {
	ctx, cancel := context.WithTimeout(ctx, a.g.timeout(0))
	defer cancel()
	r, err := doAuth(ctx, a.g.cfg.Guard, GRPCCredentials(ctx), req)
	if err != nil {
		return r, statusOf(err)
	}
	return r, nil
}

func (a *grpcAuth) change(ctx context.Context, req authRequest) (*caspaxospb.AuthChangeResponse, error) {
	if _, err := a.do(ctx, req); err != nil {
		return nil, err
	}
	return &caspaxospb.AuthChangeResponse{}, nil
}

func (a *grpcAuth) status(ctx context.Context, kind authKind) (*caspaxospb.AuthStatusResponse, error) {
	r, err := a.do(ctx, authRequest{kind: kind})
	if err != nil {
		return nil, err
	}
	return &caspaxospb.AuthStatusResponse{Enabled: r.Enabled != nil && *r.Enabled}, nil
}

func (a *grpcAuth) Login(ctx context.Context, r *caspaxospb.LoginRequest) (*caspaxospb.LoginResponse, error) {
	res, err := a.do(ctx, authRequest{kind: authLogin, name: r.GetUser(), password: r.GetPassword()})
	if err != nil {
		return nil, err
	}
	return &caspaxospb.LoginResponse{Token: res.Token, ExpiresUnixNanos: res.ExpiresAt.UnixNano()}, nil
}

func (a *grpcAuth) AuthStatus(ctx context.Context, _ *caspaxospb.AuthStatusRequest) (*caspaxospb.AuthStatusResponse, error) {
	return a.status(ctx, authStatus)
}

func (a *grpcAuth) AuthEnable(ctx context.Context, _ *caspaxospb.AuthStatusRequest) (*caspaxospb.AuthStatusResponse, error) {
	return a.status(ctx, authEnable)
}

func (a *grpcAuth) AuthDisable(ctx context.Context, _ *caspaxospb.AuthStatusRequest) (*caspaxospb.AuthStatusResponse, error) {
	return a.status(ctx, authDisable)
}

func (a *grpcAuth) UserAdd(ctx context.Context, r *caspaxospb.UserRequest) (*caspaxospb.AuthChangeResponse, error) {
	return a.change(ctx, authRequest{kind: userAdd, name: r.GetName(), password: r.GetPassword()})
}

func (a *grpcAuth) UserDelete(ctx context.Context, r *caspaxospb.UserRequest) (*caspaxospb.AuthChangeResponse, error) {
	return a.change(ctx, authRequest{kind: userDelete, name: r.GetName()})
}

func (a *grpcAuth) UserPasswd(ctx context.Context, r *caspaxospb.UserRequest) (*caspaxospb.AuthChangeResponse, error) {
	return a.change(ctx, authRequest{kind: userPasswd, name: r.GetName(), password: r.GetPassword(), current: r.GetCurrentPassword()})
}

func (a *grpcAuth) UserGrantRole(ctx context.Context, r *caspaxospb.UserRoleRequest) (*caspaxospb.AuthChangeResponse, error) {
	return a.change(ctx, authRequest{kind: userGrantRole, name: r.GetUser(), role: r.GetRole()})
}

func (a *grpcAuth) UserRevokeRole(ctx context.Context, r *caspaxospb.UserRoleRequest) (*caspaxospb.AuthChangeResponse, error) {
	return a.change(ctx, authRequest{kind: userRevokeRole, name: r.GetUser(), role: r.GetRole()})
}

func (a *grpcAuth) UserList(ctx context.Context, _ *caspaxospb.UserListRequest) (*caspaxospb.UserListResponse, error) {
	res, err := a.do(ctx, authRequest{kind: userList})
	if err != nil {
		return nil, err
	}
	out := &caspaxospb.UserListResponse{}
	for _, u := range res.Users {
		out.Users = append(out.Users, &caspaxospb.User{Name: u.Name, Roles: u.Roles})
	}
	return out, nil
}

func grantOf(g *caspaxospb.Grant) (auth.Grant, error) {
	perm, err := auth.ParsePerm(g.GetPerm())
	if err != nil {
		return auth.Grant{}, statusOf(fmt.Errorf("%w: %v", errBadRequest, err))
	}
	return auth.Grant{Perm: perm, Key: string(g.GetKey()), Prefix: g.GetPrefix()}, nil
}

func (a *grpcAuth) RoleAdd(ctx context.Context, r *caspaxospb.RoleRequest) (*caspaxospb.AuthChangeResponse, error) {
	return a.change(ctx, authRequest{kind: roleAdd, name: r.GetName()})
}

func (a *grpcAuth) RoleDelete(ctx context.Context, r *caspaxospb.RoleRequest) (*caspaxospb.AuthChangeResponse, error) {
	return a.change(ctx, authRequest{kind: roleDelete, name: r.GetName()})
}

func (a *grpcAuth) RoleGrant(ctx context.Context, r *caspaxospb.RoleGrantRequest) (*caspaxospb.AuthChangeResponse, error) {
	g, err := grantOf(r.GetGrant())
	if err != nil {
		return nil, err
	}
	return a.change(ctx, authRequest{kind: roleGrant, role: r.GetRole(), grant: g})
}

func (a *grpcAuth) RoleRevoke(ctx context.Context, r *caspaxospb.RoleGrantRequest) (*caspaxospb.AuthChangeResponse, error) {
	g, err := grantOf(r.GetGrant())
	if err != nil {
		return nil, err
	}
	return a.change(ctx, authRequest{kind: roleRevoke, role: r.GetRole(), grant: g})
}

func (a *grpcAuth) RoleList(ctx context.Context, _ *caspaxospb.RoleListRequest) (*caspaxospb.RoleListResponse, error) {
	res, err := a.do(ctx, authRequest{kind: roleList})
	if err != nil {
		return nil, err
	}
	out := &caspaxospb.RoleListResponse{}
	for _, r := range res.Roles {
		pr := &caspaxospb.Role{Name: r.Name}
		for _, g := range r.Grants {
			pr.Grants = append(pr.Grants, &caspaxospb.Grant{Perm: g.Perm.String(), Key: []byte(g.Key), Prefix: g.Prefix})
		}
		out.Roles = append(out.Roles, pr)
	}
	return out, nil
}

// requireAdmin is the gRPC check of the admin calls of the Cluster service.
func (g *grpcAPI) requireAdmin(ctx context.Context) error {
	p, err := authenticate(ctx, g.cfg.Guard, GRPCCredentials(ctx))
	if err == nil {
		err = authorize(ctx, g.cfg.Guard, p, adminAccess)
	}
	if err != nil {
		return statusOf(err)
	}
	return nil
}

// adminOnly is the HTTP check of the admin routes of membership: the CSRF
// rule for admin requests, then the admin permission.
func (h *httpAPI) adminOnly(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := checkOrigin(r, true)
		if err == nil {
			var p auth.Principal
			p, err = authenticate(r.Context(), h.cfg.Guard, HTTPCredentials(r))
			if err == nil {
				err = authorize(r.Context(), h.cfg.Guard, p, adminAccess)
			}
		}
		if err != nil {
			writeError(w, err, 0)
			return
		}
		next(w, r)
	}
}
