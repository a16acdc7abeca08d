package daemon

import "testing"

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
