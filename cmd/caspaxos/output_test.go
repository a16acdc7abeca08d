package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/caspaxos/caspaxos/client"
)

func TestValueJSON(t *testing.T) {
	binary := []byte{0xff, 0x00, 'a'}
	tests := []struct {
		name string
		v    client.Value
		want string
	}{
		{"text", client.Value{Data: []byte("héllo <b>"), Version: 3}, `{"key":"k","value":"héllo <b>","version":3}`},
		{"empty", client.Value{Data: nil, Version: 1}, `{"key":"k","value":"","version":1}`},
		{"binary", client.Value{Data: binary, Version: 2},
			`{"key":"k","value":"` + base64.StdEncoding.EncodeToString(binary) + `","encoding":"base64","version":2}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			p := printer{out: &out, json: true}
			if err := p.print(newValueJSON("k", tt.v), nil); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want+"\n" {
				t.Fatalf("got %s want %s", out.String(), tt.want)
			}
			var back valueJSON
			if err := json.Unmarshal(out.Bytes(), &back); err != nil {
				t.Fatal(err)
			}
			data := []byte(back.Value)
			if back.Encoding == "base64" {
				data, _ = base64.StdEncoding.DecodeString(back.Value)
			}
			if !bytes.Equal(data, tt.v.Data) {
				t.Fatalf("round trip: %q, want %q", data, tt.v.Data)
			}
		})
	}
}

func TestPrinterFormats(t *testing.T) {
	tests := []struct {
		name  string
		json  bool
		print func(printer) error
		want  string
	}{
		{"version plain", false, func(p printer) error { return p.printVersion("k", 12) }, "12\n"},
		{"version json", true, func(p printer) error { return p.printVersion("k", 12) }, `{"key":"k","version":12}` + "\n"},
		{"incr json", true, func(p printer) error {
			return p.print(incrJSON{Key: "n", Value: -9, Version: 4}, nil)
		}, `{"key":"n","value":-9,"version":4}` + "\n"},
		{"health json", true, func(p printer) error {
			return p.print(healthJSON{Healthy: false, Message: "reaches 1 of 3"}, nil)
		}, `{"healthy":false,"message":"reaches 1 of 3"}` + "\n"},
		{"members json", true, func(p printer) error {
			return printMembership(p, client.Membership{ConfigVersion: 3, Members: []client.Member{{Name: "n1", ID: 9, PeerAddr: "a:1", Reachable: true}}})
		}, `{"config_version":3,"members":[{"name":"n1","id":9,"peer_addr":"a:1","reachable":true}]}` + "\n"},
		{"members plain with a change", false, func(p printer) error {
			return printMembership(p, client.Membership{ConfigVersion: 3, Members: []client.Member{{Name: "n1", ID: 9, PeerAddr: "a:1", Reachable: true}},
				Change: &client.MemberChange{Op: "add", Target: "n4", Step: 1, Steps: 2, Version: 5, CatchUpDone: 256, CatchUpTotal: 1000, Error: "node n4: unavailable"}})
		}, "NAME  ID  PEER ADDRESS  CLIENT ADDRESS  REACHABLE\n" +
			"n1    9   a:1           -               yes\n" +
			"change in progress: add n4, step 2 of 2 (configuration 5), catch-up 256 of 1000 keys; retrying after: node n4: unavailable\n"},
		{"plain runs the plain writer", false, func(p printer) error {
			return p.print(incrJSON{}, func(w io.Writer) error { _, err := io.WriteString(w, "raw"); return err })
		}, "raw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := tt.print(printer{out: &out, json: tt.json}); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Fatalf("got %q want %q", out.String(), tt.want)
			}
		})
	}
}

func TestWriteMembers(t *testing.T) {
	var out bytes.Buffer
	err := writeMembers(&out, []client.Member{
		{Name: "n1", ID: 11, PeerAddr: "127.0.0.1:7080", ClientAddr: "127.0.0.1:7070", Reachable: true},
		{Name: "n2", ID: 2, PeerAddr: "127.0.0.1:7081"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "" +
		"NAME  ID  PEER ADDRESS    CLIENT ADDRESS  REACHABLE\n" +
		"n1    11  127.0.0.1:7080  127.0.0.1:7070  yes\n" +
		"n2    2   127.0.0.1:7081  -               no\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestLineWriterPrefixesWholeLines(t *testing.T) {
	var out bytes.Buffer
	l := &lineWriter{prefix: "n1 | ", dst: &out}
	for _, chunk := range []string{"sta", "rted\nsecond\n", "\n", "no newline"} {
		if n, err := l.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write: %d %v", n, err)
		}
	}
	want := "n1 | started\nn1 | second\nn1 | \n"
	if out.String() != want {
		t.Fatalf("before flush: %q, want %q", out.String(), want)
	}
	l.flush()
	if want += "n1 | no newline\n"; out.String() != want {
		t.Fatalf("after flush: %q, want %q", out.String(), want)
	}
	// An endless line is written out in pieces instead of buffered without bound.
	out.Reset()
	l.Write([]byte(strings.Repeat("x", maxLineBytes-1)))
	if out.Len() != 0 {
		t.Fatalf("a short unfinished line was written: %d bytes", out.Len())
	}
	l.Write([]byte("xx"))
	l.Write([]byte("tail\n"))
	want = "n1 | " + strings.Repeat("x", maxLineBytes+1) + "\nn1 | tail\n"
	if got := out.String(); got != want {
		t.Fatalf("long line: %d bytes written, want %d", len(got), len(want))
	}
}
