package daemon

import (
	"fmt"
	"testing"
)

func TestReachableAt(t *testing.T) {
	for _, tc := range []struct{ addr, peer, want string }{
		{"10.0.0.1:7070", "10.0.0.1:7071", "10.0.0.1:7070"},
		{"127.0.0.1:7070", "n1.example:7071", "127.0.0.1:7070"},
		{"n1.example:7070", "10.0.0.1:7071", "n1.example:7070"},
		{":7070", "n1.example:7071", "n1.example:7070"},
		{"0.0.0.0:7070", "10.0.0.1:7071", "10.0.0.1:7070"},
		{"[::]:7070", "[fd00::1]:7071", "[fd00::1]:7070"},
		{"[::]:7070", "0.0.0.0:7071", "[::]:7070"},
		{":7070", ":7071", ":7070"},
		{"0.0.0.0:7070", "not an address", "0.0.0.0:7070"},
		{"not an address", "10.0.0.1:7071", "not an address"},
	} {
		if got := reachableAt(tc.addr, tc.peer); got != tc.want {
			t.Errorf("reachableAt(%q, %q) = %q, want %q", tc.addr, tc.peer, got, tc.want)
		}
	}
}

// The DNS rebinding guard's list: the flag's names, then the names the
// node is configured with for its client port; never an IP address.
func TestHTTPAllowedHosts(t *testing.T) {
	for _, tc := range []struct {
		allowed            []string
		client, peer, want string
	}{
		{nil, "127.0.0.1:7070", "127.0.0.1:7080", "[]"},
		{[]string{"a.example"}, "n1.example:7070", "10.0.0.1:7080", "[a.example n1.example]"},
		{nil, ":7070", "n1.example:7080", "[n1.example]"},
		{nil, "0.0.0.0:7070", "[fd00::1]:7080", "[]"},
		{[]string{"n1.example"}, "n1.example:7070", "n1.example:7080", "[n1.example]"},
		{[]string{"*"}, "localhost:7070", "127.0.0.1:7080", "[* localhost]"},
	} {
		if got := fmt.Sprint(allowedHosts(tc.allowed, tc.client, tc.peer)); got != tc.want {
			t.Errorf("allowedHosts(%q, %q, %q) = %s, want %s", tc.allowed, tc.client, tc.peer, got, tc.want)
		}
	}
}
