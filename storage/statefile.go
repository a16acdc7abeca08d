package storage

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"strconv"
)

// State files (membership, a controller's change, a node's identity: see
// StateFile) are whole files replaced atomically (Dir.WriteState). Each,
// but the few that predate it (StateFile.headed), starts with one header
// line that names the format version, the body's length and a
// checksum, then the body:
//
//	caspaxos-state 1 <length> <crc32c, 8 hex digits>\n
//	<body: length bytes>
//
// The CRC-32C (Castagnoli) covers the file's name, a 0 byte, then the
// body, so that a state file copied under another name fails its check like
// a damaged one. A file whose header is missing or of another version,
// whose length or checksum does not match, is refused with ErrCorrupt or
// ErrFormat and its content never used. A file that starts with '{' is a
// state file of the releases before this header (plain JSON): it is read as
// it is, and rewritten with a header by the next write.
const (
	stateFileMagic   = "caspaxos-state"
	stateFileVersion = 1
	// maxStateFileBytes bounds what ReadState reads: a membership of
	// thousands of members fits many times over.
	maxStateFileBytes = 16 << 20
)

// EncodeStateFile returns the content of state file name holding body.
func EncodeStateFile(name string, body []byte) []byte {
	out := fmt.Appendf(nil, "%s %d %d %08x\n", stateFileMagic, stateFileVersion, len(body), stateChecksum(name, body))
	return append(out, body...)
}

// DecodeStateFile checks the content of state file name and returns its
// body.
func DecodeStateFile(name string, content []byte) ([]byte, error) {
	if len(content) > 0 && content[0] == '{' {
		return content, nil // written before state files had a header
	}
	line, body, ok := bytes.Cut(content, []byte("\n"))
	if !ok {
		return nil, fmt.Errorf("%w: state file %s has no header line", ErrCorrupt, name)
	}
	f := bytes.Fields(line)
	if len(f) != 4 || string(f[0]) != stateFileMagic {
		return nil, fmt.Errorf("%w: state file %s: header %q is not a caspaxos state file header", ErrCorrupt, name, line)
	}
	if v, err := strconv.ParseUint(string(f[1]), 10, 32); err != nil || v != stateFileVersion {
		return nil, fmt.Errorf("%w: state file %s has format version %q; this build reads version %d", ErrFormat, name, f[1], stateFileVersion)
	}
	n, err := strconv.ParseUint(string(f[2]), 10, 32)
	if err != nil || n != uint64(len(body)) {
		return nil, fmt.Errorf("%w: state file %s: header says %q bytes, the body has %d (truncated or damaged)", ErrCorrupt, name, f[2], len(body))
	}
	sum, err := strconv.ParseUint(string(f[3]), 16, 32)
	if err != nil || len(f[3]) != 8 || uint32(sum) != stateChecksum(name, body) {
		return nil, fmt.Errorf("%w: state file %s: checksum mismatch (damaged)", ErrCorrupt, name)
	}
	return body, nil
}

func stateChecksum(name string, body []byte) uint32 {
	h := crc32.New(crc32.MakeTable(castagnoli))
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write(body)
	return h.Sum32()
}

// ReadState returns the content of state file f (the body under its
// header, for a file that has one), nil if there is no such file, and an
// error wrapping ErrCorrupt or ErrFormat if it fails its checks.
func (d *Dir) ReadState(f StateFile) ([]byte, error) {
	b, err := d.read(string(f), maxStateFileBytes+1)
	if err != nil || b == nil {
		return nil, err
	}
	if len(b) > maxStateFileBytes {
		return nil, fmt.Errorf("%w: state file %s in %s has more than the %d bytes a state file may have", ErrCorrupt, f, d.path, maxStateFileBytes)
	}
	if !f.headed() {
		return b, nil
	}
	body, err := DecodeStateFile(string(f), b)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, d.path)
	}
	return body, nil
}

// WriteState replaces state file f with body, under its header if it has
// one, durably and atomically: once it returns, body is what a crash
// leaves; if a crash comes before, the old content or body, never a part.
// After an error (a failed fsync among them) the caller must not go on as
// if the write happened.
func (d *Dir) WriteState(f StateFile, body []byte) error {
	if f.headed() {
		return d.replace(string(f), writeBytes(EncodeStateFile(string(f), body)))
	}
	// A copy: body stays the caller's, whatever the filesystem does with
	// what it is given to write (Pebble's in-memory one scrambles it in its
	// invariant-checking builds, -race among them).
	return d.replace(string(f), writeBytes(bytes.Clone(body)))
}

// RemoveState removes state file f durably; a missing file is no error.
func (d *Dir) RemoveState(f StateFile) error { return d.remove(string(f)) }
