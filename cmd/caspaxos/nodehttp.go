package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/caspaxos/caspaxos/client"
	"github.com/caspaxos/caspaxos/internal/certs"
	"github.com/caspaxos/caspaxos/kv"
)

// nodeHTTP talks to the nodes' HTTP API on their client ports, for the
// commands whose calls the gRPC API does not carry (snapshot restore,
// status): the same endpoints, TLS files and user as the Go client, the
// same refusal of a password over plain TCP to a node off this host, and
// errors mapped onto the client's, so that the exit codes are the same.
type nodeHTTP struct {
	hc                 *http.Client
	scheme             string
	endpoints          []string
	user, password     string
	mu                 sync.Mutex
	token              string
	allowPlaintextCred bool
}

func (o *clientOptions) nodeHTTP(user, password string, endpoints []string) (*nodeHTTP, error) {
	n := &nodeHTTP{hc: &http.Client{Transport: &http.Transport{}}, scheme: "http", endpoints: endpoints,
		user: user, password: password, allowPlaintextCred: o.plaintextCredentials}
	if o.cacert != "" || o.cert != "" || o.key != "" {
		cfg, err := certs.ClientFiles(o.cacert, o.cert, o.key)
		if err != nil {
			return nil, err
		}
		n.hc.Transport = &http.Transport{TLSClientConfig: cfg}
		n.scheme = "https"
	}
	for _, ep := range endpoints {
		if err := n.mayAsk(ep); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// mayAsk refuses an endpoint that the user's password or token would
// reach over plain TCP off this host (without --allow-plaintext-credentials).
func (n *nodeHTTP) mayAsk(endpoint string) error {
	if n.scheme == "https" || n.user == "" || n.allowPlaintextCred || certs.Loopback(endpoint) {
		return nil
	}
	return fmt.Errorf("refusing to send the password of %s over plain TCP to %s: use TLS (--cacert), or --allow-plaintext-credentials on a trusted network", n.user, endpoint)
}

func (n *nodeHTTP) close() { n.hc.CloseIdleConnections() }

// httpError is an error answer of a node: {"error":{"code","message"}}.
type httpError struct {
	status  int
	code    string
	message string
}

func (e *httpError) Error() string { return fmt.Sprintf("%s (%d %s)", e.message, e.status, e.code) }

// Unwrap maps the code onto the Go client's errors.
func (e *httpError) Unwrap() error {
	switch e.code {
	case kv.CodeNotFound:
		return client.ErrNotFound
	case kv.CodeVersionMismatch:
		return client.ErrVersionMismatch
	case kv.CodeNoQuorum:
		return client.ErrNoQuorum
	case kv.CodeUnknownOutcome:
		return client.ErrUnknownOutcome
	case kv.CodeOverloaded:
		return client.ErrOverloaded
	case kv.CodeNoSpace:
		return client.ErrNoSpace
	case kv.CodeKeyTooLarge, kv.CodeValueTooLarge:
		return client.ErrTooLarge
	case kv.CodeUnauthenticated:
		return client.ErrUnauthenticated
	case kv.CodePermissionDenied:
		return client.ErrPermissionDenied
	case kv.CodeBadRequest:
		return client.ErrBadRequest
	}
	return nil
}

// call sends one request to endpoint and decodes a 200's JSON into out
// (nil: the caller reads nothing). A connection failure is
// client.ErrUnavailable; an error answer an *httpError.
func (n *nodeHTTP) call(ctx context.Context, endpoint, method, path string, body []byte, out any) error {
	if n.user != "" {
		if err := n.login(ctx, endpoint); err != nil {
			return err
		}
	}
	resp, err := n.send(ctx, endpoint, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return readHTTPError(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s at %s: decoding the answer: %w", method, path, endpoint, err)
	}
	return nil
}

func (n *nodeHTTP) send(ctx context.Context, endpoint, method, path string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, n.scheme+"://"+endpoint+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	n.mu.Lock()
	if n.token != "" {
		req.Header.Set("Authorization", "Bearer "+n.token)
	}
	n.mu.Unlock()
	resp, err := n.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s: %v", client.ErrUnavailable, endpoint, err)
	}
	return resp, nil
}

func readHTTPError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil || e.Error.Code == "" {
		return &httpError{status: resp.StatusCode, code: "http", message: fmt.Sprintf("%.200q", b)}
	}
	return &httpError{status: resp.StatusCode, code: e.Error.Code, message: e.Error.Message}
}

// login gets a token once per process (at the first endpoint that answers).
func (n *nodeHTTP) login(ctx context.Context, endpoint string) error {
	n.mu.Lock()
	have := n.token != ""
	n.mu.Unlock()
	if have {
		return nil
	}
	body, _ := json.Marshal(map[string]string{"user": n.user, "password": n.password})
	resp, err := n.send(ctx, endpoint, http.MethodPost, "/v1/auth/login", body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("logging in as %s: %w", n.user, readHTTPError(resp))
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.Token == "" {
		return fmt.Errorf("logging in as %s: no token in the answer (%v)", n.user, err)
	}
	n.mu.Lock()
	n.token = tok.Token
	n.mu.Unlock()
	return nil
}

// callAny tries the endpoints in order until one answers (a refusal is
// an answer); the last connection error otherwise.
func (n *nodeHTTP) callAny(ctx context.Context, method, path string, body []byte, out any) error {
	var err error
	for _, ep := range n.endpoints {
		err = n.call(ctx, ep, method, path, body, out)
		if !errors.Is(err, client.ErrUnavailable) {
			return err
		}
	}
	return err
}
