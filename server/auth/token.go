package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The token errors; both are unauthenticated to a client.
var (
	ErrTokenInvalid = errors.New("caspaxos/auth: invalid token")
	ErrTokenExpired = errors.New("caspaxos/auth: token expired")
)

const tokenVersion = "v1"

type tokenPayload struct {
	User string `json:"u"`
	// Generation is the user's generation when the token was made
	// (User.Generation): the token ends when it changes.
	Generation []byte `json:"g,omitempty"`
	// Expiry in Unix nanoseconds.
	Expiry int64 `json:"exp"`
}

var b64 = base64.RawURLEncoding

// SignToken returns a token for user, made under its generation, that
// expires at expiry: "v1.<base64url JSON {u, g, exp}>.<base64url
// HMAC-SHA256 of the first two parts>".
func SignToken(key []byte, user string, generation []byte, expiry time.Time) string {
	p, _ := json.Marshal(tokenPayload{User: user, Generation: generation, Expiry: expiry.UnixNano()})
	msg := tokenVersion + "." + b64.EncodeToString(p)
	return msg + "." + b64.EncodeToString(mac(key, msg))
}

func mac(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// VerifyToken returns the user a token names, and the user's generation it
// was made under, if its mac is right under key and it has not expired at
// now. The caller checks the generation against the user's.
func VerifyToken(key []byte, token string, now time.Time) (string, []byte, error) {
	if len(key) == 0 {
		return "", nil, fmt.Errorf("%w: no signing key (auth is not enabled)", ErrTokenInvalid)
	}
	i := strings.LastIndexByte(token, '.')
	if i < 0 || !strings.HasPrefix(token, tokenVersion+".") {
		return "", nil, fmt.Errorf("%w: not a caspaxos token", ErrTokenInvalid)
	}
	sig, err := b64.DecodeString(token[i+1:])
	if err != nil || !hmac.Equal(sig, mac(key, token[:i])) {
		return "", nil, fmt.Errorf("%w: bad signature", ErrTokenInvalid)
	}
	raw, err := b64.DecodeString(token[len(tokenVersion)+1 : i])
	var p tokenPayload
	if err == nil {
		err = json.Unmarshal(raw, &p)
	}
	if err != nil || p.User == "" {
		return "", nil, fmt.Errorf("%w: bad payload", ErrTokenInvalid)
	}
	if !now.Before(time.Unix(0, p.Expiry)) {
		return "", nil, fmt.Errorf("%w: expired at %s", ErrTokenExpired, time.Unix(0, p.Expiry).UTC().Format(time.RFC3339))
	}
	return p.User, p.Generation, nil
}
