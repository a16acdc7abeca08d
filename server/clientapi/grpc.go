package clientapi

import (
	"context"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server/auth"
)

// GRPCConfig configures the gRPC API.
type GRPCConfig struct {
	Limits kv.Limits
	// RequestTimeout bounds each operation whose caller set no earlier
	// deadline (default kv.DefaultRequestTimeout).
	RequestTimeout time.Duration
	// MaxBatchInflightOps bounds the ops of one Batch stream taken and
	// not yet sent back: running, or answered and waiting to be sent
	// (default 4096).
	MaxBatchInflightOps int
	// MaxBatchQueuedBytes bounds the results of one Batch stream waiting
	// to be sent (default 16 MiB). Past either bound
	// the stream takes no new op until the client reads, so a client that
	// sends and never reads is held back by gRPC's flow control and costs
	// the node at most these bounds (plus the results of the ops still
	// running).
	MaxBatchQueuedBytes int64
	// Admission, if set, bounds the operations in flight (shared with the
	// HTTP API): a unary call past it is refused with ResourceExhausted
	// (code overloaded), a Batch op with an overloaded result.
	Admission *Admission
	// Guard, if set, authenticates and authorizes calls (auth.go); nil:
	// every call is open.
	Guard *auth.Guard
	// Warnings, if set, says what is wrong with the node without making
	// it unhealthy (peers unauthenticated): a healthy answer's message.
	Warnings func() []string
	// Watches, if set, serves KV.Watch (watch_grpc.go); nil: it answers
	// bad request.
	Watches Watches
}

// DefaultGRPCConfig returns GRPCConfig's defaults (Limits and Admission
// are the caller's); a zero or negative field given to RegisterGRPC takes
// its value from here.
func DefaultGRPCConfig() GRPCConfig {
	return GRPCConfig{
		RequestTimeout:      kv.DefaultRequestTimeout,
		MaxBatchInflightOps: 4096,
		MaxBatchQueuedBytes: 16 << 20,
	}
}

// The keepalive of a node's client gRPC server: it lets clients ping a
// connection every KeepaliveMinPingInterval or more (the Go client pings
// one silent for client.Config.KeepaliveTime, 10s by default, to find a
// node cut off without a reset), and itself pings a client silent for
// keepalivePingIdle and closes the connection if no answer comes within
// keepalivePingTimeout, so that a vanished client holds no connection.
const (
	// KeepaliveMinPingInterval is the least time between a client's
	// pings; a client pinging more often is cut off (gRPC's enforcement).
	// The Go client's KeepaliveTime must not be shorter.
	KeepaliveMinPingInterval = 5 * time.Second
	keepalivePingIdle        = 30 * time.Second
	keepalivePingTimeout     = 10 * time.Second
)

// KeepaliveOptions are the keepalive options of a node's client gRPC
// server (see KeepaliveMinPingInterval).
func KeepaliveOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: KeepaliveMinPingInterval, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: keepalivePingIdle, Timeout: keepalivePingTimeout}),
	}
}

// GRPC is a node's gRPC API, registered on a server.
type GRPC struct{ api *grpcAPI }

// RegisterGRPC registers the KV, Cluster and Auth services of a node on s.
func RegisterGRPC(s *grpc.Server, cfg GRPCConfig, b Backend) *GRPC {
	g := newGRPCAPI(cfg, b)
	caspaxospb.RegisterKVServer(s, g)
	caspaxospb.RegisterClusterServer(s, g)
	caspaxospb.RegisterAuthServer(s, &grpcAuth{g: g})
	caspaxospb.RegisterLeaseServer(s, &grpcLease{g: g}) // lease.go
	caspaxospb.RegisterLockServer(s, &grpcLock{g: g})   // lock.go
	return &GRPC{api: g}
}

// newGRPCAPI returns the services of cfg, its defaults filled in, over b.
func newGRPCAPI(cfg GRPCConfig, b Backend) *grpcAPI {
	def := DefaultGRPCConfig()
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = def.RequestTimeout
	}
	if cfg.MaxBatchInflightOps <= 0 {
		cfg.MaxBatchInflightOps = def.MaxBatchInflightOps
	}
	if cfg.MaxBatchQueuedBytes <= 0 {
		cfg.MaxBatchQueuedBytes = def.MaxBatchQueuedBytes
	}
	g := &grpcAPI{cfg: cfg, b: b, draining: make(chan struct{})}
	g.drain = sync.OnceFunc(func() { close(g.draining) })
	return g
}

// Drain makes every Batch stream, open or opened later, take no more ops
// and end with an OK status once the ops it took are answered (see the
// Batch RPC). Call it before the server's GracefulStop, which would
// otherwise wait for the clients to close their streams.
func (g *GRPC) Drain() { g.api.drain() }

type grpcAPI struct {
	caspaxospb.UnimplementedKVServer
	caspaxospb.UnimplementedClusterServer
	cfg      GRPCConfig
	b        Backend
	draining chan struct{}
	drain    func()
}

// timeout is the time an op may take: the caller's if it set one earlier
// than the request timeout (0: none).
func (g *grpcAPI) timeout(caller time.Duration) time.Duration {
	if caller <= 0 || caller > g.cfg.RequestTimeout {
		return g.cfg.RequestTimeout
	}
	return caller
}

// exec checks op, and that p may run it, and runs it within ctx, if the
// admission bound lets it.
func (g *grpcAPI) exec(ctx context.Context, p auth.Principal, op kv.Op) (protocol.State, error) {
	if err := checkClientOp(op, g.cfg.Limits); err != nil {
		return protocol.State{}, err
	}
	if err := authorize(ctx, g.cfg.Guard, p, access(op)); err != nil {
		return protocol.State{}, err
	}
	if err := g.cfg.Admission.admit(); err != nil {
		return protocol.State{}, err
	}
	defer g.cfg.Admission.release()
	return g.b.Do(ctx, op)
}

func (g *grpcAPI) run(ctx context.Context, op kv.Op) (protocol.State, error) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout(0))
	defer cancel()
	p, err := authenticate(ctx, g.cfg.Guard, GRPCCredentials(ctx))
	if err != nil {
		return protocol.State{}, statusOf(err)
	}
	s, err := g.exec(ctx, p, op)
	if err != nil {
		return s, statusOf(err)
	}
	return s, nil
}

// statusOf maps err through the error table into a status with an ErrorInfo.
func statusOf(err error) error {
	c, current := classify(err)
	st := status.New(c.grpc, err.Error())
	if d, derr := st.WithDetails(&caspaxospb.ErrorInfo{Code: c.code, CurrentVersion: current}); derr == nil {
		st = d
	}
	return st.Err()
}

func (g *grpcAPI) Get(ctx context.Context, r *caspaxospb.GetRequest) (*caspaxospb.GetResponse, error) {
	s, err := g.run(ctx, kv.Op{Kind: kv.OpGet, Key: string(r.GetKey())})
	if err != nil {
		return nil, err
	}
	if !s.Exists() {
		return nil, statusOf(kv.ErrNotFound)
	}
	return &caspaxospb.GetResponse{Value: s.Value, Version: s.Version, Lease: s.Lease}, nil
}

func (g *grpcAPI) Put(ctx context.Context, r *caspaxospb.PutRequest) (*caspaxospb.PutResponse, error) {
	op := kv.Op{Kind: kv.OpPut, Key: string(r.GetKey()), Value: r.GetValue(), RequestID: r.GetRequestId(), Lease: r.GetLease()}
	if r.IfVersion != nil {
		op.Kind, op.Version = kv.OpCompareAndSwap, r.GetIfVersion()
	}
	return g.write(ctx, op)
}

func (g *grpcAPI) Create(ctx context.Context, r *caspaxospb.CreateRequest) (*caspaxospb.PutResponse, error) {
	return g.write(ctx, kv.Op{Kind: kv.OpCreate, Key: string(r.GetKey()), Value: r.GetValue(), RequestID: r.GetRequestId(), Lease: r.GetLease()})
}

func (g *grpcAPI) CompareAndSwap(ctx context.Context, r *caspaxospb.CompareAndSwapRequest) (*caspaxospb.PutResponse, error) {
	return g.write(ctx, kv.Op{Kind: kv.OpCompareAndSwap, Key: string(r.GetKey()), Version: r.GetVersion(), Value: r.GetValue(), RequestID: r.GetRequestId(),
		Lease: r.GetLease()})
}

func (g *grpcAPI) write(ctx context.Context, op kv.Op) (*caspaxospb.PutResponse, error) {
	s, err := g.run(ctx, op)
	if err != nil {
		return nil, err
	}
	return &caspaxospb.PutResponse{Version: s.Version}, nil
}

func (g *grpcAPI) Delete(ctx context.Context, r *caspaxospb.DeleteRequest) (*caspaxospb.DeleteResponse, error) {
	s, err := g.run(ctx, kv.Op{Kind: kv.OpDelete, Key: string(r.GetKey()), Version: r.GetIfVersion(), RequestID: r.GetRequestId()})
	if err != nil {
		return nil, err
	}
	return &caspaxospb.DeleteResponse{Version: s.Version}, nil
}

func (g *grpcAPI) Increment(ctx context.Context, r *caspaxospb.IncrementRequest) (*caspaxospb.IncrementResponse, error) {
	s, err := g.run(ctx, kv.Op{Kind: kv.OpIncrement, Key: string(r.GetKey()), Delta: r.GetDelta(), RequestID: r.GetRequestId()})
	if err != nil {
		return nil, err
	}
	n, err := kv.Integer(s)
	if err != nil {
		return nil, statusOf(err)
	}
	return &caspaxospb.IncrementResponse{Value: n, Version: s.Version}, nil
}

func (g *grpcAPI) Members(ctx context.Context, _ *caspaxospb.MembersRequest) (*caspaxospb.MembersResponse, error) {
	m, err := g.b.Members(ctx)
	if err != nil {
		return nil, statusOf(err)
	}
	return membersProto(m), nil
}

func (g *grpcAPI) Health(ctx context.Context, _ *caspaxospb.HealthRequest) (*caspaxospb.HealthResponse, error) {
	if err := g.b.Health(ctx); err != nil {
		return &caspaxospb.HealthResponse{Healthy: false, Message: err.Error()}, nil
	}
	r := &caspaxospb.HealthResponse{Healthy: true}
	if g.cfg.Warnings != nil {
		r.Message = strings.Join(g.cfg.Warnings(), "; ")
	}
	return r, nil
}
