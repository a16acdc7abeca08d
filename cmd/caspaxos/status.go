package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/caspaxos/caspaxos/client"
	"github.com/caspaxos/caspaxos/server/status"
)

// statusRow is one endpoint's answer in `status -o json`.
type statusRow struct {
	// Endpoint is the client address asked ("" with --cluster for a
	// member whose address no endpoint knew).
	Endpoint string `json:"endpoint"`
	// Member and MemberID name the member as the membership lists it
	// (--cluster only).
	Member   string `json:"member,omitempty"`
	MemberID uint64 `json:"member_id,omitempty"`
	*status.Node
	Error string `json:"error,omitempty"`
}

type statusJSON struct {
	Nodes []statusRow `json:"nodes"`
}

func newStatusCmd(o *clientOptions) *cobra.Command {
	var cluster bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every endpoint's or every member's status in a table",
		Long: `Ask every endpoint (--endpoints: give each node's client address), or with
--cluster every member of the cluster, for its status (GET /v1/status) and
print one row per node: its name and ID, the binary's version, the size of
its data directory, the registers and tombstones in its store (counted
every --status-count-interval of serve, 1m) and the keys queued for GC, its
membership version, the members it reaches with their round trips, its WAL
fsync p99 and the requests it answered per second (both over the last
10 s), and whether it reaches a quorum.

With --cluster, the endpoints are asked for the membership (GET
/v1/members; the newest one any of them answers with is used), and every
member is asked once at its client address as the listing gives it (a
node lists its own and those of the members it has reached since it
started), in the listing's order. The rows name the members; a member
whose address no endpoint knows, or whose address answers as another
node, gets a row with that error. One endpoint is enough.

With auth on it needs read on every key, or admin (the same user, token
and TLS files for every node asked). An endpoint or member that does not
answer gets a row with its error, and the command fails (exit 7 when none
answers).`,
		Example: `  caspaxos status
  caspaxos --endpoints 10.0.0.1:7070 status --cluster
  caspaxos --endpoints 10.0.0.1:7070,10.0.0.2:7070,10.0.0.3:7070 status -o json | jq '.nodes[].requests_per_second'`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p := printer{out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr(), json: o.output == "json"}
			if o.output != "plain" && o.output != "json" {
				return usagef(cmd.CommandPath(), "--output %q: want plain or json", o.output)
			}
			if o.timeout <= 0 {
				return usagef(cmd.CommandPath(), "--timeout must be positive, got %s", o.timeout)
			}
			eps, err := o.endpointList(cmd.CommandPath())
			if err != nil {
				return err
			}
			user, password, err := o.credentials(cmd)
			if err != nil {
				return err
			}
			n, err := o.nodeHTTP(user, password, eps)
			if err != nil {
				return err
			}
			defer n.close()
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			rows, noun := make([]statusRow, len(eps)), "endpoints"
			for i, ep := range eps {
				rows[i].Endpoint = ep
			}
			if cluster {
				if rows, err = memberRows(ctx, n, eps); err != nil {
					return err
				}
				noun = "members"
			}
			err = collectStatus(ctx, n, rows, noun)
			if perr := p.print(statusJSON{Nodes: rows}, func(w io.Writer) error { return writeStatusTable(w, rows) }); perr != nil {
				return perr
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&cluster, "cluster", false, "show every member of the cluster, as the endpoints list them (one endpoint is enough)")
	return cmd
}

// memberRows asks every endpoint at once for the membership and returns a
// row for each member of the newest one answered (the first endpoint's of
// equal versions), in its order, with the member's client address as
// that answer gives it, or another one does; or with an error when none
// does, or when it is one the user's credentials may not be sent to. The
// error joins every endpoint's when none answered.
func memberRows(ctx context.Context, n *nodeHTTP, eps []string) ([]statusRow, error) {
	answers := make([]client.Membership, len(eps))
	errs := make([]error, len(eps))
	var wg sync.WaitGroup
	for i, ep := range eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.call(ctx, ep, "GET", "/v1/members", nil, &answers[i]); err != nil {
				errs[i] = fmt.Errorf("members of %s: %w", ep, err)
			}
		}()
	}
	wg.Wait()
	newest := -1
	for i := range eps {
		if errs[i] == nil && (newest < 0 || answers[i].ConfigVersion > answers[newest].ConfigVersion) {
			newest = i
		}
	}
	if newest < 0 {
		return nil, errors.Join(errs...)
	}
	addrs := map[uint64]string{}
	learn := func(m client.Membership) {
		for _, mb := range m.Members {
			if mb.ClientAddr != "" && addrs[mb.ID] == "" {
				addrs[mb.ID] = mb.ClientAddr
			}
		}
	}
	learn(answers[newest])
	for i := range eps {
		if errs[i] == nil {
			learn(answers[i])
		}
	}
	rows := make([]statusRow, len(answers[newest].Members))
	for i, m := range answers[newest].Members {
		rows[i] = statusRow{Endpoint: addrs[m.ID], Member: m.Name, MemberID: m.ID}
		if rows[i].Endpoint == "" {
			rows[i].Error = fmt.Sprintf("no client address known for %s: none of the endpoints has reached it since it started", m.Name)
		} else if err := n.mayAsk(rows[i].Endpoint); err != nil {
			rows[i].Error = err.Error()
		}
	}
	return rows, nil
}

// collectStatus asks every row's endpoint at once (each distinct one
// once), except rows that have an error already. A --cluster row (one
// with a MemberID) answered by another node gets an error instead. The
// error joins every row's when none answered (its class, ErrUnavailable
// say, sets the exit code); else it names those that did not answer.
func collectStatus(ctx context.Context, n *nodeHTTP, rows []statusRow, noun string) error {
	type answer struct {
		st  *status.Node
		err error
	}
	answers := map[string]*answer{}
	for _, r := range rows {
		if r.Error == "" {
			answers[r.Endpoint] = &answer{}
		}
	}
	var wg sync.WaitGroup
	for ep, a := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st status.Node
			if a.err = n.call(ctx, ep, "GET", "/v1/status", nil, &st); a.err == nil {
				a.st = &st
			}
		}()
	}
	wg.Wait()
	errs := make([]error, len(rows))
	var failed []string
	for i := range rows {
		r := &rows[i]
		what := r.Endpoint
		if r.Member != "" {
			what = r.Member
		}
		a := answers[r.Endpoint]
		switch {
		case r.Error != "":
			errs[i] = fmt.Errorf("status of %s: %s", what, r.Error)
		case a.err != nil:
			r.Error, errs[i] = a.err.Error(), fmt.Errorf("status of %s: %w", what, a.err)
		case r.MemberID != 0 && a.st.ID != r.MemberID:
			r.Error = fmt.Sprintf("%s answers as %s (ID %d), not as member %s (ID %d)", r.Endpoint, a.st.Name, a.st.ID, r.Member, r.MemberID)
			errs[i] = fmt.Errorf("status of %s: %s", what, r.Error)
		default:
			r.Node = a.st
		}
		if errs[i] != nil {
			failed = append(failed, errs[i].Error())
		}
	}
	switch len(failed) {
	case 0:
		return nil
	case len(rows):
		return errors.Join(errs...)
	}
	return fmt.Errorf("%d of %d %s did not answer: %s", len(failed), len(rows), noun, strings.Join(failed, "; "))
}

func writeStatusTable(w io.Writer, rows []statusRow) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tNAME\tID\tVERSION\tDATA DIR\tREGISTERS\tTOMBSTONES\tGC QUEUE\tMEMBERSHIP\tPEERS REACHED (RTT)\tFSYNC P99\tREQ/S\tQUORUM")
	for _, r := range rows {
		if r.Node == nil {
			ep, name, id := r.Endpoint, "-", "-"
			if ep == "" {
				ep = "-"
			}
			if r.Member != "" {
				name, id = r.Member, fmt.Sprint(r.MemberID)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\terror: %s\n", ep, name, id, oneLine(r.Error))
			continue
		}
		s := r.Node
		regs, tombs, queued := "-", "-", "-"
		if s.CountedAgoSeconds >= 0 {
			regs, tombs = fmt.Sprint(s.Registers), fmt.Sprint(s.Tombstones)
		}
		if s.GC {
			queued = fmt.Sprint(s.GCQueued)
		}
		quorum := "yes"
		if !s.Quorum {
			quorum = "NO: " + oneLine(s.QuorumError)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%.1f\t%s\n", r.Endpoint, s.Name, s.ID, s.Version,
			humanBytes(s.DataDirBytes), regs, tombs, queued, s.ConfigVersion, peersReached(s.Peers),
			humanSeconds(s.WALFsyncP99Seconds), s.RequestsPerSecond, quorum)
	}
	return tw.Flush()
}

// peersReached is "2/2 (n2 0.3ms, n3 0.4ms)": the other members reached
// of all, with their round trips; an unreached one is marked.
func peersReached(peers []status.Peer) string {
	var reached, others int
	var parts []string
	for _, p := range peers {
		if p.Self {
			continue
		}
		others++
		if !p.Reachable {
			parts = append(parts, p.Name+" unreachable")
			continue
		}
		reached++
		parts = append(parts, p.Name+" "+humanSeconds(p.RTTSeconds))
	}
	return fmt.Sprintf("%d/%d (%s)", reached, others, strings.Join(parts, ", "))
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func humanSeconds(s float64) string {
	switch {
	case s == 0:
		return "-"
	case s < 1e-3:
		return fmt.Sprintf("%.0fµs", s*1e6)
	case s < 1:
		return fmt.Sprintf("%.1fms", s*1e3)
	}
	return fmt.Sprintf("%.2fs", s)
}
