package clientapi

import (
	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/kv"
)

// Watch serves KV.Watch: events as they come, until the client ends the
// call. It holds no admission slot (a watch is no operation in flight)
// and no deadline. Its keys need read permission; events of keys under
// its prefixes that the caller may not read are skipped, as a listing
// skips them.
func (g *grpcAPI) Watch(r *caspaxospb.WatchRequest, s caspaxospb.KV_WatchServer) error {
	ctx := s.Context()
	if g.cfg.Watches == nil {
		return statusOf(errNoWatches)
	}
	req := kv.WatchRequest{From: map[string]uint64{}}
	for i, k := range r.GetKeys() {
		req.Keys = append(req.Keys, string(k))
		if i < len(r.GetFromVersions()) {
			req.From[string(k)] = r.GetFromVersions()[i]
		}
	}
	for _, p := range r.GetPrefixes() {
		req.Prefixes = append(req.Prefixes, string(p))
	}
	c := GRPCCredentials(ctx)
	if err := checkWatch(ctx, g.cfg.Guard, g.cfg.Limits, c, req); err != nil {
		return statusOf(err)
	}
	allow, err := readFilter(ctx, g.cfg.Guard, c)
	if err != nil {
		return statusOf(err)
	}
	wa, err := g.cfg.Watches.Watch(ctx, req)
	if err != nil {
		return statusOf(err)
	}
	defer wa.Close()
	for {
		evs, err := wa.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return statusOf(err)
		}
		out := &caspaxospb.WatchResponse{}
		for _, ev := range evs {
			ok, err := allow(ev.Key)
			if err != nil {
				return statusOf(err)
			}
			if ok {
				out.Events = append(out.Events, &caspaxospb.WatchEvent{Key: []byte(ev.Key), Value: ev.Value,
					Version: ev.Version, PrevVersion: ev.PrevVersion, Deleted: ev.Deleted})
			}
		}
		if len(out.Events) == 0 {
			continue
		}
		if err := s.Send(out); err != nil {
			return err
		}
	}
}
