package etcdapi

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/caspaxos/caspaxos/kv"
	"github.com/caspaxos/caspaxos/server/etcdapi/etcdpb"
)

// MemberList serves Cluster.MemberList: the members as this node sees
// them. peerURLs is each member's peer address; clientURLs is this node's
// etcd address for itself only (a node does not know the others' etcd
// ports). Open to every caller, as the client port's member list is.
func (s *Server) MemberList(ctx context.Context, _ *etcdpb.MemberListRequest) (*etcdpb.MemberListResponse, error) {
	m, err := s.b.Members(ctx)
	if err != nil {
		return nil, statusOf(err)
	}
	resp := &etcdpb.MemberListResponse{Header: s.header(0)}
	for _, mem := range m.Members {
		em := &etcdpb.Member{ID: mem.ID, Name: mem.Name, PeerURLs: []string{"http://" + mem.PeerAddr}}
		if mem.ID == m.SelfID && s.cfg.EtcdURL != "" {
			em.ClientURLs = []string{s.cfg.EtcdURL}
		}
		resp.Members = append(resp.Members, em)
	}
	return resp, nil
}

// Status serves Maintenance.Status. caspaxos has no leader and no log:
// leader is this node's own ID (any node serves any key), the raft fields
// are 0, and errors holds what keeps the node from a quorum, if anything.
func (s *Server) Status(ctx context.Context, _ *etcdpb.StatusRequest) (*etcdpb.StatusResponse, error) {
	resp := &etcdpb.StatusResponse{Header: s.header(0), Version: s.cfg.Version, Leader: s.cfg.MemberID}
	if err := s.b.Health(ctx); err != nil {
		resp.Errors = []string{"caspaxos: no quorum: " + err.Error()}
	}
	return resp, nil
}

// Alarm serves Maintenance.Alarm: GET answers no alarm (a node short of
// disk refuses writes with the no-space error instead); ACTIVATE and
// DEACTIVATE are refused.
func (s *Server) Alarm(_ context.Context, r *etcdpb.AlarmRequest) (*etcdpb.AlarmResponse, error) {
	if r.GetAction() != etcdpb.AlarmRequest_GET {
		return nil, status.Error(codes.Unimplemented, "caspaxos: alarms cannot be raised or cleared: a node short of disk refuses writes by itself (--min-free-bytes, --quota-bytes) and accepts them again once space is freed")
	}
	return &etcdpb.AlarmResponse{Header: s.header(0)}, nil
}

// Authenticate serves Auth.Authenticate with the node's auth: the token
// is a caspaxos token, which clientv3 sends back as "token" metadata.
func (s *Server) Authenticate(ctx context.Context, r *etcdpb.AuthenticateRequest) (*etcdpb.AuthenticateResponse, error) {
	if s.cfg.Guard == nil {
		return nil, status.Error(codes.FailedPrecondition, "etcdserver: authentication is not enabled")
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	token, _, err := s.cfg.Guard.Login(ctx, r.GetName(), r.GetPassword())
	switch {
	case errors.Is(err, kv.ErrUnauthenticated):
		return nil, status.Error(codes.InvalidArgument, msgAuthFailed)
	case err != nil:
		return nil, statusOf(fmt.Errorf("caspaxos: login: %w", err))
	}
	return &etcdpb.AuthenticateResponse{Header: s.header(0), Token: token}, nil
}
