package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// scrapeSamples calls each, for every node (its index in urls), with the
// name (labels included) and value of every caspaxos_* sample the node
// serves. A node that does not answer within a second is left out. tlsCfg
// is the client's TLS for https URLs (nil: plain).
func scrapeSamples(ctx context.Context, urls []string, tlsCfg *tls.Config, each func(node int, name string, v float64)) {
	tr := &http.Transport{TLSClientConfig: tlsCfg}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Timeout: time.Second, Transport: tr}
	for i, u := range urls {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			continue
		}
		resp, err := hc.Do(req)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			name, val, ok := strings.Cut(sc.Text(), " ")
			if !ok || !strings.HasPrefix(name, "caspaxos_") {
				continue
			}
			if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
				each(i, name, v)
			}
		}
		resp.Body.Close()
	}
}

// scrapeCounters sums the unlabelled caspaxos_*_total counters of the nodes.
func scrapeCounters(ctx context.Context, urls []string, tlsCfg *tls.Config) map[string]float64 {
	out := map[string]float64{}
	scrapeSamples(ctx, urls, tlsCfg, func(_ int, name string, v float64) {
		if !strings.Contains(name, "{") && strings.HasSuffix(name, "_total") {
			out[name] += v
		}
	})
	return out
}

// diffCounters returns after - before, per counter.
func diffCounters(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		out[strings.TrimPrefix(k, "caspaxos_")] = v - before[k]
	}
	return out
}

// scrapeNearestRTT returns, per node (the order of urls), the smallest
// caspaxos_peer_rtt_seconds it reports in ms: its round trip to the nearest
// peer, which with three nodes is the round trip to its nearest quorum. It
// is measured through whatever the peer links cross (the proxies of a lab),
// so it includes their cost. 0 where nothing was reported.
func scrapeNearestRTT(ctx context.Context, urls []string) []float64 {
	out := make([]float64, len(urls))
	scrapeSamples(ctx, urls, nil, func(i int, name string, v float64) {
		if strings.HasPrefix(name, "caspaxos_peer_rtt_seconds{") && (out[i] == 0 || v*1e3 < out[i]) {
			out[i] = v * 1e3
		}
	})
	return out
}
