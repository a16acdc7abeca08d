package clientapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/caspaxos/caspaxos/api/caspaxospb"
	"github.com/caspaxos/caspaxos/server/clientapi"
	"github.com/caspaxos/caspaxos/server/clientapi/clientapitest"
)

// changer is a Backend that runs membership changes, failing with err.
type changer struct {
	*clientapitest.Backend
	err  error
	last string
}

func (c *changer) AddMember(_ context.Context, name, addr string) error {
	c.last = "add " + name + "=" + addr
	return c.err
}

func (c *changer) RemoveMember(_ context.Context, name string) error {
	c.last = "remove " + name
	return c.err
}

// TestMemberChangeBothServices: gRPC MemberAdd/MemberRemove and HTTP POST
// and DELETE /v1/members take the same path and map its outcomes through
// the one error table.
func TestMemberChangeBothServices(t *testing.T) {
	refused := errors.New("caspaxos/server: a membership change is already in progress")
	timedOut := fmt.Errorf("caspaxos/daemon: the membership change goes on: %w", context.DeadlineExceeded)
	cases := []struct {
		name      string
		b         clientapi.Backend
		add       bool
		member    string
		wantLast  string
		wantCode  string // "" for success
		wantHTTP  int
		wantGRPC  codes.Code
		wantInMsg string
	}{
		{"add", &changer{Backend: clientapitest.New()}, true, "n4=10.0.0.4:7080", "add n4=10.0.0.4:7080", "", 200, codes.OK, ""},
		{"remove", &changer{Backend: clientapitest.New()}, false, "n2", "remove n2", "", 200, codes.OK, ""},
		{"refused", &changer{Backend: clientapitest.New(), err: refused}, true, "n4=a:1", "add n4=a:1", clientapi.CodeMembership, 409, codes.FailedPrecondition, "already in progress"},
		{"deadline", &changer{Backend: clientapitest.New(), err: timedOut}, false, "n2", "remove n2", clientapi.CodeUnknownOutcome, 504, codes.DeadlineExceeded, "goes on"},
		{"no address", &changer{Backend: clientapitest.New()}, true, "n4", "", clientapi.CodeBadRequest, 400, codes.InvalidArgument, "NAME=PEER_ADDR"},
		{"not a changer", clientapitest.New(), false, "n2", "", clientapi.CodeBadRequest, 400, codes.InvalidArgument, "no membership changes"},
	}
	for _, tc := range cases {
		t.Run(tc.name+"/grpc", func(t *testing.T) {
			_, cl := grpcClient(t, tc.b)
			var err error
			if tc.add {
				name, addr, _ := strings.Cut(tc.member, "=")
				_, err = cl.MemberAdd(context.Background(), &caspaxospb.MemberAddRequest{Name: name, PeerAddr: addr})
			} else {
				_, err = cl.MemberRemove(context.Background(), &caspaxospb.MemberRemoveRequest{Name: tc.member})
			}
			checkChange(t, tc.b, tc.wantLast)
			if tc.wantCode == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			code, info := errorInfo(t, err)
			if code != tc.wantGRPC || info.Code != tc.wantCode || !strings.Contains(err.Error(), tc.wantInMsg) {
				t.Fatalf("%v %v %v, want %v %s with %q", code, info.Code, err, tc.wantGRPC, tc.wantCode, tc.wantInMsg)
			}
		})
		t.Run(tc.name+"/http", func(t *testing.T) {
			srv := httptest.NewServer(clientapi.NewHTTP(clientapi.HTTPConfig{}, tc.b))
			t.Cleanup(srv.Close)
			req, _ := http.NewRequest("DELETE", srv.URL+"/v1/members/"+tc.member, nil)
			if tc.add {
				req, _ = http.NewRequest("POST", srv.URL+"/v1/members", strings.NewReader(tc.member))
				req.Header.Set("Content-Type", "application/octet-stream") // the CSRF rule (auth.go)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			checkChange(t, tc.b, tc.wantLast)
			want := `"members":`
			if tc.wantCode != "" {
				want = `"code":"` + tc.wantCode + `"`
			}
			if resp.StatusCode != tc.wantHTTP || !strings.Contains(string(body), want) || !strings.Contains(string(body), tc.wantInMsg) {
				t.Fatalf("%d %s, want %d with %s and %q", resp.StatusCode, body, tc.wantHTTP, want, tc.wantInMsg)
			}
		})
	}
}

// checkChange checks which change the backend was asked for, and resets it.
func checkChange(t *testing.T, b clientapi.Backend, want string) {
	t.Helper()
	c, ok := b.(*changer)
	if !ok {
		return
	}
	if c.last != want {
		t.Fatalf("backend asked for %q, want %q", c.last, want)
	}
	c.last = ""
}
