package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/caspaxos/caspaxos/client"
)

// leaseJSON is a lease as -o json prints it.
type leaseJSON struct {
	ID      string `json:"id"`
	TTLMs   int64  `json:"ttl_ms"`
	State   string `json:"state"`
	Renewed string `json:"renewed,omitempty"`
}

func printLease(p printer, l client.Lease) error {
	j := leaseJSON{ID: strconv.FormatUint(l.ID, 16), TTLMs: l.TTL.Milliseconds(), State: l.State, Renewed: l.Renewed.UTC().Format(time.RFC3339Nano)}
	return p.print(j, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "%s ttl=%v %s\n", j.ID, l.TTL, l.State)
		return err
	})
}

func leaseIDArg(cmd *cobra.Command, s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 16, 64)
	if err != nil || id == 0 {
		return 0, usagef(cmd.CommandPath(), "lease ID %q is not a non-zero hexadecimal number", s)
	}
	return id, nil
}

func newLeaseCmd(o *clientOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lease",
		Short: "Grant, keep alive, revoke and read leases",
		Long: `A lease lives for its TTL after its last keep-alive, and then expires: any
node commits its expiry once its clock is past the last renewal + TTL + the
cluster's --max-clock-skew. It never expires before its TTL has passed since
its last keep-alive was sent (docs/leases.md). IDs are hexadecimal.`,
		Example: `  caspaxos lease grant 10s          # prints the new lease's ID
  caspaxos lease keepalive 3f2a     # renews every third of the TTL, over one stream, until interrupted
  caspaxos lease keepalive --once 3f2a
  caspaxos lease ttl 3f2a
  caspaxos lease revoke 3f2a`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	grant := &cobra.Command{
		Use: "grant TTL", Short: "Grant a lease of TTL (100ms to 24h); print its ID", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ttl, err := time.ParseDuration(args[0])
			if err != nil {
				return usagef(cmd.CommandPath(), "TTL %q is not a duration like 10s", args[0])
			}
			return o.call(cmd, func(ctx context.Context, c *client.Client, p printer) error {
				l, err := c.Grant(ctx, ttl)
				if err != nil {
					return &opError{op: "lease grant", err: err}
				}
				return printLease(p, l)
			})
		},
	}
	var once bool
	keep := &cobra.Command{
		Use: "keepalive ID", Short: "Keep a lease alive until interrupted (or once)", Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := leaseIDArg(cmd, args[0])
			if err != nil {
				return err
			}
			if once {
				return o.call(cmd, func(ctx context.Context, c *client.Client, p printer) error {
					l, err := c.KeepAliveOnce(ctx, id)
					if err != nil {
						return &opError{op: "lease keepalive", err: err}
					}
					return printLease(p, l)
				})
			}
			return o.callWithin(cmd, time.Duration(math.MaxInt64), func(ctx context.Context, c *client.Client, p printer) error {
				l, err := c.TimeToLive(ctx, id)
				if err != nil {
					return &opError{op: "lease keepalive", err: err}
				}
				k := c.KeepAlive(ctx, l)
				<-k.Done()
				if errors.Is(k.Err(), context.Canceled) {
					return nil // interrupted
				}
				return &opError{op: "lease keepalive", err: k.Err()}
			})
		},
	}
	keep.Flags().BoolVar(&once, "once", false, "renew once and print the lease")
	idCmd := func(use, short string, fn func(context.Context, *client.Client, uint64, printer) error) *cobra.Command {
		return &cobra.Command{
			Use: use + " ID", Short: short, Args: exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				id, err := leaseIDArg(cmd, args[0])
				if err != nil {
					return err
				}
				return o.call(cmd, func(ctx context.Context, c *client.Client, p printer) error {
					if err := fn(ctx, c, id, p); err != nil {
						return &opError{op: "lease " + use, err: err}
					}
					return nil
				})
			},
		}
	}
	revoke := idCmd("revoke", "End a lease now", func(ctx context.Context, c *client.Client, id uint64, _ printer) error {
		return c.Revoke(ctx, id)
	})
	ttl := idCmd("ttl", "Print a live lease (not found once expired or revoked)", func(ctx context.Context, c *client.Client, id uint64, p printer) error {
		l, err := c.TimeToLive(ctx, id)
		if err != nil {
			return err
		}
		return printLease(p, l)
	})
	cmd.AddCommand(grant, keep, revoke, ttl)
	return cmd
}
