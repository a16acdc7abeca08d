package peerapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/caspaxos/caspaxos/internal/certs"
	"github.com/caspaxos/caspaxos/protocol"
	"github.com/caspaxos/caspaxos/server"
	"github.com/caspaxos/caspaxos/server/acceptor"
	"github.com/caspaxos/caspaxos/server/list"
	"github.com/caspaxos/caspaxos/server/membership"
	"github.com/caspaxos/caspaxos/transport/peerpb"
)

// Every error of the table reaches the peer as its code, whatever wraps it,
// and the client turns the code back into the error; an error outside the
// table gets the handler's fallback, and Unavailable wins over the table.
func TestErrorTable(t *testing.T) {
	for _, tc := range []struct {
		err      error
		fallback codes.Code
		want     codes.Code
	}{
		{membership.ErrMembershipHeld, codes.FailedPrecondition, codes.Aborted},
		{membership.ErrMembershipOlder, codes.FailedPrecondition, codes.OutOfRange},
		{membership.ErrMembershipConflict, codes.FailedPrecondition, codes.AlreadyExists},
		{membership.ErrHoldInUse, codes.Unavailable, codes.FailedPrecondition},
		{protocol.ErrExhausted, codes.Unavailable, codes.InvalidArgument},
		{acceptor.ErrFenceTooHigh, codes.Unavailable, codes.InvalidArgument},
		{errors.New("disk on fire"), codes.Unavailable, codes.Unavailable},
		{errors.New("disk on fire"), codes.FailedPrecondition, codes.FailedPrecondition},
		{Unavailable(fmt.Errorf("sealing: %w", membership.ErrMembershipHeld)), codes.FailedPrecondition, codes.Unavailable},
	} {
		wrapped := fmt.Errorf("node 3: %w", tc.err)
		got := toStatus(wrapped, tc.fallback)
		if status.Code(got) != tc.want {
			t.Errorf("%v: code %v, want %v", tc.err, status.Code(got), tc.want)
		}
		if back := fromStatus(got, tc.err); tc.want != codes.Unavailable && tc.want != tc.fallback && !errors.Is(back, tc.err) {
			t.Errorf("%v: the client reads %v back, not the error", tc.err, back)
		}
	}
}

// fakeNode answers the services with the errors it is given.
type fakeNode struct {
	calls     atomic.Int64 // Info and ReleaseHold calls
	setState  error
	release   error
	scanLimit int
	copied    membership.Fences
	scanRange list.Range
	collected [][]protocol.Tombstone
}

func (f *fakeNode) Info(context.Context, protocol.NodeID, string) (membership.PeerInfo, error) {
	f.calls.Add(1)
	return membership.PeerInfo{Name: "n1", ID: 1}, nil
}
func (f *fakeNode) SetState(context.Context, membership.NodeState) error { return f.setState }
func (f *fakeNode) Settled(context.Context, uint64) (bool, error)        { return true, nil }
func (f *fakeNode) Fences() (membership.Fences, error) {
	return membership.Fences{Ages: map[protocol.NodeID]uint64{2: 7}, Counter: 1 << 40}, nil
}
func (f *fakeNode) CopyFences(_ context.Context, g membership.Fences) error {
	f.copied = g
	return nil
}
func (f *fakeNode) ScanKeys(_ string, limit int) ([]string, error) {
	f.scanLimit = limit
	return []string{"a"}, nil
}
func (f *fakeNode) ScanRegisters(_ context.Context, r list.Range) (protocol.ListReply, error) {
	f.scanRange = r
	b := protocol.Ballot{Counter: 3, Proposer: 2}
	return protocol.ListReply{More: true, Entries: []protocol.ListEntry{
		{Key: "a", Register: protocol.Register{Promise: b, Accepted: b, State: protocol.State{Value: []byte("v"), Version: 4}}},
		{Key: "b", ValueOmitted: true, Register: protocol.Register{Promise: b, Accepted: b, State: protocol.State{Version: 5}}},
	}}, nil
}
func (f *fakeNode) ReleaseHold(context.Context, bool) (membership.Hold, error) {
	f.calls.Add(1)
	return membership.Hold{}, f.release
}
func (f *fakeNode) Forget(context.Context, []protocol.Tombstone) (uint64, error) {
	return 0, protocol.ErrExhausted
}
func (f *fakeNode) Fence(map[protocol.NodeID]uint64) error { return acceptor.ErrFenceTooHigh }
func (f *fakeNode) Collect(tombs []protocol.Tombstone) ([]bool, error) {
	f.collected = append(f.collected, tombs)
	return make([]bool, len(tombs)), nil
}

// serve runs the services over f on a loopback listener.
func serve(t *testing.T, f *fakeNode) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	Register(s, f, f)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

// The services and their clients over a real connection: errors keep
// their identity across it, bad requests are refused, limits hold.
func TestServicesOverTheWire(t *testing.T) {
	f := &fakeNode{}
	addr := serve(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := &AdminClients{}
	defer cl.Close()
	to := membership.Member{Name: "n1", ID: 1, PeerAddr: addr}

	for _, want := range []error{membership.ErrMembershipHeld, membership.ErrMembershipOlder, membership.ErrMembershipConflict} {
		f.setState = fmt.Errorf("refused: %w", want)
		if err := cl.SetState(ctx, to, membership.NodeState{}); !errors.Is(err, want) {
			t.Errorf("SetState = %v, want %v", err, want)
		}
	}
	f.release = fmt.Errorf("%w: n2 still runs it", membership.ErrHoldInUse)
	if _, err := cl.ReleaseHold(ctx, to, false); !errors.Is(err, membership.ErrHoldInUse) {
		t.Errorf("ReleaseHold = %v, want membership.ErrHoldInUse", err)
	}
	if got, err := cl.Fences(ctx, to); err != nil || got.Ages[2] != 7 || got.Counter != 1<<40 {
		t.Errorf("Fences = %+v, %v", got, err)
	}
	// A joining node takes the members' fences and ballot counter.
	if err := cl.SetFences(ctx, to, membership.Fences{Ages: map[protocol.NodeID]uint64{3: 9}, Counter: 77}); err != nil ||
		f.copied.Ages[3] != 9 || f.copied.Counter != 77 {
		t.Errorf("SetFences: %v, node took %+v", err, f.copied)
	}
	rep, err := cl.ScanRegisters(ctx, to, list.Range{Prefix: "p", Start: "p1", Limit: 1 << 30, MaxBytes: 1 << 30, MaxValueBytes: 9, KeysOnly: true})
	b := protocol.Ballot{Counter: 3, Proposer: 2}
	want := protocol.ListReply{More: true, Entries: []protocol.ListEntry{
		{Key: "a", Register: protocol.Register{Promise: b, Accepted: b, State: protocol.State{Value: []byte("v"), Version: 4}}},
		{Key: "b", ValueOmitted: true, Register: protocol.Register{Promise: b, Accepted: b, State: protocol.State{Version: 5}}},
	}}
	if err != nil || !reflect.DeepEqual(rep, want) {
		t.Errorf("ScanRegisters = %+v, %v; want %+v", rep, err, want)
	}
	if r := f.scanRange; r != (list.Range{Prefix: "p", Start: "p1", Limit: MaxScanKeys, MaxBytes: maxScanBytes, MaxValueBytes: 9, KeysOnly: true}) {
		t.Errorf("ScanRegisters reached the node as %+v, its limits not bounded", r)
	}
	if _, err := cl.ScanKeys(ctx, to, "", 1<<30); err != nil || f.scanLimit != MaxScanKeys {
		t.Errorf("ScanKeys asked for 2^30 keys: node asked for %d (%v), want %d", f.scanLimit, err, MaxScanKeys)
	}

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := peerpb.NewAdminClient(conn).SetState(ctx, &peerpb.SetStateRequest{StateJson: []byte("{")}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("SetState with bad JSON = %v, want InvalidArgument", err)
	}
	g := peerpb.NewGCClient(conn)
	twice := []protocol.Tombstone{{Key: "k"}, {Key: "k"}}
	if _, err := g.Collect(ctx, &peerpb.CollectRequest{Tombstones: tombstonesToWire(twice)}); status.Code(err) != codes.InvalidArgument || len(f.collected) != 0 {
		t.Errorf("Collect of a key twice = %v (node called %d times), want InvalidArgument before the node", err, len(f.collected))
	}
	if _, err := g.Forget(ctx, &peerpb.ForgetRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Forget past the last age = %v, want InvalidArgument", err)
	}
	if _, err := g.Fence(ctx, &peerpb.FenceRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a fence too high = %v, want InvalidArgument", err)
	}
}

// GCPeers runs this node's steps directly and the others' over their
// service; it runs nothing while not Ready, and refuses an answer of the
// wrong length.
func TestGCPeers(t *testing.T) {
	local, remote := &fakeNode{}, &fakeNode{}
	addr := serve(t, remote)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	notYet := errors.New("not a member yet")
	var ready error
	dialed := 0
	p := &GCPeers{Self: 1, Local: local, Members: func() []protocol.NodeID { return []protocol.NodeID{1, 2} },
		Ready: func() error { return ready },
		Dial: func(id protocol.NodeID) (peerpb.GCClient, error) {
			dialed++
			if id != 2 {
				return nil, errors.New("no link")
			}
			return peerpb.NewGCClient(conn), nil
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tombs := []protocol.Tombstone{{Key: "a"}, {Key: "b"}}
	for _, id := range []protocol.NodeID{1, 2} {
		if done, err := p.Collect(ctx, id, tombs); err != nil || len(done) != 2 {
			t.Fatalf("Collect on %d = %v, %v", id, done, err)
		}
	}
	if len(local.collected) != 1 || len(remote.collected) != 1 || dialed != 1 {
		t.Fatalf("local ran %d, remote %d, dialed %d: want one each, one dial", len(local.collected), len(remote.collected), dialed)
	}
	if _, err := p.Collect(ctx, 3, tombs); !errors.Is(err, server.ErrUnreachable) {
		t.Errorf("Collect on a node without a link = %v, want ErrUnreachable", err)
	}
	ready = notYet
	for _, id := range []protocol.NodeID{1, 2} {
		if _, err := p.Collect(ctx, id, tombs); !errors.Is(err, notYet) {
			t.Errorf("Collect on %d while not ready = %v, want the readiness error", id, err)
		}
		if _, err := p.Forget(ctx, id, tombs); !errors.Is(err, notYet) {
			t.Errorf("Forget on %d while not ready = %v", id, err)
		}
		if err := p.Fence(ctx, id, nil); !errors.Is(err, notYet) {
			t.Errorf("Fence on %d while not ready = %v", id, err)
		}
	}
	if len(local.collected) != 1 || len(remote.collected) != 1 {
		t.Errorf("steps ran while not ready")
	}
}

// pkiFiles writes a CA and a certificate of it for each name into a new
// folder, and returns each name's Files (trusting the CA).
func pkiFiles(t *testing.T, names ...string) map[string]certs.Files {
	t.Helper()
	dir, now := t.TempDir(), time.Now()
	ca, err := certs.NewCA("test CA", now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	out := map[string]certs.Files{}
	for _, n := range names {
		c, k, err := ca.Issue(n, now.Add(-time.Hour), now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		f := certs.Files{CertFile: filepath.Join(dir, n+".pem"), KeyFile: filepath.Join(dir, n+"-key.pem"), CAFile: caFile}
		if err := os.WriteFile(f.CertFile, c, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.KeyFile, k, 0o600); err != nil {
			t.Fatal(err)
		}
		out[n] = f
	}
	return out
}

// Over TLS, an Admin client takes answers only from the node it asked
// for: a node at the member's address whose certificate (of the same CA)
// names another node (a removed one, or a client's) is not called at all,
// so it cannot pose as the member; the member itself is answered.
func TestAdminClientsVerifyTheNodeNamed(t *testing.T) {
	files := pkiFiles(t, "n1", "n2", "n9")
	load := func(name string) *certs.Source {
		s, err := certs.Load(files[name], nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// n9 listens where the members' Admin clients look for n2.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	scfg, err := load("n9").ServerConfig(certs.ServerOptions{ClientAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(scfg)))
	f := &fakeNode{}
	Register(s, f, f)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	addr := lis.Addr().String()

	cl := &AdminClients{TLS: load("n1")}
	defer cl.Close()
	short, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := cl.Info(short, membership.Member{Name: "n2", PeerAddr: addr}, 1, ""); err == nil {
		t.Error("Info of n2 was answered by a node whose certificate names n9")
	}
	if _, err := cl.ReleaseHold(short, membership.Member{Name: "n2", PeerAddr: addr}, true); err == nil {
		t.Error("ReleaseHold of n2 was answered by n9")
	}
	if f.calls.Load() != 0 {
		t.Errorf("the impostor was called %d times", f.calls.Load())
	}
	if _, err := cl.Info(short, membership.Member{PeerAddr: addr}, 1, ""); !errors.Is(err, errNoName) {
		t.Errorf("Info of a node of no name over TLS = %v, want errNoName", err)
	}
	// The same address asked for the name its certificate gives is
	// answered: a connection per address and name, not per address.
	ctx, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if _, err := cl.Info(ctx, membership.Member{Name: "n9", PeerAddr: addr}, 1, ""); err != nil {
		t.Errorf("Info of n9 at its own address: %v", err)
	}
}
