package etcdapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/auth"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb/mvccpb"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb/v3electionpb"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb/v3lockpb"
)

// APIVersion is the etcd version Status reports: the etcd API whose subset
// is served (docs/etcd.md), marked as caspaxos's.
const APIVersion = "3.5.0-caspaxos"

// Config configures the etcd front end.
type Config struct {
	Limits kv.Limits
	// RequestTimeout bounds each call whose caller set no earlier
	// deadline (default kv.DefaultRequestTimeout).
	RequestTimeout time.Duration
	// Admission, if set, is the node's bound on operations in flight,
	// shared with the client port.
	Admission *clientapi.Admission
	// Guard, if set, authenticates and authorizes calls as on the client
	// port; nil: every call is open.
	Guard *auth.Guard
	// ClusterID and MemberID go in every response header (etcd's
	// cluster_id and member_id); MemberID is the node's ID.
	ClusterID, MemberID uint64
	// EtcdURL is this node's etcd address as a URL (MemberList's
	// clientURLs of this member).
	EtcdURL string
	// Version is the version Status reports (the caspaxos build).
	Version string
	// MaxTxnAttempts bounds the get-and-compare-and-swap rounds of one Txn
	// or prev_kv write that keeps losing to concurrent changes of its key
	// (default 16); past it the call fails with Aborted, nothing applied.
	MaxTxnAttempts int
	// Watches, if set, serves the Watch service (the node's watches,
	// server/watch); nil: Watch is Unimplemented.
	Watches clientapi.Watches
	// WatchProgressInterval is how often a watch that asked for progress
	// notifications and got no event is told its progress (default 10
	// minutes, etcd's).
	WatchProgressInterval time.Duration
	// LockDelay is the lock delay of the locks and elections taken
	// through etcd's v3lock and v3election services: how long after a
	// break (its holder's lease ended) nobody may take the lock (default
	// kv.DefaultLockDelay; docs/locks.md). etcd's calls cannot ask one.
	LockDelay time.Duration
}

// DefaultConfig returns Config's defaults; Register fills zero fields from it.
func DefaultConfig() Config {
	return Config{Limits: kv.DefaultLimits, RequestTimeout: kv.DefaultRequestTimeout, MaxTxnAttempts: 16, WatchProgressInterval: 10 * time.Minute, LockDelay: kv.DefaultLockDelay}
}

// Server is the etcd front end over one node.
type Server struct {
	etcdpb.UnimplementedKVServer
	etcdpb.UnimplementedClusterServer
	etcdpb.UnimplementedMaintenanceServer
	etcdpb.UnimplementedAuthServer
	etcdpb.UnimplementedLeaseServer
	etcdpb.UnimplementedWatchServer
	cfg Config
	b   clientapi.Backend
}

// New returns the front end of cfg (zero fields from DefaultConfig) over b.
func New(cfg Config, b clientapi.Backend) *Server {
	def := DefaultConfig()
	if cfg.Limits == (kv.Limits{}) {
		cfg.Limits = def.Limits
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = def.RequestTimeout
	}
	if cfg.MaxTxnAttempts <= 0 {
		cfg.MaxTxnAttempts = def.MaxTxnAttempts
	}
	if cfg.WatchProgressInterval <= 0 {
		cfg.WatchProgressInterval = def.WatchProgressInterval
	}
	if cfg.LockDelay <= 0 {
		cfg.LockDelay = def.LockDelay
	}
	return &Server{cfg: cfg, b: b}
}

// ServerOptions are the options the front end's gRPC server needs: the
// handler that answers every method caspaxos does not serve.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.UnknownServiceHandler(unknownMethod)}
}

// Register registers the front end's services on s (built with
// ServerOptions among its options).
func (s *Server) Register(g *grpc.Server) {
	etcdpb.RegisterKVServer(g, s)
	etcdpb.RegisterClusterServer(g, s)
	etcdpb.RegisterMaintenanceServer(g, s)
	etcdpb.RegisterAuthServer(g, s)
	etcdpb.RegisterLeaseServer(g, s)
	etcdpb.RegisterWatchServer(g, s)
	v3lockpb.RegisterLockServer(g, lockService{s: s})
	v3electionpb.RegisterElectionServer(g, electionService{s: s})
}

// instead says, for each etcd service or method caspaxos does not serve,
// what it offers in its place.
var instead = map[string]string{
	"etcdserverpb.KV/Compact":             "caspaxos keeps no history to compact: each key holds only its latest state (deletion GC collects tombstones by itself)",
	"etcdserverpb.Lease/LeaseCheckpoint":  "caspaxos keeps a lease's remaining time in its register; there is nothing to checkpoint",
	"etcdserverpb.Cluster":                "change the membership with `caspaxos members add|remove` on the client port",
	"etcdserverpb.Maintenance/Defragment": "storage compacts itself (Pebble); there is nothing to defragment",
	"etcdserverpb.Maintenance/Hash":       "there is no store-wide revision to hash at; compare keys with Range",
	"etcdserverpb.Maintenance/HashKV":     "there is no store-wide revision to hash at; compare keys with Range",
	"etcdserverpb.Maintenance/Snapshot":   "back up each node's data directory, or list the keys with Range",
	"etcdserverpb.Maintenance/MoveLeader": "caspaxos has no leader: any node serves any key",
	"etcdserverpb.Maintenance/Downgrade":  "roll back by running the older caspaxos binary",
	"etcdserverpb.Maintenance":            "only Status and Alarm (GET) are served",
	"etcdserverpb.Auth":                   "only Authenticate is served; manage users and roles with `caspaxos auth` on the client port",
}

// unknownMethod answers every method no service here declares.
func unknownMethod(_ any, stream grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(stream)
	return status.Error(codes.Unimplemented, unimplementedMessage(method))
}

// unimplementedMessage says that method is not served, and what to use.
func unimplementedMessage(method string) string {
	m := strings.TrimPrefix(method, "/")
	why, ok := instead[m]
	if !ok {
		svc, _, _ := strings.Cut(m, "/")
		why, ok = instead[svc]
	}
	if !ok {
		why = "it is not part of etcd's v3 API as caspaxos serves it (docs/etcd.md)"
	}
	return fmt.Sprintf("caspaxos: %s is not implemented by caspaxos's etcd API: %s", m, why)
}

// Errors of the front end's own checks.
var (
	errBadRequest  = errors.New("caspaxos: bad request")
	errUnsupported = errors.New("caspaxos: not supported")
	errUnknowable  = errors.New("caspaxos: not answerable")
	errContended   = errors.New("caspaxos: contended")
)

// The exact messages etcd's clients recognize (clientv3 re-authenticates
// on an invalid token; etcdctl endpoint health counts a denied read as
// healthy).
const (
	msgPermissionDenied = "etcdserver: permission denied"
	msgInvalidToken     = "etcdserver: invalid auth token"
	msgAuthFailed       = "etcdserver: authentication failed, invalid user ID or password"
	msgEmptyKey         = "etcdserver: key is not provided"
	msgNoSpace          = "etcdserver: mvcc: database space exceeded"
)

// statusOf maps err to a gRPC status, with etcd's message where an etcd
// client matches on it and caspaxos's message otherwise.
func statusOf(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, kv.ErrEmptyKey):
		return status.Error(codes.InvalidArgument, msgEmptyKey)
	case errors.Is(err, kv.ErrLeaseNotFound):
		return status.Error(codes.NotFound, msgLeaseNotFound)
	case errors.Is(err, errBadRequest):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, errUnsupported):
		return status.Error(codes.Unimplemented, err.Error())
	case errors.Is(err, errUnknowable):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, errContended):
		return status.Error(codes.Aborted, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	switch code, _ := kv.Code(err); code {
	case kv.CodeKeyTooLarge, kv.CodeValueTooLarge, kv.CodeBadRequest:
		return status.Error(codes.InvalidArgument, err.Error())
	case kv.CodeNoQuorum:
		return status.Error(codes.Unavailable, err.Error())
	case kv.CodeUnknownOutcome:
		return status.Error(codes.DeadlineExceeded, err.Error())
	case kv.CodeOverloaded:
		return status.Error(codes.ResourceExhausted, err.Error())
	case kv.CodeNoSpace:
		return status.Error(codes.ResourceExhausted, msgNoSpace+" ("+err.Error()+")")
	case kv.CodeUnauthenticated:
		return status.Error(codes.Unauthenticated, msgInvalidToken)
	case kv.CodePermissionDenied:
		return status.Error(codes.PermissionDenied, msgPermissionDenied)
	case kv.CodeNotFound:
		return status.Error(codes.NotFound, err.Error())
	default:
		return status.Error(codes.Internal, err.Error())
	}
}

// credentialsOf reads a call's credentials: a client certificate's common
// names, etcd's "token" metadata, or a bearer "authorization" header.
func credentialsOf(ctx context.Context) auth.Credentials {
	c := clientapi.GRPCCredentials(ctx) // a bearer token wins over etcd's
	if md, ok := metadata.FromIncomingContext(ctx); ok && c.Token == "" {
		if v := md.Get("token"); len(v) > 0 {
			c.Token = v[len(v)-1]
		}
	}
	return c
}

// call is one authenticated, admitted call: its principal and deadline.
type call struct {
	ctx     context.Context
	p       auth.Principal
	s       *Server
	release func()
}

// begin authenticates a call and takes an admission slot; done ends it.
func (s *Server) begin(ctx context.Context) (*call, context.CancelFunc, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	p := auth.Principal{Open: true}
	if s.cfg.Guard != nil {
		var err error
		if p, err = s.cfg.Guard.Authenticate(ctx, credentialsOf(ctx)); err != nil {
			cancel()
			return nil, nil, err
		}
	}
	release, err := s.cfg.Admission.Admit()
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return &call{ctx: ctx, p: p, s: s, release: release}, func() { release(); cancel() }, nil
}

// allowed checks that the caller may do a.
func (c *call) allowed(a auth.Access) error {
	if c.s.cfg.Guard == nil {
		return nil
	}
	return c.s.cfg.Guard.Authorize(c.ctx, c.p, a)
}

// checkKey refuses a key no client may use (empty, too long, reserved).
func (c *call) checkKey(key string) error {
	if err := c.s.cfg.Limits.CheckKey(key); err != nil {
		return err
	}
	return kv.CheckClientKey(key)
}

// do checks op's key, value and permission and runs it.
func (c *call) do(op kv.Op) (protocol.State, error) {
	if err := op.Validate(c.s.cfg.Limits); err != nil {
		return protocol.State{}, err
	}
	if err := kv.CheckClientKey(op.Key); err != nil {
		return protocol.State{}, err
	}
	perm := auth.PermWrite
	if op.Kind == kv.OpGet {
		perm = auth.PermRead
	}
	if err := c.allowed(auth.Access{Perm: perm, Key: op.Key}); err != nil {
		return protocol.State{}, err
	}
	return c.s.b.Do(c.ctx, op)
}

// header is a response header; rev is the key's version on single-key calls.
func (s *Server) header(rev uint64) *etcdpb.ResponseHeader {
	return &etcdpb.ResponseHeader{ClusterId: s.cfg.ClusterID, MemberId: s.cfg.MemberID, Revision: int64(rev)}
}

// keyValue is the etcd view of key's state st (live), the mapping of doc.go.
func keyValue(key string, st protocol.State, keysOnly bool) *mvccpb.KeyValue {
	c, _ := createRevision(st)
	v, _ := etcdVersion(st)
	kvp := &mvccpb.KeyValue{Key: []byte(key), ModRevision: int64(st.Version), CreateRevision: int64(c), Version: int64(v), Lease: int64(st.Lease)}
	if !keysOnly {
		kvp.Value = st.Value
	}
	return kvp
}
