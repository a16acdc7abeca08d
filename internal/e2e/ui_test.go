package e2e

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// uiSetups: the page plain, and over TLS with auth on (by token: a
// browser presents no client certificate).
var uiSetups = []setup{{name: "plain"}, {name: "tls+auth", secure: true, optionalClientCerts: true}}

// TestStatusPage loads /ui/ in headless Chromium from a three-node
// cluster: it logs in where auth is on, shows three healthy members and
// this node's figures, and its key browser lists a key written through
// the API, and then one written after the page loaded, and shows a key's
// value.
func TestStatusPage(t *testing.T) {
	for _, s := range uiSetups {
		t.Run(s.name, func(t *testing.T) { testStatusPage(t, s) })
	}
}

func testStatusPage(t *testing.T, s setup) {
	b := newBrowser(t)
	ctx := context.Background()
	c := newClusterWith(t, 3, s, "ui/")
	for i := range c.procs {
		c.waitHealth(i, 200)
	}
	cl := c.client(0, 1, 2)
	helloVersion, err := cl.Put(ctx, "ui/hello", []byte("world"))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + c.procs[0].client
	if c.sec != nil {
		base = "https://" + c.procs[0].client
	}
	checkUIHeaders(t, c, base)

	b.navigate(base + "/ui/")
	if c.sec != nil {
		b.waitFor("the login form", `!document.getElementById("login").hidden`, `document.body.innerText`)
		b.eval(`(() => {
			document.getElementById("login-user").value = "root";
			document.getElementById("login-password").value = "`+rootPassword+`";
			document.getElementById("login-form").requestSubmit();
		})()`, nil)
	}
	b.waitFor("three healthy members",
		`document.querySelectorAll('#members tbody tr[data-health="healthy"]').length === 3`,
		`document.getElementById("members").innerText + " / " + document.body.innerText.slice(0, 400)`)
	var names []string
	b.eval(`[...document.querySelectorAll('#members tbody tr')].map(r => r.dataset.name)`, &names)
	if strings.Join(names, ",") != "n1,n2,n3" {
		t.Fatalf("members %v, want n1,n2,n3", names)
	}
	b.waitFor("this node's figures", `document.getElementById("node-name").textContent === "n1" &&
		document.querySelector('#figures tr[data-figure="Quorum"] td:last-child').textContent === "yes"`,
		`document.getElementById("figures").innerText + document.getElementById("status-error").textContent`)

	list := `(() => { document.getElementById("browse-prefix").value = "ui/"; document.getElementById("browse-form").requestSubmit(); })()`
	b.eval(list, nil)
	b.waitFor("ui/hello in the key browser", `document.querySelector('#keys tr[data-key="ui/hello"]') !== null`,
		`document.getElementById("keys").innerText + document.getElementById("browse-error").textContent`)
	if _, err := cl.Put(ctx, "ui/later", []byte("written after the page loaded")); err != nil {
		t.Fatal(err)
	}
	b.eval(list, nil)
	b.waitFor("ui/later in the key browser", `document.querySelector('#keys tr[data-key="ui/later"]') !== null`,
		`document.getElementById("keys").innerText + document.getElementById("browse-error").textContent`)
	b.eval(`document.querySelector('#keys tr[data-key="ui/hello"] td').click()`, nil)
	b.waitFor("ui/hello's value", `document.getElementById("key-view-value").textContent === "world" &&
		document.getElementById("key-view-version").textContent === "`+strconv.FormatUint(helloVersion, 10)+`"`,
		`document.getElementById("key-view").innerText + document.getElementById("browse-error").textContent`)
	// The charts draw once two scrapes of /metrics are in.
	for _, id := range []string{"chart-rps", "chart-latency"} {
		b.waitFor("a drawn "+id, `(() => { const c = document.getElementById("`+id+`"), blank = document.createElement("canvas");
			blank.width = c.width; blank.height = c.height; return c.toDataURL() !== blank.toDataURL(); })()`, `"blank"`)
	}
	if c.sec == nil {
		return
	}
	// As a user who may read ui/ only: the browser lists no other key,
	// and the figures say they need more.
	if _, err := c.admin(0).Put(ctx, "zz/secret", []byte("root's")); err != nil {
		t.Fatal(err)
	}
	b.eval(`document.getElementById("logout").click()`, nil)
	b.waitFor("the login form again", `!document.getElementById("login").hidden`, `document.body.innerText.slice(0, 300)`)
	b.eval(`(() => {
		document.getElementById("login-user").value = "`+appUser+`";
		document.getElementById("login-password").value = "`+appPassword+`";
		document.getElementById("login-form").requestSubmit();
	})()`, nil)
	b.waitFor("the status refused to "+appUser, `document.getElementById("status-error").textContent.includes("permission")`,
		`document.getElementById("status-error").textContent`)
	b.eval(`(() => { document.getElementById("browse-prefix").value = ""; document.getElementById("browse-form").requestSubmit(); })()`, nil)
	b.waitFor("ui/ keys only", `document.querySelector('#keys tr[data-key="ui/hello"]') !== null`,
		`document.getElementById("keys").innerText + document.getElementById("browse-error").textContent`)
	var keys []string
	b.eval(`[...document.querySelectorAll('#keys tbody tr')].map(r => r.dataset.key)`, &keys)
	for _, k := range keys {
		if !strings.HasPrefix(k, "ui/") {
			t.Fatalf("%s sees %q in the key browser: %v", appUser, k, keys)
		}
	}
}

// checkUIHeaders: the page is served with a policy that keeps it to this
// origin and out of frames.
func checkUIHeaders(t *testing.T, c *cluster, base string) {
	t.Helper()
	hc := http.DefaultClient
	if c.sec != nil {
		hc = c.sec.http
	}
	for _, path := range []string{"/ui/", "/ui/app.js", "/ui/style.css"} {
		resp, err := hc.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		if resp.StatusCode != 200 || len(body) == 0 || !strings.Contains(csp, "default-src 'none'") || resp.Header.Get("X-Frame-Options") != "DENY" {
			t.Fatalf("GET %s: %d, %d bytes, CSP %q", path, resp.StatusCode, len(body), csp)
		}
		if strings.Contains(string(body), "http://") || strings.Contains(string(body), "https://") {
			t.Fatalf("%s names an outside address", path)
		}
	}
	resp, err := hc.Get(base + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != "/ui/" {
		t.Fatalf("/ui led to %s", resp.Request.URL.Path)
	}
}
