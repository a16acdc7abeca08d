package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/caspaxos/caspaxos/client"
	"github.com/caspaxos/caspaxos/kv"
)

// lockFlags are the flags lock and elect share.
type lockFlags struct {
	ttl       time.Duration
	lockDelay time.Duration
	owner     string
	wait      time.Duration
	killAfter time.Duration
}

func (f *lockFlags) add(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&f.ttl, "ttl", client.DefaultSessionTTL, "the TTL of the lease that holds the lock")
	cmd.Flags().DurationVar(&f.lockDelay, "lock-delay", kv.DefaultLockDelay, "after this hold's lease ends, nobody may take the lock for this long (0: none)")
	cmd.Flags().StringVar(&f.owner, "owner", "", "a tag others see as the holder (default: host name and process ID)")
	cmd.Flags().DurationVar(&f.wait, "wait", 0, "give up (exit code 11) if the lock is not acquired within this (0: wait forever)")
}

func (f *lockFlags) options() client.LockOptions {
	o := client.LockOptions{Owner: f.owner, TTL: f.ttl, LockDelay: f.lockDelay}
	if o.Owner == "" {
		host, _ := os.Hostname()
		o.Owner = host + ":" + strconv.Itoa(os.Getpid())
	}
	if f.lockDelay <= 0 {
		o.LockDelay = client.NoLockDelay
	}
	return o
}

// acquireCtx bounds the acquire by --wait.
func (f *lockFlags) acquireCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if f.wait > 0 {
		return context.WithTimeout(ctx, f.wait)
	}
	return context.WithCancel(ctx)
}

func newLockCmd(o *clientOptions) *cobra.Command {
	var f lockFlags
	cmd := &cobra.Command{
		Use:   "lock NAME -- COMMAND [ARG...]",
		Short: "Run a command while holding a lock",
		Long: `lock acquires the lock NAME with a lease of its own (kept alive in the
background), runs COMMAND with the fencing token in CASPAXOS_FENCING_TOKEN,
releases the lock when COMMAND exits, and exits with COMMAND's status.

The token rises with every later hold of the lock, by anyone: hand it to
every resource COMMAND writes, and have the resource refuse a token below
the highest it has seen (docs/locks.md). If the lease is lost (it could not
be kept alive within its TTL, or was revoked), lock sends COMMAND SIGTERM
before the lease's end (a fifth of the TTL before it), then SIGKILL after
--kill-after, and exits with code 11. SIGINT or SIGTERM to lock is passed to
COMMAND as SIGTERM.`,
		Example: `  caspaxos lock backup -- ./backup.sh
  caspaxos lock --ttl 5s --wait 1m deploy -- sh -c 'deploy --fence "$CASPAXOS_FENCING_TOKEN"'`,
		Args: usageArgs(cobra.MinimumNArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return usagef(cmd.CommandPath(), "want NAME -- COMMAND [ARG...]")
			}
			return o.callWithin(cmd, time.Duration(math.MaxInt64), func(ctx context.Context, c *client.Client, _ printer) error {
				return runLocked(ctx, cmd, c, args[0], args[1:], f)
			})
		},
	}
	f.add(cmd)
	cmd.Flags().DurationVar(&f.killAfter, "kill-after", 5*time.Second, "after SIGTERM, SIGKILL the command if it has not exited within this")
	return cmd
}

// runLocked holds the lock name while command runs.
func runLocked(ctx context.Context, cmd *cobra.Command, c *client.Client, name string, command []string, f lockFlags) error {
	s, err := c.NewSession(context.WithoutCancel(ctx), f.ttl)
	if err != nil {
		return &opError{op: "lock", key: name, err: err}
	}
	// The lock is released, and the lease revoked, however this ends.
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), kv.DefaultRequestTimeout)
		defer cancel()
		_ = c.ReleaseLock(cctx, name, s.Lease.ID, 0) // whatever this session holds
		_ = s.Close(cctx)
	}()
	actx, cancel := f.acquireCtx(ctx)
	token, err := s.Lock(actx, name, f.options())
	cancel()
	if err != nil {
		return &opError{op: "lock", key: name, err: err}
	}
	child := exec.Command(command[0], command[1:]...)
	child.Stdin, child.Stdout, child.Stderr = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
	child.Env = append(os.Environ(),
		"CASPAXOS_FENCING_TOKEN="+strconv.FormatUint(token, 10),
		"CASPAXOS_LOCK_LEASE="+strconv.FormatUint(s.Lease.ID, 16))
	if err := child.Start(); err != nil {
		return fmt.Errorf("lock %q: %w", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	lost := watchHold(ctx, s, f.ttl)
	select {
	case err := <-exited:
		return childStatus(err)
	case <-ctx.Done(): // SIGINT or SIGTERM: passed on; its status is lock's
		return childStatus(stopChild(child, exited, f.killAfter))
	case err := <-lost:
		stopChild(child, exited, f.killAfter)
		return &opError{op: "lock", key: name, err: err}
	}
}

// watchHold reports, once, that s's lease is lost, or about to be: its
// keep-alive stopped, or ValidUntil is less than a fifth of the TTL away.
// It waits on timers set at that point, re-armed as renewals move it.
func watchHold(ctx context.Context, s *client.Session, ttl time.Duration) <-chan error {
	lost := make(chan error, 1)
	margin := ttl / 5
	go func() {
		for {
			t := time.NewTimer(time.Until(s.Keep.ValidUntil().Add(-margin)))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-s.Keep.Done():
				t.Stop()
				lost <- fmt.Errorf("%w: lease %x: %v", client.ErrLockLost, s.Lease.ID, s.Keep.Err())
				return
			case <-t.C:
				if time.Until(s.Keep.ValidUntil()) <= margin {
					lost <- fmt.Errorf("%w: lease %x: no keep-alive acknowledged in time", client.ErrLockLost, s.Lease.ID)
					return
				}
			}
		}
	}()
	return lost
}

// stopChild sends SIGTERM, then SIGKILL after killAfter, and returns
// the command's exit.
func stopChild(child *exec.Cmd, exited <-chan error, killAfter time.Duration) error {
	_ = child.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(killAfter)
	defer t.Stop()
	select {
	case err := <-exited:
		return err
	case <-t.C:
		_ = child.Process.Kill()
		return <-exited
	}
}

// childStatus passes on the command's exit status (128 + the signal for
// one killed by a signal, as shells do).
func childStatus(err error) error {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return err
	}
	code := ee.ExitCode()
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	return &exitStatus{code: code}
}

func newElectCmd(o *clientOptions) *cobra.Command {
	var f lockFlags
	cmd := &cobra.Command{
		Use:   "elect NAME [PROPOSAL]",
		Short: "Campaign in an election, or observe its leader",
		Long: `With PROPOSAL, elect campaigns in the election NAME with a lease of its own,
prints the leader (its value and the leadership's fencing token) once
elected, and leads until interrupted or until its lease is lost (exit code
11), then resigns. Without PROPOSAL, it prints the leader's value and each
change of it until interrupted ("-" when nobody leads).`,
		Example: `  caspaxos elect scheduler host-a:7000   # blocks while leading
  caspaxos elect scheduler               # observe`,
		Args: usageArgs(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.callWithin(cmd, time.Duration(math.MaxInt64), func(ctx context.Context, c *client.Client, p printer) error {
				if len(args) == 1 {
					return observe(ctx, c, p, args[0])
				}
				return campaign(ctx, c, p, args[0], []byte(args[1]), f)
			})
		},
	}
	f.add(cmd)
	return cmd
}

// electionJSON is an election's state as -o json prints it.
type electionJSON struct {
	Name   string `json:"name"`
	Leader string `json:"leader,omitempty"`
	Value  string `json:"value,omitempty"`
	Token  uint64 `json:"token"`
}

func printLeader(p printer, st client.LockState) error {
	j := electionJSON{Name: st.Name, Value: string(st.Value), Token: st.Token}
	if st.Holder != 0 {
		j.Leader = strconv.FormatUint(st.Holder, 16)
	}
	return p.print(j, func(w io.Writer) error {
		v := j.Value
		if j.Leader == "" {
			v = "-"
		}
		_, err := fmt.Fprintf(w, "%s token=%d\n", v, j.Token)
		return err
	})
}

func campaign(ctx context.Context, c *client.Client, p printer, name string, value []byte, f lockFlags) error {
	s, err := c.NewSession(context.WithoutCancel(ctx), f.ttl)
	if err != nil {
		return &opError{op: "elect", key: name, err: err}
	}
	e := s.Election(name)
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), kv.DefaultRequestTimeout)
		defer cancel()
		_ = e.Resign(cctx)
		_ = s.Close(cctx)
	}()
	actx, cancel := f.acquireCtx(ctx)
	token, err := e.Campaign(actx, value, f.options())
	cancel()
	if err != nil {
		return &opError{op: "elect", key: name, err: err}
	}
	if err := printLeader(p, client.LockState{Name: name, Token: token, Holder: s.Lease.ID, Value: value}); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return nil // interrupted: resign
	case err := <-watchHold(ctx, s, f.ttl):
		return &opError{op: "elect", key: name, err: err}
	}
}

func observe(ctx context.Context, c *client.Client, p printer, name string) error {
	for st, err := range c.Observe(ctx, name) {
		if err != nil {
			if errors.Is(err, client.ErrBadRequest) || errors.Is(err, client.ErrPermissionDenied) || errors.Is(err, client.ErrUnauthenticated) {
				return &opError{op: "elect", key: name, err: err}
			}
			continue
		}
		if err := printLeader(p, st); err != nil {
			return err
		}
	}
	return nil
}
