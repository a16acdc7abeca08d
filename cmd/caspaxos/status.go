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

	"github.com/caspaxos/caspaxos/server/status"
)

// statusRow is one endpoint's answer in `status -o json`.
type statusRow struct {
	Endpoint string `json:"endpoint"`
	*status.Node
	Error string `json:"error,omitempty"`
}

type statusJSON struct {
	Nodes []statusRow `json:"nodes"`
}

func newStatusCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show every endpoint's status in a table",
		Long: `Ask every endpoint (--endpoints: give each node's client address) for its
status (GET /v1/status) and print one row per node: its name and ID, the
binary's version, the size of its data directory, the registers and
tombstones in its store (counted every --status-count-interval of serve,
1m) and the keys queued for GC, its membership version, the members it reaches with their round trips,
its WAL fsync p99 and the requests it answered per second (both over the
last 10 s), and whether it reaches a quorum.

With auth on it needs read on every key, or admin. An endpoint that does
not answer gets a row with its error, and the command fails (exit 7 when
none answers).`,
		Example: `  caspaxos status
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
			rows, err := collectStatus(ctx, n, eps)
			if perr := p.print(statusJSON{Nodes: rows}, func(w io.Writer) error { return writeStatusTable(w, rows) }); perr != nil {
				return perr
			}
			return err
		},
	}
}

// collectStatus asks every endpoint at once. The error joins every
// endpoint's when none answered (its class, ErrUnavailable say, sets the
// exit code); else it names those that did not answer.
func collectStatus(ctx context.Context, n *nodeHTTP, eps []string) ([]statusRow, error) {
	rows := make([]statusRow, len(eps))
	errs := make([]error, len(eps))
	var wg sync.WaitGroup
	for i, ep := range eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st status.Node
			rows[i].Endpoint = ep
			if err := n.call(ctx, ep, "GET", "/v1/status", nil, &st); err != nil {
				rows[i].Error, errs[i] = err.Error(), fmt.Errorf("status of %s: %w", ep, err)
				return
			}
			rows[i].Node = &st
		}()
	}
	wg.Wait()
	var failed []string
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err.Error())
		}
	}
	switch len(failed) {
	case 0:
		return rows, nil
	case len(eps):
		return rows, errors.Join(errs...)
	}
	return rows, fmt.Errorf("%d of %d endpoints did not answer: %s", len(failed), len(eps), strings.Join(failed, "; "))
}

func writeStatusTable(w io.Writer, rows []statusRow) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tNAME\tID\tVERSION\tDATA DIR\tREGISTERS\tTOMBSTONES\tGC QUEUE\tMEMBERSHIP\tPEERS REACHED (RTT)\tFSYNC P99\tREQ/S\tQUORUM")
	for _, r := range rows {
		if r.Node == nil {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\terror: %s\n", r.Endpoint, oneLine(r.Error))
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
