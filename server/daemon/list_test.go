package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caspaxos/caspaxos/client"
)

// httpPage is one page of GET /v1/kv/{prefix}?list.
type httpPage struct {
	Items []struct {
		Key          string `json:"key"`
		Value        []byte `json:"value"`
		Version      uint64 `json:"version"`
		ValueOmitted bool   `json:"value_omitted"`
	} `json:"items"`
	More  bool            `json:"more"`
	Error json.RawMessage `json:"error"`
}

func listHTTP(t *testing.T, base, prefix, query, token string) httpPage {
	t.Helper()
	code, out := authHTTP(t, "GET", base+"/v1/kv/"+prefix+"?list&"+query, token, "", "")
	var p httpPage
	if err := json.Unmarshal([]byte(out), &p); code != http.StatusOK || err != nil || p.Error != nil {
		t.Fatalf("list %q %s: %d %s (%v)", prefix, query, code, out, err)
	}
	return p
}

// TestListing: pages over HTTP and gRPC (the Go client's iterator) while
// other keys change; deleted keys are never listed; a user lists only what
// it may read; the cluster's reserved keys are never listed.
func TestListing(t *testing.T) {
	c := newTestCluster(t, 3)
	for _, cfg := range c.cfgs {
		waitHealthy(t, cfg.ClientAddr, http.StatusOK)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := c.client(t, 1)
	var stable []string // keys live through every listing below
	for i := range 25 {
		k := fmt.Sprintf("app/%02d", i)
		if _, err := cl.Put(ctx, k, []byte("v"+k)); err != nil {
			t.Fatal(err)
		}
		if i%5 == 3 {
			if _, err := cl.Delete(ctx, k, 0); err != nil {
				t.Fatal(err)
			}
			continue
		}
		stable = append(stable, k)
	}
	if _, err := cl.Put(ctx, "other", []byte("o")); err != nil {
		t.Fatal(err)
	}

	// Writers change app/05 and create and delete app/99 throughout.
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		w := c.client(t, 2)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_, _ = w.Put(ctx, "app/05", []byte(fmt.Sprint(i)))
			_, _ = w.Put(ctx, "app/99", []byte("x"))
			_, _ = w.Delete(ctx, "app/99", 0)
		}
	}()
	base := "http://" + c.cfgs[0].ClientAddr
	check := func(how string, keys []string) {
		t.Helper()
		keys = slices.DeleteFunc(keys, func(k string) bool { return k == "app/99" }) // live at some instant, or not
		if !slices.Equal(keys, stable) {
			t.Fatalf("%s listed %q, want %q", how, keys, stable)
		}
	}
	// HTTP, page by page.
	var keys []string
	after := ""
	for pages := 0; ; pages++ {
		p := listHTTP(t, base, "app/", "limit=4&after="+url.QueryEscape(after), "")
		for _, it := range p.Items {
			if it.Key != "app/05" && !strings.HasPrefix(it.Key, "app/99") && string(it.Value) != "v"+it.Key {
				t.Fatalf("%s = %q", it.Key, it.Value)
			}
			keys = append(keys, it.Key)
		}
		if !p.More {
			break
		}
		after = p.Items[len(p.Items)-1].Key
		if pages > 20 {
			t.Fatal("too many pages")
		}
	}
	check("HTTP", keys)
	// Keys only: no values.
	for _, it := range listHTTP(t, base, "app/", "keys", "").Items {
		if it.Value != nil || it.Version == 0 {
			t.Fatalf("keys only: %+v", it)
		}
	}
	// gRPC, through the iterator, pages of 3.
	keys = nil
	for it, err := range cl.List(ctx, "app/", client.ListOptions{PageSize: 3}) {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, it.Key)
	}
	check("the Go client", keys)
	close(stop)
	<-done
	if _, err := cl.Put(ctx, "app/05", []byte("vapp/05")); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Delete(ctx, "app/99", 0); err != nil && !errors.Is(err, client.ErrNotFound) {
		t.Fatal(err)
	}

	// With auth: the reader (read on app/) lists only app/ keys from the
	// whole key space; root lists everything but the reserved auth state.
	setupAuth(t, base)
	reader, root := login(t, base, "reader", "readerpw"), login(t, base, "root", "rootpw")
	keys = nil
	for _, it := range listHTTP(t, base, "", "", reader).Items {
		keys = append(keys, it.Key)
	}
	check("the reader", keys)
	keys = nil
	for _, it := range listHTTP(t, base, "", "", root).Items {
		keys = append(keys, it.Key)
	}
	if want := append(slices.Clone(stable), "other"); !slices.Equal(keys, want) {
		t.Fatalf("root listed %q, want %q (no reserved key)", keys, want)
	}
	if code, out := authHTTP(t, "GET", base+"/v1/kv/%00?list", root, "", ""); code != http.StatusBadRequest && code != http.StatusForbidden {
		t.Fatalf("listing the reserved prefix: %d %s", code, out)
	}
}
