// Package ui is the status page served on the client port under /ui/:
// plain HTML, a style sheet and one small script, embedded in the binary,
// nothing fetched from elsewhere. The script calls the node's own HTTP
// API with the user's token (a login form when auth is on): the members
// and their health (/v1/members, /v1/health), this node's figures
// refreshed live (/v1/status), latency and throughput charts from its
// metrics (/metrics), and a key browser (?list, a key's value) that shows
// what the user may read and no more. The page itself holds no data, so
// it is served to anyone.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the page under /ui/.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix("/ui/", http.FileServer(http.FS(sub)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// Only this origin's scripts, styles and API; no framing
		// (clickjacking); no guessing of types.
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
