package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/caspaxos/caspaxos/client"
)

// The list command: list the same keys in pages from etcd (a paged range
// through clientv3) and from caspaxos (the Go client's ListPage, and
// GET ?list over HTTP), each on a fresh three-member cluster loaded with
// the keys first (unmeasured).
//
//	cd bench && go run ./cmd/bench list                # 100,000 keys
//	cd bench && go run ./cmd/bench list -million       # 1,000,000 keys

// listOptions are the list command's flags.
type listOptions struct {
	keys, page, valueBytes, repeat, loaders int
	million                                 bool
	systems, out, dataDir, etcdBin, caspBin string
	keep                                    bool
	pprofPort                               int
}

// listReport is list.json.
type listReport struct {
	runHeader
	Keys       int           `json:"keys"`
	PageKeys   int           `json:"page_keys"`
	ValueBytes int           `json:"value_bytes"`
	Repeat     int           `json:"repeat"`
	Runs       []*listResult `json:"runs"`
}

// listResult is one way of listing, over its repeats.
type listResult struct {
	System       string    `json:"system"` // etcd, caspaxos, caspaxos-http
	LoadSeconds  float64   `json:"load_seconds"`
	Seconds      []float64 `json:"seconds"` // each listing of every key
	MedianS      float64   `json:"median_seconds"`
	KeysPerS     float64   `json:"keys_per_second"`
	PageP50Ms    float64   `json:"page_p50_ms"`
	PageP99Ms    float64   `json:"page_p99_ms"`
	CPUSeconds   float64   `json:"cluster_cpu_seconds"` // of the three members, median run
	PeakRSSMiB   float64   `json:"peak_rss_mib"`
	RatioVsEtcd  float64   `json:"ratio_vs_etcd,omitempty"` // median time / etcd's
	Failure      string    `json:"failure,omitempty"`
	pageLatency  []time.Duration
	cpuPerRepeat []float64
}

func runList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := &listOptions{}
	fs := flag.NewFlagSet("bench list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.keys, "keys", 100000, "keys to load and list")
	fs.BoolVar(&o.million, "million", false, "list 1,000,000 keys (sets -keys)")
	fs.IntVar(&o.page, "page", 1000, "keys per page (etcd: WithLimit; caspaxos: limit)")
	fs.IntVar(&o.valueBytes, "value-bytes", 256, "bytes per value")
	fs.IntVar(&o.repeat, "repeat", 3, "listings of every key per way of listing; the median is reported")
	fs.IntVar(&o.loaders, "loaders", 64, "concurrent writers while loading the keys (unmeasured)")
	fs.StringVar(&o.systems, "systems", "etcd,caspaxos", "systems to run (caspaxos: through the Go client and through HTTP)")
	fs.StringVar(&o.out, "out", "results", "directory for list.json")
	fs.StringVar(&o.dataDir, "data-dir", os.TempDir(), "where the clusters keep their data (a real disk)")
	fs.StringVar(&o.etcdBin, "etcd-bin", "", "etcd binary to use instead of building ./cmd/etcd")
	fs.StringVar(&o.caspBin, "caspaxos-bin", "", "caspaxos binary to use instead of building ../cmd/caspaxos")
	fs.BoolVar(&o.keep, "keep", false, "keep the clusters' data directories and logs")
	fs.IntVar(&o.pprofPort, "pprof-port", 0, "if set, caspaxos node i serves net/http/pprof on 127.0.0.1:(port+i) (the listings over HTTP ask node 0)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.million {
		o.keys = 1000000
	}
	if o.keys <= 0 || o.page <= 0 || o.page > 10000 || o.valueBytes < 0 || o.repeat <= 0 || o.loaders <= 0 {
		return errors.New("-keys, -repeat and -loaders must be positive, -page within 1..10000, -value-bytes not negative")
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	r := &runner{opts: &options{etcdBin: o.etcdBin, caspBin: o.caspBin, keep: o.keep}, dataDir: o.dataDir, pprofPort: o.pprofPort, progress: newProgress(stderr)}
	if err := r.buildBinaries(ctx, stderr); err != nil {
		return err
	}
	rep := &listReport{runHeader: startRun(), Keys: o.keys, PageKeys: o.page, ValueBytes: o.valueBytes, Repeat: o.repeat}
	err := eachSystem(ctx, o.systems, &rep.Load, func(s string) {
		if s == "etcd" {
			rep.Runs = append(rep.Runs, r.listEtcd(ctx, o, stderr))
		} else {
			rep.Runs = append(rep.Runs, r.listCaspaxos(ctx, o, stderr)...)
		}
	})
	if err != nil {
		return err
	}
	rep.Finished = time.Now()
	var etcd *listResult
	for _, run := range rep.Runs {
		if run.System == "etcd" && run.Failure == "" {
			etcd = run
		}
	}
	for _, run := range rep.Runs {
		if etcd != nil && run.Failure == "" && etcd.MedianS > 0 {
			run.RatioVsEtcd = run.MedianS / etcd.MedianS
		}
	}
	printListTable(stdout, rep)
	return writeJSON(stdout, o.out, "list.json", rep)
}

// listKey is the i-th key; fixed width, so that key order is number order.
func listKey(i int) string { return fmt.Sprintf("list/%07d", i) }

// listPrefix is the prefix every listed key has.
const listPrefix = "list/"

// load writes every key once with loaders concurrent writers; put writes
// keys [from, to).
func load(ctx context.Context, o *listOptions, put func(ctx context.Context, from, to int) error) (time.Duration, error) {
	const chunk = 128
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range o.loaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				from := int(next.Add(chunk)) - chunk
				if from >= o.keys {
					return
				}
				if err := put(ctx, from, min(from+chunk, o.keys)); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return time.Since(start), first
}

// measure lists every key o.repeat times with list (which returns the
// keys it saw and appends each page's latency), keeping the cluster's CPU
// time of each listing.
func measure(ctx context.Context, o *listOptions, cl *cluster, res *listResult, p *progress, list func(ctx context.Context, pages *[]time.Duration) (int, error)) {
	for i := range o.repeat {
		p.show(fmt.Sprintf("%s: listing %d keys (%d/%d)", res.System, o.keys, i+1, o.repeat))
		cpu0 := cl.cpuSeconds()
		start := time.Now()
		n, err := list(ctx, &res.pageLatency)
		d := time.Since(start)
		if err == nil && n != o.keys {
			err = fmt.Errorf("listed %d keys, want %d", n, o.keys)
		}
		if err != nil {
			res.Failure = err.Error()
			return
		}
		res.Seconds = append(res.Seconds, d.Seconds())
		res.cpuPerRepeat = append(res.cpuPerRepeat, cl.cpuSeconds()-cpu0)
	}
	order := make([]int, len(res.Seconds))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return int((res.Seconds[a] - res.Seconds[b]) * 1e9) })
	mid := order[len(order)/2]
	res.MedianS, res.CPUSeconds = res.Seconds[mid], res.cpuPerRepeat[mid]
	res.KeysPerS = float64(o.keys) / res.MedianS
	slices.Sort(res.pageLatency)
	if n := len(res.pageLatency); n > 0 {
		res.PageP50Ms = float64(res.pageLatency[n/2]) / 1e6
		res.PageP99Ms = float64(res.pageLatency[min(n-1, n*99/100)]) / 1e6
	}
	res.PeakRSSMiB = cl.peakRSSMiB()
}

// listEtcd loads the keys into a fresh etcd (transactions of 128 puts)
// and lists them with clientv3's paging: a range over the prefix with
// WithLimit, the next page from the key after the last, every page at the
// first page's revision (one snapshot, as Kubernetes pages etcd).
func (r *runner) listEtcd(ctx context.Context, o *listOptions, stderr io.Writer) *listResult {
	res := &listResult{System: "etcd"}
	cl, err := r.startEtcd()
	if err != nil {
		res.Failure = err.Error()
		return res
	}
	defer func() { cl.stop(o.keep || res.Failure != "") }()
	c, err := clientv3.New(clientv3.Config{Endpoints: cl.clients, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		MaxCallRecvMsgSize: 64 << 20})
	if err != nil {
		res.Failure = err.Error()
		return res
	}
	defer c.Close()
	if err := cl.waitReady(ctx, func(ctx context.Context) error { _, err := c.Put(ctx, "bench/ready", "1"); return err }); err != nil {
		res.Failure = err.Error()
		return res
	}
	value := strings.Repeat("v", o.valueBytes)
	r.progress.show(fmt.Sprintf("etcd: loading %d keys", o.keys))
	d, err := load(ctx, o, func(ctx context.Context, from, to int) error {
		ops := make([]clientv3.Op, 0, to-from)
		for i := from; i < to; i++ {
			ops = append(ops, clientv3.OpPut(listKey(i), value))
		}
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err := c.Txn(ctx).Then(ops...).Commit()
		return err
	})
	res.LoadSeconds = d.Seconds()
	if err != nil {
		res.Failure = fmt.Sprintf("loading: %v", err)
		return res
	}
	end := clientv3.GetPrefixRangeEnd(listPrefix)
	measure(ctx, o, cl, res, r.progress, func(ctx context.Context, pages *[]time.Duration) (int, error) {
		n, key := 0, listPrefix
		var rev int64
		for {
			opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(int64(o.page))}
			if rev > 0 {
				opts = append(opts, clientv3.WithRev(rev))
			}
			start := time.Now()
			pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			resp, err := c.Get(pctx, key, opts...)
			cancel()
			*pages = append(*pages, time.Since(start))
			if err != nil {
				return n, err
			}
			if rev == 0 {
				rev = resp.Header.Revision
			}
			for _, kv := range resp.Kvs {
				if len(kv.Value) != o.valueBytes {
					return n, fmt.Errorf("%s: %d bytes", kv.Key, len(kv.Value))
				}
			}
			n += len(resp.Kvs)
			if !resp.More || len(resp.Kvs) == 0 {
				return n, nil
			}
			key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		}
	})
	return res
}

// listCaspaxos loads the keys into a fresh caspaxos cluster (concurrent
// puts through the Go client, which batches them) and lists them through
// the Go client (ListPage, page after page) and through HTTP (GET ?list,
// page after page, each page decoded whole, as a script would).
func (r *runner) listCaspaxos(ctx context.Context, o *listOptions, stderr io.Writer) []*listResult {
	grpcRes, httpRes := &listResult{System: "caspaxos"}, &listResult{System: caspaxosHTTP}
	both := []*listResult{grpcRes, httpRes}
	failAll := func(err error) []*listResult {
		for _, res := range both {
			if res.Failure == "" {
				res.Failure = err.Error()
			}
		}
		return both
	}
	cl, err := r.startCaspaxos()
	if err != nil {
		return failAll(err)
	}
	defer func() { cl.stop(o.keep || grpcRes.Failure != "" || httpRes.Failure != "") }()
	c, err := client.New(client.Config{Endpoints: cl.clients})
	if err != nil {
		return failAll(err)
	}
	defer c.Close()
	if err := cl.waitReady(ctx, func(ctx context.Context) error { _, err := c.Put(ctx, "bench/ready", []byte("1")); return err }); err != nil {
		return failAll(err)
	}
	if err := cl.waitReady(ctx, func(ctx context.Context) error { return allReachable(ctx, cl.clients, nil) }); err != nil {
		return failAll(err)
	}
	value := []byte(strings.Repeat("v", o.valueBytes))
	r.progress.show(fmt.Sprintf("caspaxos: loading %d keys", o.keys))
	d, err := load(ctx, o, func(ctx context.Context, from, to int) error {
		for i := from; i < to; i++ {
			// A put is idempotent here: one that failed, or whose outcome
			// is unknown (a node too slow on a loaded machine), is sent
			// again.
			var err error
			for range 10 {
				pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				_, err = c.Put(pctx, listKey(i), value)
				cancel()
				if err == nil || ctx.Err() != nil {
					break
				}
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	grpcRes.LoadSeconds, httpRes.LoadSeconds = d.Seconds(), d.Seconds()
	if err != nil {
		return failAll(fmt.Errorf("loading: %w", err))
	}
	measure(ctx, o, cl, grpcRes, r.progress, func(ctx context.Context, pages *[]time.Duration) (int, error) {
		n, after := 0, ""
		for {
			start := time.Now()
			pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			items, more, err := c.ListPage(pctx, listPrefix, client.ListOptions{After: after, PageSize: o.page})
			cancel()
			*pages = append(*pages, time.Since(start))
			if err != nil {
				return n, err
			}
			for _, it := range items {
				if len(it.Value) != o.valueBytes {
					return n, fmt.Errorf("%s: %d bytes", it.Key, len(it.Value))
				}
			}
			n += len(items)
			if !more || len(items) == 0 {
				return n, nil
			}
			after = items[len(items)-1].Key
		}
	})
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer hc.CloseIdleConnections()
	base := "http://" + cl.clients[0] + "/v1/kv/" + listPrefix + "?list&limit=" + fmt.Sprint(o.page)
	measure(ctx, o, cl, httpRes, r.progress, func(ctx context.Context, pages *[]time.Duration) (int, error) {
		n, after := 0, ""
		for {
			start := time.Now()
			page, err := httpListPage(ctx, hc, base+"&after="+url.QueryEscape(after))
			*pages = append(*pages, time.Since(start))
			if err != nil {
				return n, err
			}
			for _, it := range page.Items {
				if len(it.Value) != o.valueBytes {
					return n, fmt.Errorf("%s: %d bytes", it.Key, len(it.Value))
				}
			}
			n += len(page.Items)
			if !page.More || len(page.Items) == 0 {
				return n, nil
			}
			after = page.Items[len(page.Items)-1].Key
		}
	})
	return both
}

// httpPage is one page of GET ?list.
type httpPage struct {
	Items []struct {
		Key     string `json:"key"`
		Value   []byte `json:"value"`
		Version uint64 `json:"version"`
	} `json:"items"`
	More  bool            `json:"more"`
	Error json.RawMessage `json:"error"`
}

func httpListPage(ctx context.Context, hc *http.Client, u string) (*httpPage, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return nil, fmt.Errorf("%s: %s", resp.Status, body)
	}
	var p httpPage
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		return nil, err
	}
	if p.Error != nil {
		return nil, fmt.Errorf("the page failed: %s", p.Error)
	}
	return &p, nil
}

// loadAverage is /proc/loadavg's first three fields.
func loadAverage() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func printListTable(w io.Writer, rep *listReport) {
	fmt.Fprintf(w, "listing %d keys of %d B in pages of %d (median of %d listings each; load: %s)\n",
		rep.Keys, rep.ValueBytes, rep.PageKeys, rep.Repeat, strings.Join(rep.Load, "; "))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tload s\tlist s\tkeys/s\tpage p50 ms\tpage p99 ms\tcluster CPU s\tpeak RSS MiB\ttime / etcd's\t")
	for _, r := range rep.Runs {
		if r.Failure != "" {
			fmt.Fprintf(tw, "%s\tfailed: %s\t\t\t\t\t\t\t\t\n", r.System, r.Failure)
			continue
		}
		ratio := "-"
		if r.RatioVsEtcd > 0 && r.System != "etcd" {
			ratio = fmt.Sprintf("%.2f×", r.RatioVsEtcd)
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.2f\t%.0f\t%.1f\t%.1f\t%.2f\t%.0f\t%s\t\n", r.System, r.LoadSeconds, r.MedianS, r.KeysPerS,
			r.PageP50Ms, r.PageP99Ms, r.CPUSeconds, r.PeakRSSMiB, ratio)
	}
	tw.Flush()
}
